/**
 * IPAM results, encoded for the config's cniVersion.
 * https://github.com/containernetworking/cni/blob/main/SPEC.md#add-success
 */
import type { AddressRange } from '../services/ip-math';
import { familyOf } from '../services/ip-math';
import type { CniVersion } from './versions';

/** An address handed to (or verified for) the container, with the range that defines its prefix and gateway. */
export interface Assigned {
  readonly ip: string;
  readonly range: AddressRange;
}

export interface IpamResult {
  readonly cniVersion: CniVersion;
  readonly ips: ReadonlyArray<{ address: string; gateway?: string; version?: '4' | '6' }>;
  readonly routes: ReadonlyArray<{ dst: string; gw?: string }>;
  readonly dns: Record<string, never>;
}

/** The result of ADD (and of CHECK): each address with its prefix, a default route via the gateway when there is one. */
export function ipamResult(cniVersion: CniVersion, assigned: readonly Assigned[]): IpamResult {
  return {
    cniVersion,
    ips: assigned.map(({ ip, range }) => ({
      // 0.4.0 results name the family of each address; 1.0.0 dropped the field.
      ...(cniVersion === '0.4.0' ? { version: familyOf(ip) } : {}),
      address: `${ip}/${range.prefix}`,
      ...(range.gateway ? { gateway: range.gateway } : {}),
    })),
    routes: assigned.flatMap(({ range }) => (range.gateway ? [{ dst: range.family === 4 ? '0.0.0.0/0' : '::/0', gw: range.gateway }] : [])),
    dns: {},
  };
}
