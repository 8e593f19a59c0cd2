/**
 * ADD: parse → pick server → load the pools → for each pool: choose IP → CAS write → result. On a host that
 * served the pool before, parse → take the next address in one request → result, when that is possible.
 * One pool, unless ipam.all_pools: then one address from each (dual-stack), all-or-nothing — an error after
 * the first pool releases what this ADD took before it reaches its final state.
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
import type { LoadedPool } from '../services/load-pool';
import { loadPoolsLogic, type PlannedPool } from '../services/load-pools';
import { poolKey } from '../services/kv-layout';
import { parseConfigLogic } from '../services/parse-config';
import { pickServerLogic, withSuspectLast } from '../services/pick-server';
import { recallHostLogic, type Recalled } from '../services/recall-host';
import { releaseTakenLogic, type Taken } from '../services/release-taken';
import { takeNextLogic, type TakeNext } from '../services/take-next';
import { finalOutput, present, thisContainer, type CommandInput, type CommandOutput } from './command';

interface AddContext {
  readonly input: CommandInput;
  readonly config?: DelegateConfig;
  readonly kv?: ConsulKv;
  /** The pools to take from, in order, read from Consul, each with the static IP to give from it. */
  readonly plans: readonly PlannedPool[];
  /** Which of them is being served. */
  readonly index: number;
  /** plans[index].pool. */
  readonly pool?: LoadedPool;
  readonly lastReserved?: string;
  /** How many addresses after lastReserved the host's hint records as free (recallHost). */
  readonly knownFree?: number;
  /** The address being claimed now. */
  readonly candidate?: Candidate;
  /** How many addresses right after it chooseIp found free (kept with the host's hint). */
  readonly freeAfter?: number;
  /** Addresses other writers took from under us in this invocation. */
  readonly avoid: readonly string[];
  /** How many cas=0 writes this invocation lost. */
  readonly lost: number;
  /** One address per pool served so far: the result. */
  readonly assigned: readonly Assigned[];
  /** What this invocation wrote (not what it found already held): released if a later pool fails. */
  readonly taken: readonly Taken[];
  readonly error?: CniError;
  /** The error exit to reach once what was taken is released. */
  readonly failure?: Failure;
  /** The server the one-request claim could not talk to: the full way tries it last. */
  readonly suspect?: string;
}

/** The error exits an ADD can reach after it has taken an address from an earlier pool. */
const afterTaking = ['requestRefused', 'poolFull', 'raceLost', 'consulFailed'] as const;
type Failure = (typeof afterTaking)[number];

export const addCommandMachine = setup({
  types: {
    context: {} as AddContext,
    input: {} as CommandInput,
    output: {} as CommandOutput,
  },
  actors: {
    parseConfig: parseConfigLogic,
    takeNext: takeNextLogic,
    pickServer: pickServerLogic,
    loadPools: loadPoolsLogic,
    checkRequestedIp: checkRequestedIpLogic,
    recallHost: recallHostLogic,
    chooseIp: chooseIpLogic,
    claimIp: claimIpLogic,
    releaseTaken: releaseTakenLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    recordFailure: assign({ failure: (_, params: { failure: Failure }) => params.failure }),
    startPool: assign(({ context }) => ({ pool: present(context.plans[context.index], 'pool plan').pool })),
    /** The next pool starts afresh: its own hint, its own losses. */
    nextPool: assign(({ context }) => ({ index: context.index + 1, candidate: undefined, freeAfter: undefined, lastReserved: undefined, knownFree: undefined, avoid: [], lost: 0 })),
    recordTaken: assign(({ context }) => {
      const candidate = present(context.candidate, 'candidate');
      return { assigned: [...context.assigned, candidate], taken: [...context.taken, { pool: present(context.pool, 'pool').name, ip: candidate.ip }] };
    }),
    recordTookNext: assign(({ context }, params: { took: TakeNext }) =>
      params.took.kind === 'took' ? { assigned: [...context.assigned, params.took.assigned], taken: [...context.taken, { pool: params.took.pool, ip: params.took.assigned.ip }] } : {},
    ),
    /** An address another writer holds is not tried again by the full way. */
    recordDeclined: assign(({ context }, params: { took: TakeNext }) =>
      params.took.kind === 'declined'
        ? { ...(params.took.lost ? { avoid: [...context.avoid, params.took.lost] } : {}), ...(params.took.suspect ? { suspect: params.took.suspect } : {}) }
        : {},
    ),
    logTakeNextFailure: ({ context }, params: { error: unknown }) => context.input.log.warn(`claiming in one request failed unexpectedly: ${toCniError(params.error).message}; going the full way`),
    recordHeld: assign({ assigned: ({ context }, params: { held: Assigned }) => [...context.assigned, params.held] }),
    logRollbackFailure: ({ context }, params: { error: unknown }) =>
      context.input.log.warn(`could not release ${context.taken.map((t) => t.ip).join(', ')} after the ADD failed: ${toCniError(params.error).message}`),
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
    /** One pool, no static IP: what takeNext serves. */
    oneNextAddress: ({ context }) => {
      const config = present(context.config, 'config');
      return config.pools.length === 1 && config.pools[0]!.requestedIp === undefined && config.staticIp === undefined;
    },
    tookNext: (_, params: { took: TakeNext }) => params.took.kind === 'took',
    /** The static IP fits none of the pools (103), as opposed to a pool that cannot be read. */
    ipRefused: (_, params: { error: unknown }) => toCniError(params.error).code === ErrorCode.RequestedIpNotInPool,
    hasRequestedIp: ({ context }) => context.plans[context.index]?.requestedIp !== undefined,
    morePools: ({ context }) => context.index + 1 < context.plans.length,
    tookSome: ({ context }) => context.taken.length > 0,
    failedAs: ({ context }, params: { failure: Failure }) => context.failure === params.failure,
    poolIsFull: (_, params: { choice: Choice }) => params.choice.kind === 'full',
    fullAfterTaking: ({ context }, params: { choice: Choice }) => params.choice.kind === 'full' && context.taken.length > 0,
    alreadyHeld: (_, params: { recalled: Recalled }) => params.recalled.held !== undefined,
    won: (_, params: { claim: Claim }) => params.claim.won,
    retriesLeft: ({ context }) => context.lost < present(context.config, 'config').casRetries,
  },
  delays: {
    backoff: ({ context }) => backoffDelay(context.lost),
  },
}).createMachine({
  id: 'add',
  description: 'CNI ADD: allocate one address of the selected pool (of each, with all_pools) to the container, or return the one it already holds.',
  context: ({ input }) => ({ input, plans: [], index: 0, avoid: [], lost: 0, assigned: [], taken: [] }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion, ipam.consul_servers, prevResult.pools.',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        input: ({ context }) => ({ stdin: context.input.stdin, args: context.input.env.args, log: context.input.log }),
        onDone: { target: 'parsed', actions: assign({ config: ({ event }) => event.output }) },
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    parsed: {
      description: 'One pool and no static IP: try the one-request claim first; otherwise the full way.',
      always: [{ guard: 'oneNextAddress', target: 'takingNext' }, { target: 'pickingServer' }],
    },
    takingNext: {
      description: "Claim the address after the host's hint in one transaction, guarded by the ModifyIndex of the host's copy of ipam/<pool>; any doubt goes the full way.",
      invoke: {
        id: 'takeNext',
        src: 'takeNext',
        input: ({ context }) => {
          const config = present(context.config, 'config');
          return { consul: config.consul, pool: config.pool.name, ...claimant(context) };
        },
        onDone: [
          {
            guard: { type: 'tookNext', params: ({ event }) => ({ took: event.output }) },
            target: 'succeeded',
            actions: { type: 'recordTookNext', params: ({ event }) => ({ took: event.output }) },
          },
          { target: 'pickingServer', actions: { type: 'recordDeclined', params: ({ event }) => ({ took: event.output }) } },
        ],
        onError: { target: 'pickingServer', actions: { type: 'logTakeNextFailure', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    pickingServer: {
      description: 'Try ipam.consul_servers in order, reading ipam/<pool> (stale, with the leader header); keep the first that knows a leader.',
      invoke: {
        id: 'pickServer',
        src: 'pickServer',
        input: ({ context }) => ({
          consul: withSuspectLast(present(context.config, 'config').consul, context.suspect),
          log: context.input.log,
          probeKey: poolKey(present(context.config, 'config').pool.name),
        }),
        onDone: { target: 'loadingPools', actions: assign({ kv: ({ event }) => event.output }) },
        onError: { target: 'consulUnreachable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    loadingPools: {
      description: 'Read ipam/<pool> of each pool to serve and check its IP Ranges; with all_pools, give the static IP to the pool whose subnets hold it.',
      invoke: {
        id: 'loadPools',
        src: 'loadPools',
        input: ({ context }) => {
          const config = present(context.config, 'config');
          return { kv: present(context.kv, 'server'), pools: config.pools, ...(config.staticIp === undefined ? {} : { staticIp: config.staticIp }), log: context.input.log };
        },
        onDone: { target: 'startingPool', actions: assign({ plans: ({ event }) => event.output }) },
        onError: [
          {
            guard: { type: 'ipRefused', params: ({ event }) => ({ error: event.error }) },
            target: 'requestRefused',
            actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) },
          },
          { target: 'poolUnusable', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
    },
    startingPool: {
      description: 'Serve the next pool: its static IP if it has one, else a free address.',
      entry: 'startPool',
      always: [{ guard: 'hasRequestedIp', target: 'checkingRequestedIp' }, { target: 'recallingHost' }],
    },
    checkingRequestedIp: {
      description: 'A static IP must lie in a subnet of the pool and not be a network, broadcast or gateway address.',
      invoke: {
        id: 'checkRequestedIp',
        src: 'checkRequestedIp',
        input: ({ context }) => ({ pool: present(context.pool, 'pool'), ip: present(context.plans[context.index]?.requestedIp, 'requested IP') }),
        onDone: { target: 'claimingRequestedIp', actions: assign({ candidate: ({ event }) => event.output }) },
        onError: [
          {
            guard: 'tookSome',
            target: 'rollingBack',
            actions: [{ type: 'recordError', params: ({ event }) => ({ error: event.error }) }, { type: 'recordFailure', params: { failure: 'requestRefused' } }],
          },
          { target: 'requestRefused', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
    },
    claimingRequestedIp: {
      description: 'Write the static IP unconditionally: it is re-allocated to this container.',
      invoke: {
        id: 'claimRequestedIp',
        src: 'claimIp',
        input: ({ context }) => claimInput(context, 'requested'),
        onDone: { target: 'poolDone', actions: 'recordTaken' },
        onError: [
          {
            guard: 'tookSome',
            target: 'rollingBack',
            actions: [{ type: 'recordError', params: ({ event }) => ({ error: event.error }) }, { type: 'recordFailure', params: { failure: 'consulFailed' } }],
          },
          { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
    },
    recallingHost: {
      description: "Read this host's round-robin hint, and return the address this container already holds, if Consul confirms it.",
      invoke: {
        id: 'recallHost',
        src: 'recallHost',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), pool: present(context.pool, 'pool'), ...thisContainer(context) }),
        onDone: [
          {
            guard: { type: 'alreadyHeld', params: ({ event }) => ({ recalled: event.output }) },
            target: 'poolDone',
            actions: { type: 'recordHeld', params: ({ event }) => ({ held: present(event.output.held, 'held address') }) },
          },
          { target: 'choosingIp', actions: assign({ lastReserved: ({ event }) => event.output.lastReserved, knownFree: ({ event }) => event.output.knownFree }) },
        ],
        onError: [
          {
            guard: 'tookSome',
            target: 'rollingBack',
            actions: [{ type: 'recordError', params: ({ event }) => ({ error: event.error }) }, { type: 'recordFailure', params: { failure: 'consulFailed' } }],
          },
          { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
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
          ...(context.knownFree ? { knownFree: context.knownFree } : {}),
          avoid: context.avoid,
          lost: context.lost,
          log: context.input.log,
          dataDir: present(context.config, 'config').dataDir,
          hostId: present(context.config, 'config').hostId,
        }),
        onDone: [
          {
            guard: { type: 'fullAfterTaking', params: ({ event }) => ({ choice: event.output }) },
            target: 'rollingBack',
            actions: ['recordPoolFull', { type: 'recordFailure', params: { failure: 'poolFull' } }],
          },
          { guard: { type: 'poolIsFull', params: ({ event }) => ({ choice: event.output }) }, target: 'poolFull', actions: 'recordPoolFull' },
          {
            target: 'claimingIp',
            actions: assign(({ event }) => (event.output.kind === 'free' ? { candidate: event.output.candidate, freeAfter: event.output.freeAfter ?? 0 } : {})),
          },
        ],
        onError: [
          {
            guard: 'tookSome',
            target: 'rollingBack',
            actions: [{ type: 'recordError', params: ({ event }) => ({ error: event.error }) }, { type: 'recordFailure', params: { failure: 'consulFailed' } }],
          },
          { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
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
            target: 'poolDone',
            actions: 'recordTaken',
          },
          { guard: 'retriesLeft', target: 'backingOff', actions: 'recordLoss' },
          { guard: 'tookSome', target: 'rollingBack', actions: ['recordLoss', 'recordRaceLost', { type: 'recordFailure', params: { failure: 'raceLost' } }] },
          { target: 'raceLost', actions: ['recordLoss', 'recordRaceLost'] },
        ],
        onError: [
          {
            guard: 'tookSome',
            target: 'rollingBack',
            actions: [{ type: 'recordError', params: ({ event }) => ({ error: event.error }) }, { type: 'recordFailure', params: { failure: 'consulFailed' } }],
          },
          { target: 'consulFailed', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
    },
    backingOff: {
      description: 'Another writer took the address: wait a jittered, growing delay, then choose again.',
      after: { backoff: { target: 'choosingIp' } },
    },
    poolDone: {
      description: 'This pool gave its address: on to the next pool (all_pools), or done.',
      always: [{ guard: 'morePools', target: 'startingPool', actions: 'nextPool' }, { target: 'succeeded' }],
    },
    rollingBack: {
      description: 'A later pool failed: release (cas delete) what this ADD took from the earlier ones, then end in that failure.',
      invoke: {
        id: 'releaseTaken',
        src: 'releaseTaken',
        input: ({ context }) => ({ kv: present(context.kv, 'server'), taken: context.taken, ...thisContainer(context) }),
        // The runtime must see the failure that ended the ADD, not the rollback's: a failed release is logged.
        onDone: afterTaking.map((failure) => ({ guard: { type: 'failedAs' as const, params: { failure } }, target: failure })),
        onError: afterTaking.map((failure) => ({
          guard: { type: 'failedAs' as const, params: { failure } },
          target: failure,
          actions: { type: 'logRollbackFailure' as const, params: ({ event }: { event: { error: unknown } }) => ({ error: event.error }) },
        })),
      },
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
    finalOutput(context, () => ipamResult(present(context.config, 'config').cniVersion, context.assigned, present(context.config, 'config'))),
});

/** That, and what an allocation written for the container records: the steps that claim an address. */
function claimant(context: AddContext) {
  const { hostId, network } = present(context.config, 'config');
  return { ...thisContainer(context), hostId, ...(network === undefined ? {} : { network }) };
}

function claimInput(context: AddContext, mode: 'next' | 'requested') {
  return {
    kv: present(context.kv, 'server'),
    pool: present(context.pool, 'pool'),
    candidate: present(context.candidate, 'candidate'),
    mode,
    ...claimant(context),
    ...(mode === 'next' && context.freeAfter ? { freeAfter: context.freeAfter } : {}),
  };
}

