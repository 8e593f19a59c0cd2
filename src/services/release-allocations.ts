import { fromPromise } from 'xstate';
import type { ConsulKv } from './consul-client';
import type { Found } from './find-allocations';
import { forgetClaimed, forgetHeld } from './host-store';
import { belongsTo, parseAllocation } from './kv-layout';
import type { Log } from './logger';

export interface ReleaseInput {
  readonly kv: ConsulKv;
  /** The pools searched: the host's note of each is cleared. */
  readonly pools: readonly string[];
  readonly found: readonly Found[];
  readonly containerId: string;
  readonly ifname: string;
  readonly dataDir: string;
  readonly log: Log;
}

/** What DEL did: addresses released, and addresses left alone because they changed hands meanwhile. */
export interface Released {
  readonly released: readonly string[];
  readonly leftAlone: readonly string[];
}

/**
 * Runs in DEL: deletes each allocation with `cas` on the index just read. When the cas fails, the key is read
 * again (consistently: the first read may have been the stale one that picked the server): still this
 * container's, it is deleted on its new index; reallocated in between, it is left alone — not an error. (The
 * original deleted all keys in one transaction, so one such key made the whole DEL fail and leak the others.)
 */
export const releaseAllocationsLogic = fromPromise<Released, ReleaseInput>(async ({ input }) => releaseFound(input));

/** DEL's release, and ADD's rollback of what it took before a later pool failed. */
export async function releaseFound(input: ReleaseInput): Promise<Released> {
  const { kv, pools, found, containerId, ifname, dataDir, log } = input;
  const release = async (f: Found): Promise<boolean> => {
    if (await kv.deleteCas(f.key, f.modifyIndex)) return true;
    const now = await kv.get(f.key);
    if (now === undefined) return true; // gone already: released by a DEL that ran alongside
    let ours = false;
    try {
      ours = belongsTo(parseAllocation(f.pool, now.key, now.value).allocation, containerId, ifname);
    } catch {
      // Now holds something that is not an Allocation: not ours to delete.
    }
    return ours && kv.deleteCas(f.key, now.modifyIndex);
  };
  const outcomes = await Promise.all(
    found.map(async (f) => {
      const releasedAt = Date.now();
      const deleted = await release(f);
      // This host's claim marker of the address has done its work (host-store.ts, forgetClaimed).
      if (deleted) await forgetClaimed(dataDir, f.pool, f.ip, releasedAt).catch(() => undefined);
      return { ip: f.ip, deleted };
    }),
  );
  const released = outcomes.filter((o) => o.deleted).map((o) => o.ip);
  const leftAlone = outcomes.filter((o) => !o.deleted).map((o) => o.ip);
  for (const ip of leftAlone) log.info(`${ip} changed hands since it was read; left alone`);
  await Promise.all(
    pools.map((pool) => forgetHeld(dataDir, pool, containerId, ifname).catch((error: Error) => log.warn(`cannot clear the host's note for ${containerId}: ${error.message}`))),
  );
  return { released, leftAlone };
}
