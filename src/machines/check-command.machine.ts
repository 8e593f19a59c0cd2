/**
 * CHECK: parse → pick server → load the listed pools → verify that prevResult's addresses are this container's.
 * Drawn in docs/state-diagrams/check-command.md. (The original panicked here.)
 */
import { assign, setup } from 'xstate';
import type { DelegateConfig } from '../cni/config';
import { CniError, toCniError } from '../cni/errors';
import { ipamResult, type Assigned } from '../cni/result';
import type { ConsulKv } from '../services/consul-client';
import type { LoadedPool } from '../services/load-pool';
import { loadPoolsLogic } from '../services/load-pools';
import { poolKey } from '../services/kv-layout';
import { parseConfigLogic } from '../services/parse-config';
import { pickServerLogic } from '../services/pick-server';
import { addressesInPools, nothingToVerify, verifyAllocationsLogic } from '../services/verify-allocations';
import { finalOutput, present, type CommandInput, type CommandOutput } from './command';

interface CheckContext {
  readonly input: CommandInput;
  readonly config?: DelegateConfig;
  readonly kv?: ConsulKv;
  readonly pools: readonly LoadedPool[];
  readonly verified: readonly Assigned[];
  readonly error?: CniError;
}


export const checkCommandMachine = setup({
  types: {
    context: {} as CheckContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseConfigLogic,
    pickServer: pickServerLogic,
    loadPools: loadPoolsLogic,
    verifyAllocations: verifyAllocationsLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
  },
  guards: {
    holdsNothingOfPools: ({ context }, params: { pools: readonly LoadedPool[] }) =>
      addressesInPools(params.pools, present(context.config, 'config').prevIps).length === 0,
  },
}).createMachine({
  id: 'check',
  description: 'CNI CHECK: succeed only when prevResult.ips holds an address of a listed pool and every such address is allocated to this container there.',
  context: ({ input }) => ({ input, pools: [], verified: [] }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion, ipam.consul_servers, prevResult.pools and prevResult.ips.',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        input: ({ context }) => ({ stdin: context.input.stdin, args: context.input.env.args, log: context.input.log }),
        onDone: { target: 'pickingServer', actions: assign({ config: ({ event }) => event.output }) },
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    pickingServer: {
      description: 'Try ipam.consul_servers in order, reading ipam/<pool> (stale, with the leader header); keep the first that knows a leader.',
      invoke: {
        id: 'pickServer',
        src: 'pickServer',
        input: ({ context }) => ({ consul: present(context.config, 'config').consul, log: context.input.log, probeKey: poolKey(present(context.config, 'config').pool.name) }),
        onDone: { target: 'loadingPools', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'consulUnreachable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    loadingPools: {
      description: 'Read ipam/<pool> of each pool prevResult.pools lists: their ranges say which address of prevResult belongs to which.',
      invoke: {
        id: 'loadPools',
        src: 'loadPools',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), pools: present(context.config, 'config').listedPools.map((name) => ({ name })), log: context.input.log }),
        onDone: [
          {
            guard: { type: 'holdsNothingOfPools', params: ({ event }) => ({ pools: event.output.map((planned) => planned.pool) }) },
            target: 'nothingToVerify',
            actions: assign({ error: ({ context, event }) => nothingToVerify(event.output.map((planned) => planned.pool), present(context.config, 'config').prevIps) }),
          },
          { target: 'verifying', actions: assign({ pools: ({ event }) => event.output.map((planned) => planned.pool) }) },
        ],
        onError: { target: 'poolUnusable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    verifying: {
      description: "Read the key of each address of prevResult.ips in the pool holding it: each must be this container's.",
      invoke: {
        id: 'verifyAllocations',
        src: 'verifyAllocations',
        input: ({ context }) => ({
          kv: present(context.kv, 'server'),
          pools: context.pools,
          prevIps: present(context.config, 'config').prevIps,
          containerId: context.input.env.containerId,
          ifname: context.input.env.ifname,
        }),
        onDone: { target: 'succeeded', actions: assign({ verified: ({ event }) => event.output }) },
        onError: { target: 'mismatch', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    succeeded: { type: 'final', description: 'Print the verified addresses as an IPAM result.' },
    invalidInput: { type: 'final', description: 'Stdin or environment is invalid (codes 1, 4, 6, 7). Nothing was sent to Consul.' },
    consulUnreachable: { type: 'final', description: 'No Consul server answered with a leader (code 11).' },
    poolUnusable: { type: 'final', description: 'A pool is missing (100) or its ranges are invalid (101), or reading it failed.' },
    nothingToVerify: { type: 'final', description: 'No address of prevResult.ips lies in a listed pool: a CHECK that verifies nothing fails (108).' },
    mismatch: { type: 'final', description: 'An address is not allocated to this container (108), or reading it failed (11, 102, 106, 107).' },
  },
  output: ({ context }): CommandOutput => finalOutput(context, () => ipamResult(present(context.config, 'config').cniVersion, context.verified, present(context.config, 'config'))),
});
