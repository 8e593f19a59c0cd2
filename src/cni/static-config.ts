/**
 * The network config as ipam-ds-static reads it: `ipam.pools`, passed on to the allocator as `pools`, and
 * `prevResult.ips`, copied through so that DEL and CHECK reach the allocator with the addresses to release or
 * verify (https://github.com/passcod/cni-plugins/tree/main/ipam-ds-static).
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { parseConfigObject, readVersion } from './config-object';
import { invalidConfigError } from './decode-report';
import { Pools, requestedIpOf } from './pool';
import type { CniVersion } from './versions';

const StaticConfig = t.type({ ipam: t.type({ pools: Pools }, 'an object') }, 'an object');

/** A Pool object as written in `ipam.pools`, its name checked: passed on as written, never rewritten. */
export type PoolObject = { readonly name: string } & Record<string, unknown>;

/** What the selector read: the config's version, its pools in order, and the runtime's cached addresses. */
export interface StaticConfig {
  readonly cniVersion: CniVersion;
  readonly pools: readonly PoolObject[];
  readonly ips: readonly unknown[];
}

/** Decodes stdin for ipam-ds-static; every failure is a CniError naming the field and value. */
export function parseStaticConfig(stdin: string): StaticConfig {
  const raw = parseConfigObject(stdin);
  const cniVersion = readVersion(raw);
  const decoded = StaticConfig.decode(raw);
  if (isLeft(decoded)) throw invalidConfigError(decoded.left, '');
  decoded.right.ipam.pools.forEach((pool, index) => requestedIpOf(pool, `ipam.pools[${index}]`));
  const prevResult = raw.prevResult as { ips?: unknown } | undefined;
  const ips = typeof prevResult === 'object' && prevResult !== null && Array.isArray(prevResult.ips) ? prevResult.ips : [];
  // The pools are passed on as written, validated but not rewritten, as the original passes them.
  return { cniVersion, pools: (raw.ipam as { pools: PoolObject[] }).pools, ips };
}
