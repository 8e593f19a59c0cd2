import { fromPromise } from 'xstate';
import type { PrevIp } from '../cni/config';
import { connectConsul, gotOptions, type ConsulOptions } from './consul-client';
import { forgetClaimed, forgetHeld, recallNote } from './host-store';
import { allocationKey } from './kv-layout';
import type { Log } from './logger';

export interface ReleaseNotedInput {
  readonly consul: ConsulOptions;
  /** The one pool prevResult.pools lists. */
  readonly pool: string;
  readonly prevIps: readonly PrevIp[];
  readonly containerId: string;
  readonly ifname: string;
  readonly dataDir: string;
  readonly log: Log;
}

/** `released`: the noted allocation is gone, and the host's note and marker with it. `declined`: DEL goes the full way. */
export type ReleaseNoted = { readonly kind: 'released'; readonly ip: string } | { readonly kind: 'declined'; readonly why: string; readonly suspect?: string };

/**
 * Runs in DEL right after parsing, when one pool is listed: releases the address this host noted for the
 * container in one request, `DELETE ?cas=<ModifyIndex>` with the index the note keeps (a one-request ADD writes
 * it: take-next.ts). A ModifyIndex is the Raft index of the key's last write, never given to another write, so
 * the delete applies only to the very allocation this host wrote; Consul answers true for a key already gone
 * (released by GC or an operator), which is as good for DEL.
 *
 * Anything else declines, and the full way (find the allocations, release each) decides: no note or one without
 * an index (an ADD that went the full way, an older release's note), prevResult naming another address, a key
 * that changed since (false), any failure talking to Consul (the full way reads the key again).
 */
export const releaseNotedLogic = fromPromise<ReleaseNoted, ReleaseNotedInput>(async ({ input }) => {
  const { pool, prevIps, containerId, ifname, dataDir, log } = input;
  const declined = (why: string, suspect?: string): ReleaseNoted => {
    log.debug(`no release in one request: ${why}`);
    return { kind: 'declined', why, ...(suspect === undefined ? {} : { suspect }) };
  };
  const note = await recallNote(dataDir, pool, containerId, ifname, log);
  if (note === undefined) return declined(`this host notes no address for ${containerId}/${ifname} in ${pool}`);
  if (note.modifyIndex === undefined) return declined(`the note of ${containerId}/${ifname} keeps no ModifyIndex`);
  const other = prevIps.find(({ ip }) => ip !== note.ip);
  if (other !== undefined) return declined(`prevResult names ${other.ip}, not only the noted ${note.ip}`);
  const key = allocationKey(pool, note.ip);
  const releasedAt = Date.now();
  let deleted: boolean;
  try {
    const kv = await connectConsul(input.consul.servers[0]!, gotOptions(input.consul), log, [], { oneShot: true });
    deleted = await kv.deleteCas(key, note.modifyIndex, { retry: false });
  } catch (error) {
    return declined(`the delete of ${key} failed: ${(error as Error).message}`, input.consul.servers[0]);
  }
  if (!deleted) return declined(`${key} changed since this host wrote it (ModifyIndex ${note.modifyIndex})`);
  // As releaseFound does after a delete: the claim marker and the note have done their work.
  await forgetClaimed(dataDir, pool, note.ip, releasedAt).catch(() => undefined);
  await forgetHeld(dataDir, pool, containerId, ifname).catch((error: Error) => log.warn(`cannot clear the host's note for ${containerId}: ${error.message}`));
  log.debug(`released ${key} in one request`);
  return { kind: 'released', ip: note.ip };
});
