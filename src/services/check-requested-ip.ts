import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { isReserved, rangeHolding, type Candidate } from './ip-math';
import type { LoadedPool } from './load-pool';

/**
 * Runs in ADD when the selector asked for a static IP: it must lie in the subnet of one of the pool's ranges
 * (outside rangeStart..rangeEnd is fine, static IPs usually live there) and must not be the network address,
 * the IPv4 broadcast address or a gateway.
 */
export const checkRequestedIpLogic = fromPromise<Candidate, { readonly pool: LoadedPool; readonly ip: string }>(async ({ input: { pool, ip } }) => {
  const range = rangeHolding(pool.ranges, ip);
  const subnets = pool.ranges.map((r) => r.subnet).join(', ');
  if (range === undefined) {
    throw new CniError(ErrorCode.RequestedIpNotInPool, `requested IP ${ip} does not fit pool ${pool.name}`, `the pool's subnets are ${subnets}`);
  }
  if (isReserved(range, ip)) {
    throw new CniError(
      ErrorCode.RequestedIpNotInPool,
      `requested IP ${ip} cannot be given to a container in pool ${pool.name}`,
      `it is the network address, the broadcast address or the gateway of ${range.subnet}`,
    );
  }
  return { ip, range };
});
