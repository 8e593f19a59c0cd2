import { fromPromise } from 'xstate';
import { parseGcConfig, type GcConfig } from '../cni/config';

/** Runs first in GC: decodes stdin; the network's name and the runtime's live attachments are required. */
export const parseGcConfigLogic = fromPromise<GcConfig, { readonly stdin: string }>(async ({ input }) => parseGcConfig(input.stdin));
