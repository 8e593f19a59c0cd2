// Drives ipam-delegated's machine with a scripted stand-in for the delegates: which delegate ran, with
// which command and which prevResult, in which order, and what the machine made of their answers.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPromise } from 'xstate';
import { delegatedCommandMachine, type DelegatedInput, type DelegatedOutput } from '../../src/machines/delegated-command.machine';
import type { Command } from '../../src/cni/environment';
import { CniError, ErrorCode } from '../../src/cni/errors';
import { DelegateNotFoundError, type DelegateResult, type ExecDelegateInput } from '../../src/services/exec-delegate';
import { silentLog } from '../../src/services/logger';
import { finalStates, runMachine } from '../support/machines';

/** One delegate run as the machine asked for it. */
interface Call {
  readonly name: string;
  readonly command: string;
  /** The prevResult the delegate was given (undefined: none). */
  readonly prevResult: unknown;
}

/** What a scripted delegate does: answer with a result, or fail with an error. */
type Answer = DelegateResult | undefined | Error;
type Script = (name: string, command: string, call: number) => Answer;

const reached = new Set<string>();

async function run(command: Command, script: Script, stdin = config()) {
  const calls: Call[] = [];
  const machine = delegatedCommandMachine.provide({
    actors: {
      execDelegate: fromPromise<DelegateResult | undefined, ExecDelegateInput>(async ({ input }) => {
        calls.push({ name: input.name, command: input.command, prevResult: (input.config as { prevResult?: unknown }).prevResult });
        const answer = script(input.name, input.command, calls.length);
        if (answer instanceof Error) throw answer;
        return answer;
      }),
    },
  });
  const input: DelegatedInput = {
    env: { command, containerId: 'c1', ifname: 'eth0', netns: '/var/run/netns/x', args: new Map(), path: ['/opt/cni/bin'] },
    stdin,
    log: silentLog,
    processEnv: {},
  };
  const { output, visited, final } = await runMachine<DelegatedOutput>(machine, input);
  reached.add(final);
  return { output, visited, final, calls, order: calls.map((c) => `${c.command} ${c.name}`) };
}

function config(options: { delegates?: unknown; cniVersion?: string; prevResult?: object } = {}): string {
  return JSON.stringify({
    cniVersion: options.cniVersion ?? '1.0.0',
    name: 'net',
    type: 'bridge',
    ipam: { type: 'ipam-delegated', delegates: options.delegates ?? ['sel', 'alloc'], pools: [{ name: 'p' }] },
    ...(options.prevResult ? { prevResult: options.prevResult } : {}),
  });
}

const selected = { cniVersion: '1.0.0', ips: [], routes: [], dns: {}, pools: [{ name: 'p' }] };
const allocated = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }], routes: [], dns: {} };
const released = { cniVersion: '1.0.0', ips: [], routes: [], dns: {} };

function errorOf(output: DelegatedOutput): CniError {
  assert.equal(output.type, 'error', JSON.stringify(output));
  return (output as { error: CniError }).error;
}

test('ADD: each delegate in order, the next one given the previous output (extra keys kept); the last output is returned', async () => {
  const { output, order, calls, visited } = await run('ADD', (name) => (name === 'sel' ? selected : allocated));
  assert.deepEqual(order, ['ADD sel', 'ADD alloc']);
  assert.equal(calls[0]?.prevResult, undefined, 'the first delegate gets the incoming config as it is');
  assert.deepEqual(calls[1]?.prevResult, selected, 'pools reach the allocator');
  assert.deepEqual(output, { type: 'ok', result: allocated });
  assert.deepEqual(visited, ['parsing', 'adding', 'succeeded']);
});

test('ADD: the incoming prevResult (a chained conflist) reaches the first delegate untouched', async () => {
  const incoming = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [] };
  const { calls } = await run('ADD', (name) => (name === 'sel' ? selected : allocated), config({ prevResult: incoming }));
  assert.deepEqual(calls[0]?.prevResult, incoming);
  assert.deepEqual(calls[1]?.prevResult, selected);
});

test('ADD failing at the second of three: DEL on it at once, then DEL on 1..2 in order, from the prevResult it got; its error is returned', async () => {
  const failure = new CniError(ErrorCode.PoolFull, 'delegate alloc ADD failed: pool p is full', 'every address is allocated');
  const selectorDel = { ...selected, note: 'del' };
  const { output, order, calls, visited } = await run(
    'ADD',
    (name, command) => {
      if (command === 'ADD') return name === 'sel' ? selected : failure;
      return name === 'sel' ? selectorDel : released;
    },
    config({ delegates: ['sel', 'alloc', 'never'] }),
  );
  assert.deepEqual(order, ['ADD sel', 'ADD alloc', 'DEL alloc', 'DEL sel', 'DEL alloc']);
  assert.deepEqual(calls[2]?.prevResult, selected, 'the immediate DEL gets the config the failed ADD got');
  assert.deepEqual(calls[3]?.prevResult, selected, 'the rollback starts from the prevResult the failed delegate got');
  assert.deepEqual(calls[4]?.prevResult, selectorDel, "each rollback DEL gets the previous DEL's output");
  const error = errorOf(output);
  assert.equal(error.code, ErrorCode.PoolFull, 'the failing delegate keeps its code');
  assert.equal(error.message, 'delegate alloc ADD failed: pool p is full');
  assert.match(error.details, /every address is allocated; rolled back with DEL/);
  assert.deepEqual(visited, ['parsing', 'adding', 'undoingFailed', 'rollingBack', 'addFailed']);
});

test('ADD failing at the first delegate: DEL on it at once, then once more as the rollback of 1..1', async () => {
  const { output, order, calls } = await run('ADD', (_name, command) => (command === 'ADD' ? new CniError(ErrorCode.InvalidConfig, 'bad pools') : released));
  assert.deepEqual(order, ['ADD sel', 'DEL sel', 'DEL sel']);
  assert.equal(calls[1]?.prevResult, undefined);
  assert.equal(calls[2]?.prevResult, undefined);
  assert.equal(errorOf(output).code, ErrorCode.InvalidConfig);
});

test('ADD: a delegate missing from CNI_PATH never ran, so only the rollback of 1..k follows; its failures go into details', async () => {
  const missing = new DelegateNotFoundError(ErrorCode.IoFailure, 'delegate alloc not found in CNI_PATH', 'no executable file alloc in /opt/cni/bin');
  const { output, order, visited } = await run('ADD', (name, command) => {
    if (name === 'alloc') return missing;
    return command === 'ADD' ? selected : released;
  });
  assert.deepEqual(order, ['ADD sel', 'ADD alloc', 'DEL sel', 'DEL alloc']);
  assert.deepEqual(visited, ['parsing', 'adding', 'rollingBack', 'addFailed']);
  const error = errorOf(output);
  assert.equal(error.code, ErrorCode.IoFailure);
  assert.match(error.message, /alloc not found in CNI_PATH/);
  assert.match(error.details, /rollback DEL failed: alloc DEL: \[5\] delegate alloc not found/);
});

test('ADD: rollback DELs that fail do not stop the rollback, and do not replace the ADD error', async () => {
  const { output, order } = await run('ADD', (name, command) => {
    if (command === 'ADD') return name === 'sel' ? selected : new CniError(ErrorCode.TryAgainLater, 'consul down');
    return name === 'sel' ? new CniError(ErrorCode.Unexpected, 'sel broke') : released;
  });
  assert.deepEqual(order, ['ADD sel', 'ADD alloc', 'DEL alloc', 'DEL sel', 'DEL alloc']);
  const error = errorOf(output);
  assert.equal(error.code, ErrorCode.TryAgainLater);
  assert.match(error.details, /rollback DEL failed: sel DEL: \[109\] sel broke/);
});

for (const command of ['DEL', 'CHECK'] as const) {
  test(`${command}: every delegate in order, the first with the runtime's prevResult, the next with the previous output`, async () => {
    const cached = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }], routes: [], dns: {} };
    const selectorOut = { ...selected, ips: cached.ips };
    const { output, order, calls, visited } = await run(command, (name) => (name === 'sel' ? selectorOut : allocated), config({ prevResult: cached }));
    assert.deepEqual(order, [`${command} sel`, `${command} alloc`]);
    assert.deepEqual(calls[0]?.prevResult, cached);
    assert.deepEqual(calls[1]?.prevResult, selectorOut);
    assert.deepEqual(output, { type: 'ok', result: allocated });
    // ranAll is transient (an `always` choice), so no snapshot shows it.
    assert.deepEqual(visited, ['parsing', 'runningAll', 'succeeded']);
  });
}

test('DEL: a failing delegate does not stop the others; the first error is returned with every failure in details', async () => {
  const { output, order, calls, visited } = await run(
    'DEL',
    (name) => (name === 'alloc' ? released : new CniError(ErrorCode.InvalidConfig, `${name} is broken`)),
    config({ delegates: ['sel', 'alloc', 'other'], prevResult: allocated }),
  );
  assert.deepEqual(order, ['DEL sel', 'DEL alloc', 'DEL other']);
  assert.deepEqual(calls[1]?.prevResult, allocated, 'after a failure the next delegate gets the last good prevResult');
  assert.deepEqual(calls[2]?.prevResult, released);
  const error = errorOf(output);
  assert.equal(error.code, ErrorCode.InvalidConfig);
  assert.match(error.message, /DEL failed in 2 delegates \(sel, other\): sel is broken/);
  assert.match(error.details, /sel DEL: \[7\] sel is broken; other DEL: \[7\] other is broken/);
  assert.deepEqual(visited, ['parsing', 'runningAll', 'delegatesFailed']);
});

test('CHECK: one failing delegate: its error as it is', async () => {
  const mismatch = new CniError(ErrorCode.AllocationMismatch, 'delegate alloc CHECK failed: 10.0.0.2 is not this container\'s');
  const { output, order } = await run('CHECK', (name) => (name === 'sel' ? selected : mismatch));
  assert.deepEqual(order, ['CHECK sel', 'CHECK alloc']);
  assert.equal(errorOf(output), mismatch);
});

test('GC: every delegate, nothing printed on success', async () => {
  const { output, order, calls } = await run('GC', () => undefined);
  assert.deepEqual(order, ['GC sel', 'GC alloc']);
  assert.equal(calls[1]?.prevResult, undefined, 'GC has no result to chain');
  assert.deepEqual(output, { type: 'ok' });
});

test('GC: failures collected, every delegate still run', async () => {
  const { output, order } = await run('GC', (name) => (name === 'sel' ? new CniError(ErrorCode.TryAgainLater, 'later') : undefined));
  assert.deepEqual(order, ['GC sel', 'GC alloc']);
  assert.equal(errorOf(output).code, ErrorCode.TryAgainLater);
});

test('STATUS: ready when every delegate is, nothing printed', async () => {
  const { output, order, visited } = await run('STATUS', () => undefined);
  assert.deepEqual(order, ['STATUS sel', 'STATUS alloc']);
  assert.deepEqual(output, { type: 'ok' });
  assert.deepEqual(visited, ['parsing', 'checkingStatus', 'succeeded']);
});

test('STATUS: the first delegate not ready ends it, with its code', async () => {
  const { output, order, visited } = await run('STATUS', (name) => (name === 'sel' ? new CniError(ErrorCode.PluginNotAvailable, 'no consul leader') : undefined));
  assert.deepEqual(order, ['STATUS sel']);
  assert.equal(errorOf(output).code, ErrorCode.PluginNotAvailable);
  assert.deepEqual(visited, ['parsing', 'checkingStatus', 'notReady']);
});

const invalid: Array<[string, string, number, RegExp]> = [
  ['stdin is not JSON', '{not json', ErrorCode.DecodingFailure, /not valid JSON/],
  ['ipam.delegates is missing', JSON.stringify({ cniVersion: '1.0.0', ipam: {} }), ErrorCode.InvalidConfig, /ipam\.delegates/],
  ['ipam.delegates is empty', config({ delegates: [] }), ErrorCode.InvalidConfig, /non-empty array of plugin names at ipam\.delegates/],
  ['a delegate name is a hidden file', config({ delegates: ['sel', '.sh'] }), ErrorCode.InvalidConfig, /plugin file name .* at ipam\.delegates\[1\], got "\.sh"/],
  ['a delegate path holds a newline', config({ delegates: ['sel', '/opt/cni/bin/x\n'] }), ErrorCode.InvalidConfig, /ipam\.delegates\[1\]/],
  ['ipam-delegated lists itself by path', config({ delegates: ['/opt/cni/bin/ipam-delegated'] }), ErrorCode.InvalidConfig, /lists ipam-delegated itself/],
  ['a delegate name is not a string', config({ delegates: [42] }), ErrorCode.InvalidConfig, /ipam\.delegates\[0\], got 42/],
  ['ipam-delegated lists itself', config({ delegates: ['ipam-delegated'] }), ErrorCode.InvalidConfig, /lists ipam-delegated itself/],
  ['the cniVersion is unsupported', config({ cniVersion: '0.3.1' }), ErrorCode.IncompatibleVersion, /incompatible CNI version/],
];
for (const [label, stdin, code, message] of invalid) {
  test(`invalid input, no delegate run: ${label}`, async () => {
    const { output, calls, visited } = await run('ADD', () => assert.fail('no delegate may run'), stdin);
    const error = errorOf(output);
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    assert.equal(calls.length, 0);
    assert.deepEqual(visited, ['parsing', 'invalidInput']);
  });
}

test('an error is printed in the config\'s own cniVersion', async () => {
  const { output } = await run('DEL', () => new CniError(ErrorCode.TryAgainLater, 'x'), config({ cniVersion: '0.4.0' }));
  assert.equal(output.type === 'error' && output.cniVersion, '0.4.0');
});

after(() => {
  // A final state added to the machine without a test that reaches it fails here.
  assert.deepEqual([...reached].sort(), finalStates(delegatedCommandMachine).sort());
});
