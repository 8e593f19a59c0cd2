import { fromPromise } from 'xstate';
import type { ConsulKv } from './consul-client';
import { rootPermissionProbeKey } from './pool-folder';

/**
 * Runs in STATUS once a server is picked: reads one key under ipam/ directly, which Consul refuses with 403 when
 * the token may not read the pools. A plugin whose ADD would fail with 107 is not ready.
 */
export const checkAccessLogic = fromPromise<void, { readonly kv: ConsulKv }>(async ({ input: { kv } }) => {
  await kv.get(rootPermissionProbeKey);
});
