import { fromPromise } from 'xstate';
import type { ConsulKv } from './consul-client';
import type { Found } from './find-allocations';
import { forgetHeld } from './host-store';
import type { Log } from './logger';

export interface ReleaseInput {
  readonly kv: ConsulKv;
  readonly pool: string;
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
 * Runs in DEL: deletes each allocation with `cas` on the index just read. A key reallocated in between fails the
 * cas and is left alone — not an error. (The original deleted all keys in one transaction, so one such key made
 * the whole DEL fail and leak the others.)
 */
export const releaseAllocationsLogic = fromPromise<Released, ReleaseInput>(async ({ input }) => {
  const { kv, pool, found, containerId, ifname, dataDir, log } = input;
  const outcomes = await Promise.all(found.map(async (f) => ({ ip: f.ip, deleted: await kv.deleteCas(f.key, f.modifyIndex) })));
  const released = outcomes.filter((o) => o.deleted).map((o) => o.ip);
  const leftAlone = outcomes.filter((o) => !o.deleted).map((o) => o.ip);
  for (const ip of leftAlone) log.info(`${ip} changed hands since it was read; left alone`);
  await forgetHeld(dataDir, pool, containerId, ifname).catch((error: Error) => log.warn(`cannot clear the host's note for ${containerId}: ${error.message}`));
  return { released, leftAlone };
});
