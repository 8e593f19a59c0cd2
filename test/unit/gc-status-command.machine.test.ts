import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPromise } from 'xstate';
import { gcCommandMachine } from '../../src/machines/gc-command.machine';
import { statusCommandMachine } from '../../src/machines/status-command.machine';
import { CniError, ErrorCode } from '../../src/cni/errors';
import type { StaleAllocation, StaleSearch } from '../../src/services/find-stale';
import { commandInput, finalStates, rejects, resolves, runMachine, unusedKv } from '../support/machines';

const stdin = (ipam: object = {}, more: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: '1.1.0',
    name: 'net',
    ipam: { consul_servers: ['http://consul.invalid:8500'], host_id: 'host-a', ...ipam },
    'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }],
    prevResult: { cniVersion: '1.1.0', ips: [], routes: [], dns: {}, pools: [{ name: 'p' }] },
    ...more,
  });
const stale: StaleAllocation = { pool: 'p', ip: '10.0.0.9', key: 'ipam/p/10.0.0.9', modifyIndex: 5, containerId: 'gone', ifname: 'eth0' };
const down = new CniError(ErrorCode.TryAgainLater, 'cannot reach Consul', 'http://consul.invalid:8500: ECONNREFUSED');

describe('GC', () => {
  const reached = new Set<string>();
  async function run(actors: Record<string, unknown>, input = stdin()) {
    const machine = gcCommandMachine.provide({
      actors: {
        pickServer: resolves(unusedKv),
        findStale: resolves({ stale: [stale], problems: [] } satisfies StaleSearch),
        releaseStale: resolves({ released: [stale.key], problems: [] }),
        ...actors,
      } as never,
    });
    const result = await runMachine(machine, commandInput(input, { command: 'GC', containerId: '', ifname: '' }));
    reached.add(result.final);
    return result;
  }

  test('finds and releases stale allocations; no output', async () => {
    let released: readonly StaleAllocation[] = [];
    const { output, visited } = await run({
      releaseStale: fromPromise<object, { stale: readonly StaleAllocation[] }>(async ({ input }) => ((released = input.stale), { released: [], problems: [] })),
    });
    assert.deepEqual(visited, ['parsing', 'pickingServer', 'findingStale', 'releasing', 'succeeded']);
    assert.deepEqual(released, [stale]);
    assert.deepEqual(output, { type: 'ok' });
  });

  test('ipam.gc false touches nothing', async () => {
    const { output, visited } = await run({ pickServer: rejects(down) }, stdin({ gc: false }));
    assert.deepEqual(visited, ['parsing', 'disabled']);
    assert.deepEqual(output, { type: 'ok' });
  });

  test('no pool named: nothing released, no server asked, a warning, success', async () => {
    const warnings: string[] = [];
    const machine = gcCommandMachine.provide({ actors: { pickServer: rejects(down), findStale: rejects(down), releaseStale: rejects(down) } as never });
    const input = { ...commandInput(stdin({}, { prevResult: undefined }), { command: 'GC', containerId: '', ifname: '' }) };
    const log = { ...input.log, warn: (message: string) => void warnings.push(message) };
    const result = await runMachine(machine, { ...input, log });
    reached.add(result.final);
    assert.deepEqual(result.visited, ['parsing', 'noPoolNamed']);
    assert.deepEqual(result.output, { type: 'ok' });
    assert.match(warnings.join('\n'), /GC of network net: no pool named in prevResult\.pools.*nothing released/);
  });

  test('no list of live attachments under either key: invalid input (7), nothing asked of Consul', async () => {
    const { output, visited } = await run({ pickServer: rejects(down) }, stdin({}, { 'cni.dev/valid-attachments': undefined }));
    assert.deepEqual(visited, ['parsing', 'invalidInput']);
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.InvalidConfig);
  });

  test('keeps going past a pool it cannot read, then reports it', async () => {
    let releaseRan = false;
    const { output, visited } = await run({
      findStale: resolves({ stale: [stale], problems: [new CniError(ErrorCode.PermissionDenied, 'pool q: Consul denied a read', 'http://consul.invalid:8500 answered 403')] }),
      releaseStale: fromPromise(async () => ((releaseRan = true), { released: [stale.key], problems: [] })),
    });
    assert.ok(releaseRan);
    assert.equal(visited[visited.length - 1], 'incomplete');
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.PermissionDenied);
    assert.match(output.type === 'error' ? output.error.details : '', /pool q: Consul denied a read \(.*403\)/);
  });

  test('bad input, no server, failed search end in their own states', async () => {
    assert.equal((await run({}, '{"cniVersion":"1.1.0"}')).final, 'invalidInput');
    assert.equal((await run({ pickServer: rejects(down) })).final, 'consulUnreachable');
    assert.equal((await run({ findStale: rejects(down) })).final, 'incomplete');
    assert.equal((await run({ releaseStale: rejects(down) })).final, 'incomplete');
  });

  test('every final state of GC is reached', () => assert.deepEqual([...reached].sort(), finalStates(gcCommandMachine).sort()));
});

describe('STATUS', () => {
  const reached = new Set<string>();
  async function run(actors: Record<string, unknown>, input = stdin()) {
    const machine = statusCommandMachine.provide({ actors: { pickServer: resolves(unusedKv), checkAccess: resolves(undefined), ...actors } as never });
    const result = await runMachine(machine, commandInput(input, { command: 'STATUS', containerId: '', ifname: '' }));
    reached.add(result.final);
    return result;
  }

  test('ready when a server answers', async () => assert.deepEqual((await run({})).output, { type: 'ok' }));

  test('code 50 naming each server when none answers', async () => {
    const { output } = await run({ pickServer: rejects(down) });
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.PluginNotAvailable);
    assert.match(output.type === 'error' ? output.error.details : '', /ECONNREFUSED/);
  });

  test('invalid input', async () => assert.equal((await run({}, 'nope')).final, 'invalidInput'));

  test('a token that may not read ipam/ is not ready: code 50 saying so', async () => {
    const { output } = await run({ checkAccess: rejects(new CniError(ErrorCode.PermissionDenied, 'Consul denied a read', 'http://consul.invalid:8500 answered 403')) });
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.PluginNotAvailable);
    assert.match(output.type === 'error' ? output.error.message : '', /denies ipam\.consul_token/);
  });

  test('every final state of STATUS is reached', () => assert.deepEqual([...reached].sort(), finalStates(statusCommandMachine).sort()));
});
