/**
 * ipam-ds-static's commands (ADD, DEL, CHECK, GC): parse → select → emit the pools for the allocator after it.
 * Drawn in docs/state-diagrams/ds-static-command.md. Every error exit is a final state of its own.
 */
import { assign, setup } from 'xstate';
import { CniError, toCniError } from '../cni/errors';
import type { PoolObject, StaticConfig } from '../cni/static-config';
import { parseStaticConfigLogic } from '../services/parse-static-config';
import { selectPoolsLogic } from '../services/select-pools';
import { finalOutput, present, type CommandInput } from './command';

/** The selector's result: an IPAM result with no addresses of its own, the runtime's cached ones, and the pools. */
export interface SelectorResult {
  readonly cniVersion: string;
  readonly ips: readonly unknown[];
  readonly routes: readonly [];
  readonly dns: Record<string, never>;
  readonly pools: readonly PoolObject[];
}

export type SelectorOutput =
  | { readonly type: 'ok'; readonly result: SelectorResult }
  | { readonly type: 'error'; readonly error: CniError; readonly cniVersion?: string };

interface DsStaticContext {
  readonly input: CommandInput;
  readonly config?: StaticConfig;
  readonly pools?: readonly PoolObject[];
  readonly error?: CniError;
}

export const dsStaticCommandMachine = setup({
  types: {
    context: {} as DsStaticContext,
    input: {} as CommandInput,
    output: {} as SelectorOutput,
  },
  actors: {
    parseStaticConfig: parseStaticConfigLogic,
    selectPools: selectPoolsLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
  },
}).createMachine({
  id: 'dsStatic',
  description: "ipam-ds-static: return the network config's ipam.pools (narrowed by IPAM_POOL on ADD) as pools, and prevResult.ips as they came.",
  context: ({ input }) => ({ input }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion, ipam.pools (each a Pool object with a valid name and requested IP), prevResult.ips.',
      invoke: {
        id: 'parseStaticConfig',
        src: 'parseStaticConfig',
        input: ({ context }) => ({ stdin: context.input.stdin }),
        onDone: { target: 'selecting', actions: assign({ config: ({ event }) => event.output }) },
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    selecting: {
      description: 'On ADD, narrow and order the pools by CNI_ARGS IPAM_POOL; on DEL, CHECK and GC keep every listed pool.',
      invoke: {
        id: 'selectPools',
        src: 'selectPools',
        input: ({ context }) => ({ command: context.input.env.command, args: context.input.env.args, pools: present(context.config, 'config').pools }),
        onDone: { target: 'succeeded', actions: assign({ pools: ({ event }) => event.output }) },
        onError: { target: 'selectionRefused', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    succeeded: { type: 'final', description: 'Emit the pools and prevResult.ips as an IPAM result with no addresses of its own.' },
    invalidInput: { type: 'final', description: 'Stdin is invalid (codes 1, 6, 7).' },
    selectionRefused: { type: 'final', description: 'IPAM_POOL is malformed (4) or names a pool the config does not list (7).' },
  },
  output: ({ context }): SelectorOutput => {
    const output = finalOutput(context, () => undefined);
    if (output.type === 'error') return output;
    const config = present(context.config, 'config');
    return { type: 'ok', result: { cniVersion: config.cniVersion, ips: config.ips, routes: [], dns: {}, pools: present(context.pools, 'pools') } };
  },
});
