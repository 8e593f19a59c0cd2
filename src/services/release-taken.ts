import { fromPromise } from 'xstate';
import type { ConsulKv } from './consul-client';
import type { Found } from './find-allocations';
import { allocationKey } from './kv-layout';
import type { Log } from './logger';
import { releaseFound, type Released } from './release-allocations';

/** An address an ADD wrote in this invocation. */
export interface Taken {
  readonly pool: string;
  readonly ip: string;
}

export interface ReleaseTakenInput {
  readonly kv: ConsulKv;
  readonly taken: readonly Taken[];
  readonly containerId: string;
  readonly ifname: string;
  readonly dataDir: string;
  readonly log: Log;
}

/**
 * Runs in ADD with ipam.all_pools when a later pool fails: gives back what this ADD took from the earlier ones,
 * so a dual-stack ADD is all-or-nothing. Each key is read (consistently) for the index its cas delete must
 * match; DEL's release then deletes only what is still this container's.
 */
export const releaseTakenLogic = fromPromise<Released, ReleaseTakenInput>(async ({ input }) => {
  const { kv, taken, log } = input;
  const entries = await Promise.all(taken.map(async ({ pool, ip }) => ({ pool, ip, entry: await kv.get(allocationKey(pool, ip), { fresh: true }) })));
  const found: Found[] = entries.flatMap(({ pool, ip, entry }) => (entry ? [{ pool, ip, key: entry.key, modifyIndex: entry.modifyIndex }] : []));
  const released = await releaseFound({ ...input, pools: [...new Set(taken.map((t) => t.pool))], found });
  log.info(`ADD failed after taking ${taken.map((t) => `${t.ip} (${t.pool})`).join(', ')}; released ${released.released.join(', ') || 'none'}`);
  return released;
});
