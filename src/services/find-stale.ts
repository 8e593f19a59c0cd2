import { fromPromise } from 'xstate';
import type { MaintenanceConfig } from '../cni/config';
import { KeySegment } from '../cni/codecs';
import { CniError, toCniError } from '../cni/errors';

import type { ConsulKv } from './consul-client';
import { parseAllocation } from './kv-layout';
import type { Log } from './logger';
import { readPoolFolder, rootPermissionProbeKey } from './pool-folder';

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
 * Runs in GC: in the pools a selector named (else every pool under ipam/), finds the allocations that THIS host
 * made (their `host` is ipam.host_id) for an attachment the runtime no longer has. An allocation without a `host`
 * (written by another implementation) or from another host is never touched: a pool is shared by many hosts.
 */
export const findStaleLogic = fromPromise<StaleSearch, { readonly kv: ConsulKv; readonly config: MaintenanceConfig; readonly log: Log }>(
  async ({ input: { kv, config, log } }) => {
    const valid = new Set(config.validAttachments.map((a) => `${a.containerId}\u0000${a.ifname}`));
    const validContainers = new Set(config.validAttachments.map((a) => a.containerId));
    const pools = config.pools.length > 0 ? config.pools : await listPools(kv, log);
    const stale: StaleAllocation[] = [];
    const problems: CniError[] = [];
    for (const pool of pools) {
      let entries;
      try {
        entries = await readPoolFolder(kv, pool);
      } catch (error) {
        const problem = toCniError(error);
        problems.push(new CniError(problem.code, `pool ${pool}: ${problem.message}`, problem.details));
        continue;
      }
      for (const entry of entries) {
        try {
          const { ip, allocation } = parseAllocation(pool, entry.key, entry.value);
          if (allocation.host !== config.hostId) continue;
          const inUse = allocation.ifname === undefined ? validContainers.has(allocation.target) : valid.has(`${allocation.target}\u0000${allocation.ifname}`);
          if (!inUse) {
            stale.push({ pool, ip, key: entry.key, modifyIndex: entry.modifyIndex, containerId: allocation.target, ifname: allocation.ifname ?? '' });
          }
        } catch (error) {
          log.warn(`GC passes over ${entry.key}: ${(error as Error).message}`);
        }
      }
    }
    return { stale, problems };
  },
);

/**
 * Pool names: the first segment of each key under ipam/. Consul leaves keys the token may not read out of a
 * listing silently, so a direct read under ipam/ is asked first: a token without the right gets 107, not an
 * empty list.
 */
async function listPools(kv: ConsulKv, log: Log): Promise<string[]> {
  await kv.get(rootPermissionProbeKey);
  const names = new Set<string>();
  for (const key of await kv.keys('ipam/')) {
    const name = key.slice('ipam/'.length).split('/')[0] ?? '';
    if (name === '') continue;
    if (KeySegment.is(name)) names.add(name);
    else log.warn(`GC passes over ${key}: not a pool name this plugin can address`);
  }
  return [...names].sort();
}
