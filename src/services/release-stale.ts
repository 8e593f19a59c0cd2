import { fromPromise } from 'xstate';
import { CniError, toCniError } from '../cni/errors';
import type { ConsulKv } from './consul-client';
import type { StaleAllocation } from './find-stale';
import { forgetClaimed, forgetHeld } from './host-store';
import type { Log } from './logger';

/** What GC released, and what it could not (it keeps going past failures, as CNI GC asks). */
export interface StaleRelease {
  readonly released: readonly string[];
  readonly problems: readonly CniError[];
}

/** Runs in GC: deletes each stale allocation with cas on the index read, so one reallocated meanwhile is left alone. */
export const releaseStaleLogic = fromPromise<StaleRelease, { readonly kv: ConsulKv; readonly stale: readonly StaleAllocation[]; readonly dataDir: string; readonly log: Log }>(
  async ({ input: { kv, stale, dataDir, log } }) => {
    const released: string[] = [];
    const problems: CniError[] = [];
    for (const item of stale) {
      try {
        const releasedAt = Date.now();
        if (await kv.deleteCas(item.key, item.modifyIndex)) {
          released.push(item.key);
          log.info(`GC released ${item.key} (${item.containerId}/${item.ifname})`);
          await forgetHeld(dataDir, item.pool, item.containerId, item.ifname).catch(() => undefined);
          await forgetClaimed(dataDir, item.pool, item.ip, releasedAt).catch(() => undefined);
        }
      } catch (error) {
        const problem = toCniError(error);
        problems.push(new CniError(problem.code, `${item.key}: ${problem.message}`, problem.details));
      }
    }
    return { released, problems };
  },
);
