import { fromPromise } from 'xstate';
import type { Assigned } from '../cni/result';
import type { ConsulKv } from './consul-client';
import { recall } from './host-store';
import { allocationKey, belongsTo, oldAllocationKey, parseAllocation } from './kv-layout';
import type { LoadedPool } from './load-pool';
import type { Log } from './logger';

export interface RecallHostInput {
  readonly kv: ConsulKv;
  readonly pool: LoadedPool;
  readonly dataDir: string;
  readonly containerId: string;
  readonly ifname: string;
  readonly log: Log;
}

export interface Recalled {
  /** Where round robin resumes. */
  readonly lastReserved?: string;
  /** How many addresses right after it the hint records as free: chooseIp tries those before reading a window. */
  readonly knownFree?: number;
  /** An address Consul confirms this container and interface already hold: a repeated ADD returns it. */
  readonly held?: Assigned;
}

/**
 * Runs in ADD before choosing an address: reads this host's hints, and checks in Consul the address the host
 * remembers giving this container, so a retried ADD (runtime timeout, Nomad after a failed CHECK) does not take a second one.
 * The hints arrive decoded and within the pool's ranges (an unusable host file is no hint, with a warning naming it).
 */
export const recallHostLogic = fromPromise<Recalled, RecallHostInput>(async ({ input }) => {
  const { kv, pool, dataDir, containerId, ifname, log } = input;
  const memory = await recall(dataDir, pool, containerId, ifname, log);
  log.debug(`host memory for ${pool.name}: last reserved ${memory.lastReserved ?? 'none'}, held ${memory.held?.ip ?? 'none'}`);
  const hint = memory.lastReserved ? { lastReserved: memory.lastReserved, ...(memory.freeAfter ? { knownFree: memory.freeAfter } : {}) } : {};
  if (memory.held === undefined) return hint;
  // A container an earlier release gave the address may hold it under its old spelling: read only when the key is absent.
  const oldKey = oldAllocationKey(pool.name, memory.held.ip);
  const entry = (await kv.get(allocationKey(pool.name, memory.held.ip))) ?? (oldKey === undefined ? undefined : await kv.get(oldKey));
  if (!entry) return hint;
  try {
    const { allocation } = parseAllocation(pool.name, entry.key, entry.value);
    return belongsTo(allocation, containerId, ifname) ? { ...hint, held: memory.held } : hint;
  } catch (error) {
    // The note is only a hint: a broken key where it points is not this container's, and fails nothing here
    // (chooseIp never hands out an address that has a key).
    log.warn(`the host's note for ${containerId}/${ifname} names ${entry.key}, which is not a valid Allocation: ${(error as Error).message}`);
    return hint;
  }
});
