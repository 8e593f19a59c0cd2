/** Drives a command machine with mocked actors and records what it did, for the unit tests. */
import { createActor, fromPromise, toPromise, type AnyStateMachine } from 'xstate';
import type { CniEnvironment } from '../../src/cni/environment';
import type { CommandInput, CommandOutput } from '../../src/machines/command';
import type { ConsulKv } from '../../src/services/consul-client';
import { silentLog } from '../../src/services/logger';

/** A run's output and every state it passed through, in order. */
export interface MachineRun<Output = CommandOutput> {
  readonly output: Output;
  readonly visited: string[];
  /** The final state it stopped in. */
  readonly final: string;
}

export async function runMachine<Output = CommandOutput>(machine: AnyStateMachine, input: CommandInput | object): Promise<MachineRun<Output>> {
  const actor = createActor(machine, { input });
  const visited: string[] = [];
  actor.subscribe((snapshot) => {
    const state = String(snapshot.value);
    if (visited[visited.length - 1] !== state) visited.push(state);
  });
  actor.start();
  const output = (await toPromise(actor)) as Output;
  return { output, visited, final: visited[visited.length - 1]! };
}

/** The names of a machine's final states, read from its definition. */
export function finalStates(machine: AnyStateMachine): string[] {
  return Object.entries(machine.root.states)
    .filter(([, node]) => node.type === 'final')
    .map(([name]) => name);
}

/** An actor that resolves with `value`. */
export const resolves = <T>(value: T) => fromPromise<T, unknown>(async () => value);
/** An actor that rejects with `error`. */
export const rejects = (error: unknown) =>
  fromPromise<never, unknown>(async () => {
    throw error;
  });
/** An actor that returns each value in turn, one per invocation (for retry loops). */
export function inTurn<T>(...values: T[]) {
  let call = 0;
  return fromPromise<T, unknown>(async () => values[Math.min(call++, values.length - 1)]!);
}

/** A stand-in for the Consul client: the mocked actors never call it. */
export const unusedKv = { server: 'http://consul.invalid:8500', requests: 0 } as ConsulKv;

export function commandInput(stdin: string, overrides: Partial<CniEnvironment> = {}): CommandInput {
  return {
    env: { command: 'ADD', containerId: 'c1', ifname: 'eth0', netns: '', args: new Map(), path: [], ...overrides },
    stdin,
    log: silentLog,
  };
}

/** The network config a chain would pass: one pool, optional requested IP and previous addresses. */
export function configText(options: { requestedIp?: string; ips?: string[]; cniVersion?: string } = {}): string {
  return JSON.stringify({
    cniVersion: options.cniVersion ?? '1.0.0',
    name: 'net',
    ipam: { type: 'ipam-delegated', consul_servers: ['http://consul.invalid:8500'], cas_retries: 2 },
    prevResult: {
      ips: (options.ips ?? []).map((address) => ({ address })),
      pools: [{ name: 'pool1', ...(options.requestedIp ? { 'requested-ip': options.requestedIp } : {}) }],
    },
  });
}
