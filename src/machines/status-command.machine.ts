/**
 * STATUS (CNI 1.1): parse → pick server. Ready when a Consul server answers with a leader.
 * Drawn in docs/state-diagrams/status-command.md.
 */
import { assign, setup } from 'xstate';
import type { MaintenanceConfig } from '../cni/config';
import { CniError, ErrorCode, toCniError } from '../cni/errors';
import { parseMaintenanceConfigLogic } from '../services/parse-maintenance-config';
import { pickServerLogic } from '../services/pick-server';
import { finalOutput, present, type CommandInput, type CommandOutput } from './command';
import { checkAccessLogic } from '../services/check-access';
import type { ConsulKv } from '../services/consul-client';

interface StatusContext {
  readonly input: CommandInput;
  readonly config?: MaintenanceConfig;
  readonly kv?: ConsulKv;
  readonly error?: CniError;
}

export const statusCommandMachine = setup({
  types: {
    context: {} as StatusContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseMaintenanceConfigLogic,
    pickServer: pickServerLogic,
    checkAccess: checkAccessLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    recordUnavailable: assign({
      error: (_, params: { error: unknown }) => {
        const cause = toCniError(params.error);
        const why = cause.code === ErrorCode.PermissionDenied ? 'Consul denies ipam.consul_token the pools' : 'no Consul server with a leader';
        return new CniError(ErrorCode.PluginNotAvailable, `${why}: ADD would fail now`, cause.details || cause.message);
      },
    }),
  },
}).createMachine({
  id: 'status',
  description: 'CNI STATUS: ready when a Consul server of ipam.consul_servers answers with a leader and lets the token read ipam/.',
  context: ({ input }) => ({ input }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: the ipam settings.',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        input: ({ context }) => ({ stdin: context.input.stdin }),
        onDone: { target: 'pickingServer', actions: assign({ config: ({ event }) => event.output }) },
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    pickingServer: {
      description: 'Try ipam.consul_servers in order; the first with a leader makes the plugin ready.',
      invoke: {
        id: 'pickServer',
        src: 'pickServer',
        input: ({ context }) => ({ consul: context.config!.consul, log: context.input.log }),
        onDone: { target: 'checkingAccess', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'notAvailable', actions: { type: 'recordUnavailable', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    checkingAccess: {
      description: 'Read one key under ipam/ directly: a token that may not read the pools makes ADD fail (107).',
      invoke: {
        id: 'checkAccess',
        src: 'checkAccess',
        input: ({ context }) => ({ kv: present(context.kv, 'server') }),
        onDone: { target: 'ready' },
        onError: { target: 'notAvailable', actions: { type: 'recordUnavailable', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    ready: { type: 'final', description: 'Exit 0, no output.' },
    invalidInput: { type: 'final', description: 'Stdin is invalid (codes 1, 6, 7).' },
    notAvailable: { type: 'final', description: 'No server with a leader, or the token may not read ipam/ (code 50), the reason in the details.' },
  },
  output: ({ context }): CommandOutput => finalOutput(context, () => undefined),
});
