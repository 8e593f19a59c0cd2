import { fromPromise } from 'xstate';
import type { PrevIp } from '../cni/config';
import { CniError } from '../cni/errors';
import type { ConsulKv, KvEntry } from './consul-client';
import { recallHeld } from './host-store';
import { allocationKey, allocationPrefix, belongsTo, oldAllocationKey, parseAllocation } from './kv-layout';
import { readPoolFolder } from './pool-folder';
import type { Log } from './logger';

export interface FindAllocationsInput {
  readonly kv: ConsulKv;
  /** Every pool prevResult.pools lists: Nomad's DEL carries no IPAM_POOL to say which one ADD used. */
  readonly pools: readonly string[];
  readonly prevIps: readonly PrevIp[];
  readonly containerId: string;
  readonly ifname: string;
  readonly dataDir: string;
  readonly log: Log;
}

/** An allocation of this container, with the index a `cas` delete must match. */
export interface Found {
  readonly pool: string;
  readonly ip: string;
  readonly key: string;
  readonly modifyIndex: number;
}

/**
 * Runs in DEL: finds the allocations of this container and interface. When the runtime passed the ADD result
 * (prevResult.ips), those keys and the one this host remembers are read directly. When it names no address, the
 * pool is searched for every allocation of this container (its interface, or none recorded), as the seed says
 * and the original does: another implementation, or another host, may have written one this host does not
 * remember. Keys whose value is not a valid Allocation are passed over with a warning: DEL must not fail on
 * another container's broken key. A key naming the address in another spelling (a release before RFC 5952 keys
 * wrote `fd00:1:2:3:4:5::1`) is the container's allocation all the same, and is released with the others.
 */
export const findAllocationsLogic = fromPromise<Found[], FindAllocationsInput>(async ({ input }) =>
  (await Promise.all(input.pools.map((pool) => findInPool({ ...input, pool })))).flat(),
);

/**
 * One pool's share. Each address of prevResult.ips is looked up in every listed pool: a key that is absent costs
 * one read, and the address is found even if the pool's ranges were edited since ADD (reading the ranges
 * first would cost the same reads and miss it).
 */
async function findInPool(input: Omit<FindAllocationsInput, 'pools'> & { readonly pool: string }): Promise<Found[]> {
  const { kv, pool, prevIps, containerId, ifname, dataDir, log } = input;
  const held = await recallHeld(dataDir, pool, containerId, ifname, log);
  const named = [...new Set([...prevIps.map((p) => p.ip), ...(held ? [held] : [])])];
  // The first of these answers may be the stale read that picked the server. What it says is ours is checked
  // by the cas delete; what it says is someone else's is read again, fresh: a lagging server must not hide an
  // address this container was just given.
  const read = async (key: string): Promise<KvEntry | undefined> => {
    const entry = await kv.get(key);
    return entry?.stale && !isOurs(entry, pool, containerId, ifname) ? kv.get(key, { fresh: true }) : entry;
  };
  // An address with an old spelling is read under that key too, side by side: an upgraded host's container may
  // hold it there (one request more, only for such addresses).
  const keys = named.flatMap((ip) => [allocationKey(pool, ip), oldAllocationKey(pool, ip)].filter((key): key is string => key !== undefined));
  const direct = (await Promise.all(keys.map(read))).filter((e): e is KvEntry => e !== undefined);
  let entries = direct;
  if (prevIps.length === 0) {
    log.debug(`no address named for ${containerId} in prevResult.ips; searching ${allocationPrefix(pool)}`);
    const listed = await readPoolFolder(kv, pool);
    entries = [...direct, ...listed.filter((entry) => !direct.some((d) => d.key === entry.key))];
  }
  const found: Found[] = [];
  for (const entry of entries) {
    try {
      const { ip, allocation } = parseAllocation(pool, entry.key, entry.value);
      if (belongsTo(allocation, containerId, ifname)) found.push({ pool, ip, key: entry.key, modifyIndex: entry.modifyIndex });
    } catch (error) {
      log.warn(`passing over ${entry.key}: ${error instanceof CniError ? error.message : String(error)}`);
    }
  }
  return found;
}

function isOurs(entry: KvEntry, pool: string, containerId: string, ifname: string): boolean {
  try {
    return belongsTo(parseAllocation(pool, entry.key, entry.value).allocation, containerId, ifname);
  } catch {
    return false;
  }
}
