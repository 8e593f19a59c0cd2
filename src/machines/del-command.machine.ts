/**
 * DEL: parse → pick server → find this container's allocations in every listed pool → release each with a cas delete.
 * With one pool listed and the host's note of the address with its key's ModifyIndex: parse → release it in one request.
 * Drawn in docs/state-diagrams/del-command.md. Idempotent: nothing to release is success.
 */
import { assign, setup } from 'xstate';
import type { DelegateConfig } from '../cni/config';
import { CniError, toCniError } from '../cni/errors';
import { ipamResult } from '../cni/result';
import type { ConsulKv } from '../services/consul-client';
import { findAllocationsLogic, type Found } from '../services/find-allocations';
import { allocationKey } from '../services/kv-layout';
import { parseConfigLogic } from '../services/parse-config';
import { pickServerLogic, withSuspectLast } from '../services/pick-server';
import { releaseAllocationsLogic } from '../services/release-allocations';
import { releaseNotedLogic, type ReleaseNoted } from '../services/release-noted';
import { finalOutput, present, thisContainer, type CommandInput, type CommandOutput } from './command';

/**
 * The key DEL reads first when the runtime named an address: read stale to pick the server, its answer kept only
 * when it holds a value (a stale "missing" is asked again, consistently); a stale index only makes the cas
 * delete fail, and releaseAllocations then reads again.
 */
function firstAddressKey(config: DelegateConfig): string | undefined {
  const [first] = config.prevIps;
  return first ? allocationKey(config.pool.name, first.ip) : undefined;
}

interface DelContext {
  readonly input: CommandInput;
  readonly config?: DelegateConfig;
  readonly kv?: ConsulKv;
  readonly found: readonly Found[];
  readonly error?: CniError;
  /** The server the one-request release could not talk to: the full way tries it last. */
  readonly suspect?: string;
}


export const delCommandMachine = setup({
  types: {
    context: {} as DelContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseConfigLogic,
    releaseNoted: releaseNotedLogic,
    pickServer: pickServerLogic,
    findAllocations: findAllocationsLogic,
    releaseAllocations: releaseAllocationsLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    logReleaseNotedFailure: ({ context }, params: { error: unknown }) =>
      context.input.log.warn(`releasing in one request failed unexpectedly: ${toCniError(params.error).message}; going the full way`),
  },
  guards: {
    onePoolListed: ({ context }) => present(context.config, 'config').listedPools.length === 1,
    releasedNoted: (_, params: { released: ReleaseNoted }) => params.released.kind === 'released',
    nothingFound: (_, params: { found: readonly Found[] }) => params.found.length === 0,
  },
}).createMachine({
  id: 'del',
  description: "CNI DEL: release the container's addresses in every pool prevResult.pools lists. Succeeds when there is nothing to release.",
  context: ({ input }) => ({ input, found: [] }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion, ipam.consul_servers, prevResult.pools (and prevResult.ips when the runtime passes them).',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        // A static IP is only ADD's business: a bad one must not make DEL fail and leak the address.
        input: ({ context }) => ({ stdin: context.input.stdin, args: context.input.env.args, staticIp: false, log: context.input.log }),
        onDone: { target: 'parsed', actions: assign({ config: ({ event }) => event.output }) },
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    parsed: {
      description: 'One pool listed: try the one-request release of the noted address first; otherwise the full way.',
      always: [{ guard: 'onePoolListed', target: 'releasingNoted' }, { target: 'pickingServer' }],
    },
    releasingNoted: {
      description: "Delete the address this host noted for the container with cas on the ModifyIndex the note keeps; any doubt goes the full way.",
      invoke: {
        id: 'releaseNoted',
        src: 'releaseNoted',
        input: ({ context }) => {
          const config = present(context.config, 'config');
          return { consul: config.consul, pool: present(config.listedPools[0], 'listed pool'), prevIps: config.prevIps, ...thisContainer(context) };
        },
        onDone: [
          { guard: { type: 'releasedNoted', params: ({ event }) => ({ released: event.output }) }, target: 'succeeded' },
          { target: 'pickingServer', actions: assign({ suspect: ({ event }) => (event.output.kind === 'declined' ? event.output.suspect : undefined) }) },
        ],
        onError: { target: 'pickingServer', actions: { type: 'logReleaseNotedFailure', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    pickingServer: {
      description: "Try ipam.consul_servers in order, reading the key of prevResult's first address (stale, with the leader header); keep the first that knows a leader.",
      invoke: {
        id: 'pickServer',
        src: 'pickServer',
        input: ({ context }) => ({
          consul: withSuspectLast(present(context.config, 'config').consul, context.suspect),
          log: context.input.log,
          probeKey: firstAddressKey(present(context.config, 'config')),
        }),
        onDone: { target: 'findingAllocations', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'consulUnreachable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    findingAllocations: {
      description: "In each listed pool, read the keys of prevResult.ips and the host's note; when prevResult.ips names no address, search each pool for every allocation of this container.",
      invoke: {
        id: 'findAllocations',
        src: 'findAllocations',
        input: ({ context }) => {
          const config = present(context.config, 'config');
          return { kv: present(context.kv, 'server'), pools: config.listedPools, prevIps: config.prevIps, ...thisContainer(context) };
        },
        onDone: [
          { guard: { type: 'nothingFound', params: ({ event }) => ({ found: event.output }) }, target: 'succeeded' },
          { target: 'releasing', actions: assign({ found: ({ event }) => event.output }) },
        ],
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    releasing: {
      description: "Delete each allocation with cas on the index just read; one that changed hands is left alone. Clear the host's note.",
      invoke: {
        id: 'releaseAllocations',
        src: 'releaseAllocations',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), pools: present(context.config, 'config').listedPools, found: context.found, ...thisContainer(context) }),
        onDone: { target: 'succeeded' },
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    succeeded: { type: 'final', description: 'Print an IPAM result with no addresses (the delegation protocol wants output on every command).' },
    invalidInput: { type: 'final', description: 'Stdin or environment is invalid (codes 1, 4, 6, 7). Nothing was sent to Consul.' },
    consulUnreachable: { type: 'final', description: 'No Consul server answered with a leader (code 11): the runtime should retry.' },
    consulFailed: { type: 'final', description: 'A KV read or delete failed (11, 106, 107).' },
  },
  output: ({ context }): CommandOutput => finalOutput(context, () => ipamResult(present(context.config, 'config').cniVersion, [])),
});
