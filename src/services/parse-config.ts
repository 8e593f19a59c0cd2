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
    input.log.warn(`prevResult.pools lists ${config.extraPools + 1} pools; only the first, ${config.pool.name}, is used`);
  }
  return config;
});
