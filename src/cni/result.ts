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

/** How the default routes of a result are chosen. */
export interface RouteOptions {
  /**
   * The network config's `isDefaultGateway`: `bridge` then adds the default route itself, and a gateway-less
   * default route from IPAM makes it fail ("failed to add route ... file exists"), so none is returned.
   */
  readonly bridgeAddsDefaultRoute: boolean;
}

/**
 * The result of ADD (and of CHECK): each address with its prefix, and a default route per family as the original
 * returns it (`0.0.0.0/0` or `::/0`, via the gateway when the range has one; `bridge` installs one without a
 * gateway as `default dev eth0`) — the first address's of that family, so a dual-stack result has one IPv4 and
 * one IPv6 default route — unless the plugin in front adds the default route itself.
 */
export function ipamResult(cniVersion: CniVersion, assigned: readonly Assigned[], routes: RouteOptions = { bridgeAddsDefaultRoute: false }): IpamResult {
  return {
    cniVersion,
    ips: assigned.map(({ ip, range }) => ({
      // 0.4.0 results name the family of each address; 1.0.0 dropped the field.
      ...(cniVersion === '0.4.0' ? { version: familyOf(ip) } : {}),
      address: `${ip}/${range.prefix}`,
      ...(range.gateway ? { gateway: range.gateway } : {}),
    })),
    routes: routes.bridgeAddsDefaultRoute
      ? []
      : assigned
          .filter(({ range }, index) => assigned.findIndex((other) => other.range.family === range.family) === index)
          .map(({ range }) => ({ dst: range.family === 4 ? '0.0.0.0/0' : '::/0', ...(range.gateway ? { gw: range.gateway } : {}) })),
    dns: {},
  };
}
