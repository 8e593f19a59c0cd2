import { fromPromise } from 'xstate';
import { parseMaintenanceConfig, type MaintenanceConfig } from '../cni/config';

/** Runs first in GC and STATUS: decodes stdin; prevResult.pools is optional there. */
export const parseMaintenanceConfigLogic = fromPromise<MaintenanceConfig, { readonly stdin: string }>(async ({ input }) => parseMaintenanceConfig(input.stdin));
