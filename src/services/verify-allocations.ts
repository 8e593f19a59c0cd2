import { fromPromise } from 'xstate';
import type { PrevIp } from '../cni/config';
import { CniError, ErrorCode } from '../cni/errors';
import type { Assigned } from '../cni/result';
import type { ConsulKv } from './consul-client';
import { rangeHolding } from './ip-math';
import { allocationKey, belongsTo, oldAllocationKey, parseAllocation } from './kv-layout';
import type { LoadedPool } from './load-pool';

export interface VerifyInput {
  readonly kv: ConsulKv;
  /** Every pool prevResult.pools lists. */
  readonly pools: readonly LoadedPool[];
  readonly prevIps: readonly PrevIp[];
  readonly containerId: string;
  readonly ifname: string;
}

/** An address of prevResult.ips, with its range and the pool that holds it. */
export interface PoolAddress extends Assigned {
  readonly pool: string;
}

/**
 * The addresses of prevResult.ips that lie in one of the listed pools' subnets, each with its range and the first
 * pool whose ranges hold it (an IPv4 and an IPv6 address of a dual-stack ADD each in its own pool): CHECK's to verify.
 */
export function addressesInPools(pools: readonly LoadedPool[], prevIps: readonly PrevIp[]): PoolAddress[] {
  return prevIps.flatMap(({ ip }) => {
    for (const pool of pools) {
      const range = rangeHolding(pool.ranges, ip);
      if (range) return [{ ip, range, pool: pool.name }];
    }
    return [];
  });
}

const poolNames = (pools: readonly LoadedPool[]): string => `pool${pools.length > 1 ? 's' : ''} ${pools.map((pool) => pool.name).join(', ')}`;

/** CHECK's error when prevResult.ips holds no address of the pools: a CHECK that verified nothing must not pass. */
export function nothingToVerify(pools: readonly LoadedPool[], prevIps: readonly PrevIp[]): CniError {
  return new CniError(
    ErrorCode.AllocationMismatch,
    `prevResult.ips holds no address of ${poolNames(pools)}: there is nothing of ${pools.length > 1 ? 'these pools' : 'this pool'} to verify`,
    prevIps.length === 0 ? 'prevResult.ips is empty' : `prevResult.ips: ${prevIps.map(({ ip, prefix }) => `${ip}/${prefix}`).join(', ')}`,
  );
}

/**
 * Runs in CHECK (where the original panicked), once the machine knows prevResult.ips holds an address of a listed
 * pool: every such address must be allocated to this container and interface in Consul, in the pool holding it.
 * Returns those addresses; fails with code 108 naming each that is not. An address with no key but its old
 * spelling's (a release before RFC 5952 keys wrote it) is verified there.
 */
export const verifyAllocationsLogic = fromPromise<Assigned[], VerifyInput>(async ({ input }) => {
  const { kv, pools, prevIps, containerId, ifname } = input;
  const ours = addressesInPools(pools, prevIps);
  if (ours.length === 0) throw nothingToVerify(pools, prevIps);
  const problems: string[] = [];
  await Promise.all(
    ours.map(async ({ ip, pool }) => {
      const oldKey = oldAllocationKey(pool, ip);
      const entry = (await kv.get(allocationKey(pool, ip))) ?? (oldKey === undefined ? undefined : await kv.get(oldKey));
      if (entry === undefined) return problems.push(`${ip} is not allocated in pool ${pool}`);
      const { allocation } = parseAllocation(pool, entry.key, entry.value);
      if (!belongsTo(allocation, containerId, ifname)) {
        problems.push(`${ip} is allocated to ${allocation.target}${allocation.ifname ? ` (${allocation.ifname})` : ''}`);
      }
    }),
  );
  if (problems.length > 0) {
    throw new CniError(ErrorCode.AllocationMismatch, `${poolNames(pools)} do${pools.length > 1 ? '' : 'es'} not hold the addresses of ${containerId}`, problems.sort().join('; '));
  }
  return ours.map(({ ip, range }) => ({ ip, range }));
});
