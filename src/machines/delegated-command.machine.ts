/**
 * ipam-delegated, every command: parse → run the delegates of ipam.delegates in order, each given the
 * previous one's result as prevResult. A failed ADD of delegate k is rolled back: DEL on k at once, then DEL
 * on delegates 1..k in order. DEL, CHECK and GC run every delegate and collect errors; STATUS stops at the
 * first delegate that is not ready.
 * The protocol: ../shared/docs/cni-consul-facts.md, "The delegation protocol", and the original
 * https://github.com/passcod/cni-plugins/tree/main/ipam-delegated, whose inputs and outputs this keeps.
 */
import { assign, setup } from 'xstate';
import type { DelegatedConfig } from '../cni/delegated-plugin';
import { sniffVersion } from '../cni/stdin';
import type { CniEnvironment, Command } from '../cni/environment';
import { CniError, ErrorCode, toCniError } from '../cni/errors';
import { DelegateNotFoundError, execDelegateLogic, type DelegateResult, type ExecDelegateInput } from '../services/exec-delegate';
import type { Log } from '../services/logger';
import { parseDelegatedConfigLogic } from '../services/parse-delegated-config';
import { present } from './command';

/** What the process gives the machine. */
export interface DelegatedInput {
  readonly env: CniEnvironment;
  readonly stdin: string;
  readonly log: Log;
  /** The whole process environment: each delegate is run with it, CNI_COMMAND aside. */
  readonly processEnv: NodeJS.ProcessEnv;
}

/**
 * How the command ended. `result` is the last delegate's output as it printed it (absent for GC and
 * STATUS, which print nothing on success). Failure is data: the machine never throws.
 */
export type DelegatedOutput =
  | { readonly type: 'ok'; readonly result?: DelegateResult }
  | { readonly type: 'error'; readonly error: CniError; readonly cniVersion?: string };

/** One delegate that failed, and under which command. */
export interface DelegateFailure {
  /** Its position in ipam.delegates (a name may be listed twice). */
  readonly index: number;
  readonly delegate: string;
  readonly command: Command;
  readonly error: CniError;
}

interface DelegatedContext {
  readonly input: DelegatedInput;
  readonly config?: DelegatedConfig;
  /** The delegate running now (ADD, DEL, CHECK, GC, STATUS), or being rolled back. */
  readonly index: number;
  /** What the next delegate gets as prevResult; undefined leaves the incoming config's own prevResult. */
  readonly prevResult?: DelegateResult;
  /** The output of the last delegate that succeeded. */
  readonly lastResult?: DelegateResult;
  /** ADD: the delegate whose ADD failed, and why. */
  readonly addFailure?: DelegateFailure;
  /** Every other failure, in the order they happened (DEL, CHECK, GC; the rollback's DELs). */
  readonly failures: readonly DelegateFailure[];
  readonly error?: CniError;
}

/** ipam-delegated's lifecycle for every command; collaborators come in through `input`, delegates run through the `execDelegate` actor. */
export const delegatedCommandMachine = setup({
  types: {
    context: {} as DelegatedContext,
    input: {} as DelegatedInput,
    output: {} as DelegatedOutput,
  },
  actors: {
    // Pure decoding; an actor so that its failure is an event like any other, and a test can swap it.
    parseConfig: parseDelegatedConfigLogic,
    execDelegate: execDelegateLogic,
  },
  actions: {
    recordError: assign({ error: (_, params: { error: unknown }) => toCniError(params.error) }),
    /** A delegate succeeded: its output is what the next one (or the runtime) gets. */
    recordResult: assign((_, params: { output: DelegateResult | undefined }) =>
      params.output === undefined ? {} : { prevResult: params.output, lastResult: params.output },
    ),
    recordFailure: assign({
      failures: ({ context }, params: { error: unknown; command: Command }) => [
        ...context.failures,
        { index: context.index, delegate: delegateAt(context, context.index), command: params.command, error: toCniError(params.error) },
      ],
    }),
    next: assign({ index: ({ context }) => context.index + 1 }),
    /** ADD of delegate k failed: remember it; prevResult stays the one k received, where the rollback starts. */
    recordAddFailure: assign({
      addFailure: ({ context }, params: { error: unknown }) => ({
        index: context.index,
        delegate: delegateAt(context, context.index),
        command: 'ADD' as const,
        error: toCniError(params.error),
      }),
    }),
    rewind: assign({ index: 0 }),
    composeAddError: assign({ error: ({ context }) => addError(present(context.addFailure, 'ADD failure'), context.failures) }),
    composeCollectedError: assign({ error: ({ context }) => collectedError(context.input.env.command, context.failures) }),
  },
  guards: {
    isAdd: ({ context }) => context.input.env.command === 'ADD',
    isStatus: ({ context }) => context.input.env.command === 'STATUS',
    hasNext: ({ context }) => context.index + 1 < present(context.config, 'config').delegates.length,
    /** Rollback covers delegates 1..k, the failed one k included (the original's order). */
    hasNextToUndo: ({ context }) => context.index + 1 <= present(context.addFailure, 'ADD failure').index,
    /** A delegate missing from CNI_PATH never ran: there is nothing of its ADD to undo at once. */
    failedDelegateRan: (_, params: { error: unknown }) => !(params.error instanceof DelegateNotFoundError),
    anyFailed: ({ context }) => context.failures.length > 0,
  },
}).createMachine({
  id: 'delegated',
  description: 'ipam-delegated: run the IPAM delegates of ipam.delegates from CNI_PATH, in order, chaining their results.',
  context: ({ input }) => ({ input, index: 0, failures: [] }),
  initial: 'parsing',
  states: {
    parsing: {
      description: 'Decode stdin: cniVersion and ipam.delegates (a non-empty list of plugin file names).',
      invoke: {
        id: 'parseConfig',
        src: 'parseConfig',
        input: ({ context }) => ({ stdin: context.input.stdin }),
        onDone: [
          { guard: 'isAdd', target: 'adding', actions: assign({ config: ({ event }) => event.output }) },
          { guard: 'isStatus', target: 'checkingStatus', actions: assign({ config: ({ event }) => event.output }) },
          { target: 'runningAll', actions: assign({ config: ({ event }) => event.output }) },
        ],
        onError: { target: 'invalidInput', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    adding: {
      description: 'ADD on the current delegate; the first gets the incoming config, each next one the previous output as prevResult.',
      invoke: {
        id: 'addDelegate',
        src: 'execDelegate',
        input: ({ context }) => execInput(context, 'ADD'),
        onDone: [
          {
            guard: 'hasNext',
            target: 'adding',
            reenter: true,
            actions: [{ type: 'recordResult', params: ({ event }) => ({ output: event.output }) }, 'next'],
          },
          { target: 'succeeded', actions: { type: 'recordResult', params: ({ event }) => ({ output: event.output }) } },
        ],
        onError: [
          {
            guard: { type: 'failedDelegateRan', params: ({ event }) => ({ error: event.error }) },
            target: 'undoingFailed',
            actions: { type: 'recordAddFailure', params: ({ event }) => ({ error: event.error }) },
          },
          { target: 'rollingBack', actions: [{ type: 'recordAddFailure', params: ({ event }) => ({ error: event.error }) }, 'rewind'] },
        ],
      },
    },
    undoingFailed: {
      description:
        'DEL at once on the delegate whose ADD failed, with the config its ADD got, as the original does before anything else; its output is not passed on.',
      invoke: {
        id: 'undoFailedDelegate',
        src: 'execDelegate',
        input: ({ context }) => execInput(context, 'DEL'),
        onDone: { target: 'rollingBack', actions: 'rewind' },
        onError: {
          target: 'rollingBack',
          actions: [{ type: 'recordFailure', params: ({ event }) => ({ error: event.error, command: 'DEL' as const }) }, 'rewind'],
        },
      },
    },
    rollingBack: {
      description:
        "Then DEL on delegates 1..k in order, the failed one last again, starting from the prevResult it got and passing each DEL's output on.",
      invoke: {
        id: 'undoDelegate',
        src: 'execDelegate',
        input: ({ context }) => execInput(context, 'DEL'),
        onDone: [
          {
            guard: 'hasNextToUndo',
            target: 'rollingBack',
            reenter: true,
            actions: [{ type: 'recordResult', params: ({ event }) => ({ output: event.output }) }, 'next'],
          },
          { target: 'addFailed', actions: { type: 'recordResult', params: ({ event }) => ({ output: event.output }) } },
        ],
        onError: [
          {
            guard: 'hasNextToUndo',
            target: 'rollingBack',
            reenter: true,
            actions: [{ type: 'recordFailure', params: ({ event }) => ({ error: event.error, command: 'DEL' as const }) }, 'next'],
          },
          { target: 'addFailed', actions: { type: 'recordFailure', params: ({ event }) => ({ error: event.error, command: 'DEL' as const }) } },
        ],
      },
    },
    runningAll: {
      description: "DEL, CHECK or GC on every delegate in order, past failures; the first gets the runtime's prevResult, each next the previous output.",
      invoke: {
        id: 'runDelegate',
        src: 'execDelegate',
        input: ({ context }) => execInput(context, context.input.env.command as ExecDelegateInput['command']),
        onDone: [
          {
            guard: 'hasNext',
            target: 'runningAll',
            reenter: true,
            actions: [{ type: 'recordResult', params: ({ event }) => ({ output: event.output }) }, 'next'],
          },
          { target: 'ranAll', actions: { type: 'recordResult', params: ({ event }) => ({ output: event.output }) } },
        ],
        onError: [
          {
            guard: 'hasNext',
            target: 'runningAll',
            reenter: true,
            actions: [{ type: 'recordFailure', params: ({ context, event }) => ({ error: event.error, command: context.input.env.command }) }, 'next'],
          },
          { target: 'ranAll', actions: { type: 'recordFailure', params: ({ context, event }) => ({ error: event.error, command: context.input.env.command }) } },
        ],
      },
    },
    ranAll: {
      description: 'Every delegate has run: any failure fails the command.',
      always: [{ guard: 'anyFailed', target: 'delegatesFailed' }, { target: 'succeeded' }],
    },
    checkingStatus: {
      description: 'STATUS on each delegate in order: the chain is ready only when every delegate is.',
      invoke: {
        id: 'statusDelegate',
        src: 'execDelegate',
        input: ({ context }) => execInput(context, 'STATUS'),
        onDone: [{ guard: 'hasNext', target: 'checkingStatus', reenter: true, actions: 'next' }, { target: 'succeeded' }],
        onError: { target: 'notReady', actions: { type: 'recordError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    succeeded: { type: 'final', description: "Print the last delegate's output (nothing for GC and STATUS)." },
    invalidInput: { type: 'final', description: 'Stdin is not a valid config (codes 1, 6, 7). No delegate was run.' },
    addFailed: {
      type: 'final',
      description: "A delegate's ADD failed; the rollback ran. Its error, code kept, with the rollback's failures in details.",
      entry: 'composeAddError',
    },
    delegatesFailed: {
      type: 'final',
      description: 'DEL, CHECK or GC failed in one or more delegates: the first error, code kept, every failure in details.',
      entry: 'composeCollectedError',
    },
    notReady: { type: 'final', description: "STATUS: a delegate is not ready; its error, code kept (50, 51...)." },
  },
  output: ({ context }): DelegatedOutput => {
    const cniVersion = context.config?.cniVersion ?? sniffVersion(context.input.stdin);
    if (context.error) return { type: 'error', error: context.error, ...(cniVersion ? { cniVersion } : {}) };
    const command = context.input.env.command;
    // GC and STATUS print nothing on success (spec 1.1.0), whatever a delegate printed.
    if (command === 'GC' || command === 'STATUS') return { type: 'ok' };
    return { type: 'ok', result: present(context.lastResult, 'last result') };
  },
});

function delegateAt(context: DelegatedContext, index: number): string {
  return present(present(context.config, 'config').delegates[index], `delegate #${index + 1}`);
}

/** The same config to every delegate, with prevResult replaced by the chain's (CNI spec, section 4). */
function execInput(context: DelegatedContext, command: ExecDelegateInput['command']): ExecDelegateInput {
  const config = present(context.config, 'config');
  return {
    name: delegateAt(context, context.index),
    command,
    config: context.prevResult === undefined ? config.raw : { ...config.raw, prevResult: context.prevResult },
    cniPath: context.input.env.path,
    env: context.input.processEnv,
    timeoutMs: config.delegateTimeoutMs,
    log: context.input.log,
  };
}

function describe({ delegate, command, error }: DelegateFailure): string {
  return `${delegate} ${command}: [${error.code}] ${error.message}${error.details ? ` (${error.details})` : ''}`;
}

/** The failing delegate's error, as it reported it, with what the rollback could not undo. */
function addError(failure: DelegateFailure, rollback: readonly DelegateFailure[]): CniError {
  const cleanup = rollback.length === 0 ? 'rolled back with DEL' : `rollback DEL failed: ${rollback.map(describe).join('; ')}`;
  const details = [failure.error.details, cleanup].filter(Boolean).join('; ');
  return new CniError(failure.error.code, failure.error.message, details);
}

/** DEL, CHECK, GC: the first failure's code and message; every failure in the details. */
function collectedError(command: Command, failures: readonly DelegateFailure[]): CniError {
  const [first] = failures;
  if (first === undefined) return new CniError(ErrorCode.Unexpected, `${command} failed without a delegate failure`);
  if (failures.length === 1) return first.error;
  return new CniError(
    first.error.code,
    `${command} failed in ${failures.length} delegates (${failures.map((f) => f.delegate).join(', ')}): ${first.error.message}`,
    failures.map(describe).join('; '),
  );
}
