import { fromPromise } from 'xstate';
import { parseConfig, type DelegateConfig } from '../cni/config';
import type { Log } from './logger';

/** Runs first in every command: decodes stdin and CNI_ARGS into a DelegateConfig, or fails with a CniError naming the field. */
export const parseConfigLogic = fromPromise<
  DelegateConfig,
  { readonly stdin: string; readonly args?: ReadonlyMap<string, string>; readonly staticIp?: boolean; readonly log: Log }
>(async ({ input }) => {
  const config = parseConfig(input.stdin, input.args, input.staticIp ?? true);
  if (config.extraPools > 0) {
    input.log.warn(
      `prevResult.pools selects ${config.extraPools + 1} pools; ADD takes an address from the first, ${config.pool.name}, only (ipam.all_pools takes one from each)`,
    );
  }
  return config;
});
