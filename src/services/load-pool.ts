import { CniError, ErrorCode } from '../cni/errors';
import type { ConsulKv } from './consul-client';
import type { PoolCopy } from './host-store';
import type { AddressRange } from './ip-math';
import { oddityWarning, poolKey, readPoolDefinition } from './kv-layout';
import type { Log } from './logger';

/** A pool as read from ipam/<name>. */
export interface LoadedPool {
  readonly name: string;
  readonly ranges: readonly AddressRange[];
  /** The CreateIndex of ipam/<name>: a pool deleted and made again is another pool for the host's hints. */
  readonly identity: number;
  /** The key as read, kept on the host after a claim so that the next ADD can claim in one request (take-next.ts). */
  readonly copy?: PoolCopy;
}

/**
 * Reads ipam/<name> and checks its IP Ranges (ADD and CHECK, through load-pools). A pool the original serves is
 * served (see readPoolDefinition), with one warning naming the key and what `consul-ipam pool set` would refuse
 * about it.
 */
export async function loadPool(kv: ConsulKv, name: string, log: Log): Promise<LoadedPool> {
  const entry = await kv.get(poolKey(name));
  if (entry === undefined) {
    throw new CniError(ErrorCode.PoolNotFound, `pool ${name} does not exist: there is no key ${poolKey(name)} in Consul KV`, `server ${kv.server}`);
  }
  const { ranges, oddities } = readPoolDefinition(name, entry.value);
  if (oddities.length > 0) log.warn(oddityWarning(name, oddities));
  const copy = entry.value === null ? undefined : { createIndex: entry.createIndex, modifyIndex: entry.modifyIndex, value: entry.value };
  return { name, ranges, identity: entry.createIndex, ...(copy ? { copy } : {}) };
}
