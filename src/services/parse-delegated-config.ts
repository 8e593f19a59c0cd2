import { fromPromise } from 'xstate';
import { parseDelegatedConfig, type DelegatedConfig } from '../cni/delegated-plugin';

/** Runs first in ipam-delegated: decodes stdin into the delegates to run and their timeout. */
export const parseDelegatedConfigLogic = fromPromise<DelegatedConfig, { readonly stdin: string }>(async ({ input }) => parseDelegatedConfig(input.stdin));
