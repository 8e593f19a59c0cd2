import { fromPromise } from 'xstate';
import type { GcConfig } from '../cni/config';
import { CniError, toCniError } from '../cni/errors';
import type { ConsulKv } from './consul-client';
import { recallHeld } from './host-store';
import { parseAllocation } from './kv-layout';
import type { Log } from './logger';
import { readPoolFolder } from './pool-folder';

/** An allocation GC may release. */
export interface StaleAllocation {
  readonly pool: string;
  readonly ip: string;
  readonly key: string;
  readonly modifyIndex: number;
  readonly containerId: string;
  readonly ifname: string;
}

/** What GC found: the stale allocations, and the pools it could not read (GC goes on past them). */
export interface StaleSearch {
  readonly stale: readonly StaleAllocation[];
  readonly problems: readonly CniError[];
}

/**
 * Runs in GC: in the pools the selector named (never any other), finds the allocations of the network being
 * collected (`network` is its name) that THIS host made for an attachment the runtime no longer has. A pool is
 * shared by many hosts and networks, so each condition must hold, and an allocation that lacks a field (written
 * by the original, by hand, or by a version before `network`) is never touched:
 *  - `host` is ipam.host_id, `network` is the config's `name`, `target` and `ifname` are a valid container ID and
 *    interface name (they become paths under data_dir; anything else is passed over with a warning);
 *  - the attachment is in neither cni.dev/valid-attachments nor cni.dev/attachments;
 *  - this host's own note of the address (data_dir/<pool>/containers/<target>/<ifname>, written by the ADD that
 *    made it) is there. Two hosts sharing a hostname, hence a host_id, each keep their notes: neither collects the
 *    other's live allocations.
 */
export const findStaleLogic = fromPromise<StaleSearch, { readonly kv: ConsulKv; readonly config: GcConfig; readonly log: Log }>(
  async ({ input: { kv, config, log } }) => {
    const valid = new Set(config.validAttachments.map((a) => attachmentKey(a.containerId, a.ifname)));
    const stale: StaleAllocation[] = [];
    const problems: CniError[] = [];
    for (const pool of new Set(config.pools)) {
      let entries;
      try {
        entries = await readPoolFolder(kv, pool);
      } catch (error) {
        const problem = toCniError(error);
        problems.push(new CniError(problem.code, `pool ${pool}: ${problem.message}`, problem.details));
        continue;
      }
      for (const entry of entries) {
        let parsed;
        try {
          parsed = parseAllocation(pool, entry.key, entry.value);
        } catch (error) {
          log.warn(`GC passes over ${entry.key}: ${(error as Error).message}`);
          continue;
        }
        const { ip, allocation } = parsed;
        const { target, ifname } = allocation;
        if (allocation.host !== config.hostId || allocation.network !== config.network || ifname === undefined) continue;
        if (valid.has(attachmentKey(target, ifname))) continue;
        const noted = await recallHeld(config.dataDir, pool, target, ifname, log).catch(() => undefined);
        if (noted !== ip) {
          log.warn(
            `GC keeps ${entry.key} (${target}/${ifname}): it names this host (${config.hostId}) but ${config.dataDir} has no note of it; ` +
              'another host with the same host_id made it, or this host lost its data_dir',
          );
          continue;
        }
        stale.push({ pool, ip, key: entry.key, modifyIndex: entry.modifyIndex, containerId: target, ifname });
      }
    }
    return { stale, problems };
  },
);

const attachmentKey = (containerId: string, ifname: string): string => `${containerId}\u0000${ifname}`;
