import { fromPromise } from 'xstate';
import { parseStaticConfig, type StaticConfig } from '../cni/static-config';

/** Runs first in ipam-ds-static: decodes stdin (ipam.pools, prevResult.ips), or fails with a CniError naming the field. */
export const parseStaticConfigLogic = fromPromise<StaticConfig, { readonly stdin: string }>(async ({ input }) => parseStaticConfig(input.stdin));
