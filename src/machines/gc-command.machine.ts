/**
 * GC (CNI 1.1): parse → pick server → find this host's stale allocations of this network, in the pools the
 * selector named → release them. Drawn in docs/state-diagrams/gc-command.md. Keeps going past errors; prints
 * nothing on success. With no pool named it releases nothing: it never sweeps every pool under ipam/.
 */
import { assign, setup } from 'xstate';
import type { GcConfig } from '../cni/config';
import { CniError, ErrorCode, toCniError } from '../cni/errors';
import type { ConsulKv } from '../services/consul-client';
import { findStaleLogic, type StaleSearch } from '../services/find-stale';
import { parseGcConfigLogic } from '../services/parse-gc-config';
import { pickServerLogic } from '../services/pick-server';
import { releaseStaleLogic, type StaleRelease } from '../services/release-stale';
import { finalOutput, present, type CommandInput, type CommandOutput } from './command';

interface GcContext {
  readonly input: CommandInput;
  readonly config?: GcConfig;
  readonly kv?: ConsulKv;
  readonly search?: StaleSearch;
  readonly error?: CniError;
}


/** One error for everything GC could not do: the problems' shared code (107 when all were denied), else 11. */
function incompleteError(problems: readonly CniError[]): CniError {
  const codes = new Set(problems.map((p) => p.code));
  const code = codes.size === 1 ? problems[0]!.code : ErrorCode.TryAgainLater;
  const details = problems.map((p) => `${p.message}${p.details ? ` (${p.details})` : ''}`).join('; ');
  return new CniError(code, `GC could not finish: ${problems.length} problem(s), first: ${problems[0]?.message}`, details);
}

export const gcCommandMachine = setup({
  types: {
    context: {} as GcContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseGcConfigLogic,
    pickServer: pickServerLogic,
    findStale: findStaleLogic,
    releaseStale: releaseStaleLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    recordIncomplete: assign({ error: (_, params: { problems: readonly CniError[] }) => incompleteError(params.problems) }),
    warnNoPool: ({ context }) =>
      context.input.log.warn(
        `GC of network ${context.config?.network ?? '?'}: no pool named in prevResult.pools (is ipam-ds-static, or another selector, before this plugin in ipam.delegates?); nothing released`,
      ),
  },
  guards: {
    gcDisabled: (_, params: { config: GcConfig }) => !params.config.gc,
    noPoolNamed: (_, params: { config: GcConfig }) => params.config.pools.length === 0,
    hadProblems: (_, params: { problems: readonly CniError[] }) => params.problems.length > 0,
  },
}).createMachine({
  id: 'gc',
  description: "CNI GC: release this host's allocations of this network, in the pools the selector named, whose attachment is not in the runtime's list; nothing else.",
  context: ({ input }) => ({ input }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: ipam settings, the network name, cni.dev/valid-attachments and cni.dev/attachments (one is required), prevResult.pools.',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        input: ({ context }) => ({ stdin: context.input.stdin }),
        onDone: [
          { guard: { type: 'gcDisabled', params: ({ event }) => ({ config: event.output }) }, target: 'disabled', actions: assign({ config: ({ event }) => event.output }) },
          { guard: { type: 'noPoolNamed', params: ({ event }) => ({ config: event.output }) }, target: 'noPoolNamed', actions: assign({ config: ({ event }) => event.output }) },
          { target: 'pickingServer', actions: assign({ config: ({ event }) => event.output }) },
        ],
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    pickingServer: {
      description: 'Try ipam.consul_servers in order; keep the first with a leader.',
      invoke: {
        id: 'pickServer',
        src: 'pickServer',
        input: ({ context }) => ({ consul: present(context.config, 'config').consul, log: context.input.log }),
        onDone: { target: 'findingStale', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'consulUnreachable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    findingStale: {
      description: "Read the named pools' folders; keep allocations of this host and network, noted under data_dir, whose attachment is gone.",
      invoke: {
        id: 'findStale',
        src: 'findStale',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), config: present(context.config, 'config'), log: context.input.log }),
        onDone: { target: 'releasing', actions: assign({ search: ({ event }) => event.output }) },
        onError: { target: 'incomplete', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    releasing: {
      description: 'Delete each stale allocation with cas; one reallocated meanwhile is left alone.',
      invoke: {
        id: 'releaseStale',
        src: 'releaseStale',
        input: ({ context }) => ({
          kv: present(context.kv, 'server'),
          stale: present(context.search, 'search').stale,
          dataDir: present(context.config, 'config').dataDir,
          log: context.input.log,
        }),
        onDone: [
          {
            guard: { type: 'hadProblems', params: ({ context, event }) => ({ problems: [...(context.search?.problems ?? []), ...(event.output as StaleRelease).problems] }) },
            target: 'incomplete',
            actions: { type: 'recordIncomplete', params: ({ context, event }) => ({ problems: [...(context.search?.problems ?? []), ...event.output.problems] }) },
          },
          { target: 'succeeded' },
        ],
        onError: { target: 'incomplete', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    succeeded: { type: 'final', description: 'Every stale allocation of this host is released. No output.' },
    disabled: { type: 'final', tags: ['success'], description: 'ipam.gc is false: nothing is touched. No output.' },
    noPoolNamed: {
      type: 'final',
      tags: ['success'],
      entry: 'warnNoPool',
      description: 'No selector named a pool: nothing is released (never every pool under ipam/); a warning says why. No output.',
    },
    invalidInput: { type: 'final', description: 'Stdin is invalid (codes 1, 6, 7).' },
    consulUnreachable: { type: 'final', description: 'No Consul server answered with a leader (code 11).' },
    incomplete: { type: 'final', description: 'Some pools or keys could not be read or released (code 11 with each problem); the rest were.' },
  },
  output: ({ context }): CommandOutput => finalOutput(context, () => undefined),
});
