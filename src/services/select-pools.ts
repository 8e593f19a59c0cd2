import { fromPromise } from 'xstate';
import type { CniEnvironment } from '../cni/environment';
import { choosePools, readPerContainerRequest } from '../cni/per-container';
import type { PoolObject } from '../cni/static-config';

export interface SelectPoolsInput {
  readonly command: CniEnvironment['command'];
  readonly args: ReadonlyMap<string, string>;
  readonly pools: readonly PoolObject[];
}

/**
 * Runs in ipam-ds-static: which pools the allocator is given. On ADD, `CNI_ARGS` `IPAM_POOL=<name>[,…]`
 * narrows and orders them (the allocator's own rule, read by the same code: a name the config does not list is
 * error 7 naming both); without it, the config's order. On DEL, CHECK and GC every listed pool, whatever
 * CNI_ARGS says: Nomad's DEL carries none, and the allocator releases and verifies in each pool it is given.
 */
export const selectPoolsLogic = fromPromise<PoolObject[], SelectPoolsInput>(async ({ input: { command, args, pools } }) => {
  if (command !== 'ADD') return [...pools];
  return choosePools(pools, readPerContainerRequest(undefined, args, false).pools);
});
