/**
 * ADD: parse → pick server → load pool → choose IP → CAS write → result.
 * Drawn in docs/state-diagrams/add-command.md. Every error exit is a final state of its own.
 */
import { assign, setup } from 'xstate';
import type { DelegateConfig } from '../cni/config';
import { CniError, ErrorCode, toCniError } from '../cni/errors';
import { ipamResult, type Assigned } from '../cni/result';
import { checkRequestedIpLogic } from '../services/check-requested-ip';
import { chooseIpLogic, type Choice } from '../services/choose-ip';
import { claimIpLogic, type Claim } from '../services/claim-ip';
import { backoffDelay } from '../services/contention';
import type { ConsulKv } from '../services/consul-client';
import type { Candidate } from '../services/ip-math';
import { loadPoolLogic, type LoadedPool } from '../services/load-pool';
import { poolKey } from '../services/kv-layout';
import { parseConfigLogic } from '../services/parse-config';
import { pickServerLogic } from '../services/pick-server';
import { recallHostLogic, type Recalled } from '../services/recall-host';
import { finalOutput, present, type CommandInput, type CommandOutput } from './command';

interface AddContext {
  readonly input: CommandInput;
  readonly config?: DelegateConfig;
  readonly kv?: ConsulKv;
  readonly pool?: LoadedPool;
  readonly lastReserved?: string;
  /** The address being claimed now. */
  readonly candidate?: Candidate;
  /** Addresses other writers took from under us in this invocation. */
  readonly avoid: readonly string[];
  /** How many cas=0 writes this invocation lost. */
  readonly lost: number;
  readonly assigned?: Assigned;
  readonly error?: CniError;
}

export const addCommandMachine = setup({
  types: {
    context: {} as AddContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseConfigLogic,
    pickServer: pickServerLogic,
    loadPool: loadPoolLogic,
    checkRequestedIp: checkRequestedIpLogic,
    recallHost: recallHostLogic,
    chooseIp: chooseIpLogic,
    claimIp: claimIpLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    recordLoss: assign(({ context }) => ({ lost: context.lost + 1, avoid: [...context.avoid, present(context.candidate, 'candidate').ip] })),
    recordPoolFull: assign(({ context }) => ({
      error: new CniError(ErrorCode.PoolFull, `pool ${present(context.pool, 'pool').name} is full`, context.pool!.ranges.length === 0 ? `${poolKey(context.pool!.name)} holds no IP Ranges` : `every address of ${context.pool!.ranges.map((r) => `${r.start}-${r.end}`).join(', ')} is allocated`),
    })),
    recordRaceLost: assign(({ context }) => ({
      error: new CniError(
        ErrorCode.AllocationRace,
        `other hosts took every address this ADD tried in pool ${context.pool?.name}`,
        `lost ${context.lost} cas=0 writes (${context.avoid.join(', ')}); raise ipam.cas_retries if this recurs`,
      ),
    })),
  },
  guards: {
    hasRequestedIp: ({ context }) => context.config?.pool.requestedIp !== undefined,
    poolIsFull: (_, params: { choice: Choice }) => params.choice.kind === 'full',
    alreadyHeld: (_, params: { recalled: Recalled }) => params.recalled.held !== undefined,
    won: (_, params: { claim: Claim }) => params.claim.won,
    retriesLeft: ({ context }) => context.lost < present(context.config, 'config').casRetries,
  },
  delays: {
    backoff: ({ context }) => backoffDelay(context.lost),
  },
}).createMachine({
  id: 'add',
  description: 'CNI ADD: allocate one address of the selected pool to the container, or return the one it already holds.',
  context: ({ input }) => ({ input, avoid: [], lost: 0 }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion, ipam.consul_servers, prevResult.pools.',
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
        onDone: { target: 'loadingPool', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'consulUnreachable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    loadingPool: {
      description: 'Read ipam/<pool> and check its IP Ranges.',
      invoke: {
        id: 'loadPool',
        src: 'loadPool',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), name: present(context.config, 'config').pool.name, log: context.input.log }),
        onDone: [
          { guard: 'hasRequestedIp', target: 'checkingRequestedIp', actions: assign({ pool: ({ event }) => event.output }) },
          { target: 'recallingHost', actions: assign({ pool: ({ event }) => event.output }) },
        ],
        onError: { target: 'poolUnusable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    checkingRequestedIp: {
      description: 'A static IP must lie in a subnet of the pool and not be a network, broadcast or gateway address.',
      invoke: {
        id: 'checkRequestedIp',
        src: 'checkRequestedIp',
        input: ({ context }) => ({ pool: present(context.pool, 'pool'), ip: present(context.config?.pool.requestedIp, 'requested IP') }),
        onDone: { target: 'claimingRequestedIp', actions: assign({ candidate: ({ event }) => event.output }) },
        onError: { target: 'requestRefused', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    claimingRequestedIp: {
      description: 'Write the static IP unconditionally: it is re-allocated to this container.',
      invoke: {
        id: 'claimRequestedIp',
        src: 'claimIp',
        input: ({ context }) => claimInput(context, 'requested'),
        onDone: { target: 'succeeded', actions: assign({ assigned: ({ context }) => context.candidate }) },
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    recallingHost: {
      description: "Read this host's round-robin hint, and return the address this container already holds, if Consul confirms it.",
      invoke: {
        id: 'recallHost',
        src: 'recallHost',
        input: ({ context }) => {
          const config = present(context.config, 'config');
          return {
            kv: present(context.kv, 'server'),
            pool: present(context.pool, 'pool'),
            dataDir: config.dataDir,
            containerId: context.input.env.containerId,
            ifname: context.input.env.ifname,
            log: context.input.log,
          };
        },
        onDone: [
          {
            guard: { type: 'alreadyHeld', params: ({ event }) => ({ recalled: event.output }) },
            target: 'succeeded',
            actions: assign({ assigned: ({ event }) => event.output.held }),
          },
          { target: 'choosingIp', actions: assign({ lastReserved: ({ event }) => event.output.lastReserved }) },
        ],
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    choosingIp: {
      description: 'Find a free address, round robin after the hint, checking a window of candidates per Consul transaction.',
      invoke: {
        id: 'chooseIp',
        src: 'chooseIp',
        input: ({ context }) => ({
          kv: present(context.kv, 'server'),
          pool: present(context.pool, 'pool'),
          ...(context.lastReserved ? { after: context.lastReserved } : {}),
          avoid: context.avoid,
          lost: context.lost,
          log: context.input.log,
          dataDir: present(context.config, 'config').dataDir,
          hostId: present(context.config, 'config').hostId,
        }),
        onDone: [
          { guard: { type: 'poolIsFull', params: ({ event }) => ({ choice: event.output }) }, target: 'poolFull', actions: 'recordPoolFull' },
          {
            target: 'claimingIp',
            actions: assign({ candidate: ({ event }) => (event.output.kind === 'free' ? event.output.candidate : undefined) }),
          },
        ],
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    claimingIp: {
      description: 'Write ipam/<pool>/<ip> with cas=0: only if no other writer took it first.',
      invoke: {
        id: 'claimIp',
        src: 'claimIp',
        input: ({ context }) => claimInput(context, 'next'),
        onDone: [
          {
            guard: { type: 'won', params: ({ event }) => ({ claim: event.output }) },
            target: 'succeeded',
            actions: assign({ assigned: ({ context }) => context.candidate }),
          },
          { guard: 'retriesLeft', target: 'backingOff', actions: 'recordLoss' },
          { target: 'raceLost', actions: ['recordLoss', 'recordRaceLost'] },
        ],
        onError: { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    backingOff: {
      description: 'Another writer took the address: wait a jittered, growing delay, then choose again.',
      after: { backoff: { target: 'choosingIp' } },
    },
    succeeded: { type: 'final', description: 'Print the IPAM result.' },
    invalidInput: { type: 'final', description: 'Stdin or environment is invalid (codes 1, 4, 6, 7). Nothing was sent to Consul.' },
    consulUnreachable: { type: 'final', description: 'No Consul server answered with a leader (code 11).' },
    poolUnusable: { type: 'final', description: 'The pool is missing (100) or its ranges are invalid (101), or reading it failed.' },
    requestRefused: { type: 'final', description: 'The requested IP does not fit the pool (103).' },
    poolFull: { type: 'final', description: 'No free address in the pool (104).' },
    raceLost: { type: 'final', description: 'Other writers took every candidate within ipam.cas_retries (105).' },
    consulFailed: { type: 'final', description: 'A KV read or write failed (11, 106, 107), or an allocation read is invalid (102).' },
  },
  output: ({ context }): CommandOutput =>
    finalOutput(context, () => ipamResult(present(context.config, 'config').cniVersion, [present(context.assigned, 'address')], present(context.config, 'config'))),
});

function claimInput(context: AddContext, mode: 'next' | 'requested') {
  const config = present(context.config, 'config');
  return {
    kv: present(context.kv, 'server'),
    pool: present(context.pool, 'pool'),
    candidate: present(context.candidate, 'candidate'),
    mode,
    containerId: context.input.env.containerId,
    ifname: context.input.env.ifname,
    hostId: config.hostId,
    ...(config.network === undefined ? {} : { network: config.network }),
    dataDir: config.dataDir,
    log: context.input.log,
  };
}

