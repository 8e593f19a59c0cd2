/**
 * Reading a whole pool folder safely under Consul ACLs.
 *
 * Consul filters keys a token may not read out of `?recurse` and `?keys` listings without saying so, so an empty
 * listing proves nothing: a DEL would report success while the allocation stays. A plain GET of one key under the
 * prefix is refused with 403 instead, so that is asked first. Only the search paths (DEL without an address, GC) pay
 * for it.
 */
import type { ConsulKv, KvEntry } from './consul-client';
import { allocationPrefix } from './kv-layout';

/** A key no implementation writes: reading it only tells whether the token may read the pool's folder. */
export const permissionProbeKey = (pool: string): string => `${allocationPrefix(pool)}.permission-probe`;

/** The same for ipam/ itself: STATUS asks it to tell whether the token may read the pools. */
export const rootPermissionProbeKey = 'ipam/.permission-probe';

/** Every entry of ipam/<pool>/ except the folder key itself; throws PermissionDenied (107) when the token may not read it. */
export async function readPoolFolder(kv: ConsulKv, pool: string): Promise<KvEntry[]> {
  await kv.get(permissionProbeKey(pool));
  const prefix = allocationPrefix(pool);
  return (await kv.list(prefix)).filter((entry) => entry.key !== prefix && entry.key !== permissionProbeKey(pool));
}
