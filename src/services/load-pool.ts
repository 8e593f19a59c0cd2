import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import type { ConsulKv } from './consul-client';
import type { AddressRange } from './ip-math';
import { parsePoolDefinition, poolKey } from './kv-layout';

/** A pool as read from ipam/<name>. */
export interface LoadedPool {
  readonly name: string;
  readonly ranges: readonly AddressRange[];
  /** The CreateIndex of ipam/<name>: a pool deleted and made again is another pool for the host's hints. */
  readonly identity: number;
}

/** Runs once a server is picked (ADD, CHECK): reads ipam/<name> and checks its IP Ranges. */
export const loadPoolLogic = fromPromise<LoadedPool, { readonly kv: ConsulKv; readonly name: string }>(async ({ input: { kv, name } }) => {
  const entry = await kv.get(poolKey(name));
  if (entry === undefined) {
    throw new CniError(ErrorCode.PoolNotFound, `pool ${name} does not exist: there is no key ${poolKey(name)} in Consul KV`, `server ${kv.server}`);
  }
  return { name, ranges: parsePoolDefinition(name, entry.value), identity: entry.createIndex };
});
