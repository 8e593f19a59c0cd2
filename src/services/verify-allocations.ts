import { fromPromise } from 'xstate';
import type { PrevIp } from '../cni/config';
import { CniError, ErrorCode } from '../cni/errors';
import type { Assigned } from '../cni/result';
import type { ConsulKv } from './consul-client';
import { rangeHolding } from './ip-math';
import { allocationKey, belongsTo, parseAllocation } from './kv-layout';
import type { LoadedPool } from './load-pool';

export interface VerifyInput {
  readonly kv: ConsulKv;
  readonly pool: LoadedPool;
  readonly prevIps: readonly PrevIp[];
  readonly containerId: string;
  readonly ifname: string;
}

/** The addresses of prevResult.ips that lie in one of the pool's subnets, with their range: CHECK's to verify. */
export function addressesInPool(pool: LoadedPool, prevIps: readonly PrevIp[]): Assigned[] {
  return prevIps.flatMap(({ ip }) => {
    const range = rangeHolding(pool.ranges, ip);
    return range ? [{ ip, range }] : [];
  });
}

/** CHECK's error when prevResult.ips holds no address of the pool: a CHECK that verified nothing must not pass. */
export function nothingToVerify(pool: LoadedPool, prevIps: readonly PrevIp[]): CniError {
  return new CniError(
    ErrorCode.AllocationMismatch,
    `prevResult.ips holds no address of pool ${pool.name}: there is nothing of this pool to verify`,
    prevIps.length === 0 ? 'prevResult.ips is empty' : `prevResult.ips: ${prevIps.map(({ ip, prefix }) => `${ip}/${prefix}`).join(', ')}`,
  );
}

/**
 * Runs in CHECK (where the original panicked), once the machine knows prevResult.ips holds an address of the
 * pool: every such address must be allocated to this container and interface in Consul. Returns those
 * addresses; fails with code 108 naming each that is not.
 */
export const verifyAllocationsLogic = fromPromise<Assigned[], VerifyInput>(async ({ input }) => {
  const { kv, pool, prevIps, containerId, ifname } = input;
  const ours = addressesInPool(pool, prevIps);
  if (ours.length === 0) throw nothingToVerify(pool, prevIps);
  const problems: string[] = [];
  await Promise.all(
    ours.map(async ({ ip }) => {
      const entry = await kv.get(allocationKey(pool.name, ip));
      if (entry === undefined) return problems.push(`${ip} is not allocated`);
      const { allocation } = parseAllocation(pool.name, entry.key, entry.value);
      if (!belongsTo(allocation, containerId, ifname)) {
        problems.push(`${ip} is allocated to ${allocation.target}${allocation.ifname ? ` (${allocation.ifname})` : ''}`);
      }
    }),
  );
  if (problems.length > 0) {
    throw new CniError(ErrorCode.AllocationMismatch, `pool ${pool.name} does not hold the addresses of ${containerId}`, problems.sort().join('; '));
  }
  return ours;
});
