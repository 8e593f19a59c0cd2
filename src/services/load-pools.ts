import { fromPromise } from 'xstate';
import type { PoolRequest } from '../cni/config';
import { CniError, ErrorCode } from '../cni/errors';
import type { ConsulKv } from './consul-client';
import { rangeHolding } from './ip-math';
import { loadPool, type LoadedPool } from './load-pool';
import type { Log } from './logger';

export interface LoadPoolsInput {
  readonly kv: ConsulKv;
  readonly pools: readonly PoolRequest[];
  /** With ipam.all_pools, the container's static IP: it goes to the first pool whose subnets hold it. */
  readonly staticIp?: string;
  readonly log: Log;
}

/** A pool read from Consul, and the static IP ADD must give from it, if any. */
export interface PlannedPool {
  readonly pool: LoadedPool;
  readonly requestedIp?: string;
}

/**
 * Runs once a server is picked (ADD, CHECK): reads each ipam/<name> (in parallel) and checks its IP Ranges.
 * Then places the container's static IP: with one pool it is that pool's business (checkRequestedIp says 103
 * when it does not fit); with `all_pools` (an IPv4 and an IPv6 pool, say) it goes to the first pool in the
 * selected order whose subnets hold it, replacing that pool's `requested-ip` from the network config, and the
 * other pools hand out an address as usual. An address no pool's subnets hold is 103 here, before anything is
 * written.
 */
export const loadPoolsLogic = fromPromise<PlannedPool[], LoadPoolsInput>(async ({ input: { kv, pools, staticIp, log } }) => {
  const loaded = await Promise.all(pools.map((request) => loadPool(kv, request.name, log)));
  const home = staticIp === undefined ? -1 : loaded.findIndex((pool) => rangeHolding(pool.ranges, staticIp) !== undefined);
  if (staticIp !== undefined && home < 0) {
    throw new CniError(
      ErrorCode.RequestedIpNotInPool,
      `requested IP ${staticIp} fits none of the pools ${pools.map((p) => p.name).join(', ')}`,
      `their subnets are ${loaded.flatMap((pool) => pool.ranges.map((r) => r.subnet)).join(', ')}`,
    );
  }
  return loaded.map((pool, index) => {
    const requestedIp = index === home ? staticIp : pools[index]!.requestedIp;
    return requestedIp === undefined ? { pool } : { pool, requestedIp };
  });
});
