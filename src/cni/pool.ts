/**
 * The Pool object of the delegation chain, one definition for every executable: what a selector writes in
 * `pools` (ipam-ds-static passes `ipam.pools` on) and the allocator reads from `prevResult.pools`.
 *
 * The original's README says `requested-ip`; its code and its Nomad selector say `requested_ip`, and
 * ipam-ds-nomad writes `"requested_ip": null` for a group without a static IP. Both spellings are read, and
 * null (in either) is no requested IP. Other keys are ignored and passed on.
 */
import * as t from 'io-ts';
import { IpAddress, KeySegment, nonEmptyArray } from './codecs';
import { CniError, ErrorCode } from './errors';

const RequestedIp = t.union([IpAddress, t.null], 'an IP address or null');

/** One Pool object: a pool name, and optionally the static IP to give. */
export const PoolEntry = t.intersection(
  [t.type({ name: KeySegment }, 'a Pool object'), t.partial({ 'requested-ip': RequestedIp, requested_ip: RequestedIp })],
  'a Pool object',
);

/** A non-empty list of Pool objects, as `pools` must be. */
export const Pools = nonEmptyArray(PoolEntry, 'a non-empty array of Pool objects');

/** The requested IP of a decoded Pool, or undefined; both spellings given and different is code 7 naming `path`. */
export function requestedIpOf(pool: t.TypeOf<typeof PoolEntry>, path: string): string | undefined {
  const dashed = pool['requested-ip'] ?? undefined;
  const snake = pool.requested_ip ?? undefined;
  if (dashed !== undefined && snake !== undefined && dashed !== snake) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: ${path} has both requested-ip and requested_ip, and they differ`,
      `requested-ip is ${dashed}, requested_ip is ${snake}`,
    );
  }
  return dashed ?? snake;
}
