import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPromise } from 'xstate';
import { checkCommandMachine } from '../../src/machines/check-command.machine';
import { delCommandMachine } from '../../src/machines/del-command.machine';
import { CniError, ErrorCode } from '../../src/cni/errors';
import type { Found } from '../../src/services/find-allocations';
import { normalizeRange } from '../../src/services/ip-math';
import type { LoadedPool } from '../../src/services/load-pool';
import { commandInput, configText, finalStates, rejects, resolves, runMachine, unusedKv } from '../support/machines';

const range = normalizeRange({ subnet: '10.0.20.0/23', gateway: '10.0.20.1' });
const pool: LoadedPool = { name: 'pool1', ranges: [range], identity: 7 };
const found: Found[] = [{ pool: 'pool1', ip: '10.0.20.10', key: 'ipam/pool1/10.0.20.10', modifyIndex: 42 }];
const kvDown = new CniError(ErrorCode.TryAgainLater, 'cannot reach Consul');

describe('DEL', () => {
  const reached = new Set<string>();
  async function run(actors: Record<string, unknown>, stdin = configText({ ips: ['10.0.20.10/23'] })) {
    const machine = delCommandMachine.provide({
      actors: {
        releaseNoted: resolves({ kind: 'declined', why: 'no note on this host' }),
        pickServer: resolves(unusedKv),
        findAllocations: resolves(found),
        releaseAllocations: resolves({ released: ['10.0.20.10'], leftAlone: [] }),
        ...actors,
      } as never,
    });
    const result = await runMachine(machine, commandInput(stdin, { command: 'DEL' }));
    reached.add(result.final);
    return result;
  }

  test('releases what it found and prints an empty result', async () => {
    let released: readonly Found[] = [];
    const { output, visited } = await run({
      releaseAllocations: fromPromise<object, { found: readonly Found[] }>(async ({ input }) => ((released = input.found), {})),
    });
    assert.deepEqual(visited, ['parsing', 'releasingNoted', 'pickingServer', 'findingAllocations', 'releasing', 'succeeded']);
    assert.deepEqual(released, found);
    assert.deepEqual(output, { type: 'ok', result: { cniVersion: '1.0.0', ips: [], routes: [], dns: {} } });
  });

  test('the noted address released in one request is the whole DEL: no server picked, nothing searched', async () => {
    const { output, visited } = await run({ releaseNoted: resolves({ kind: 'released', ip: '10.0.20.10' }), pickServer: rejects(new Error('the full way must not run')) });
    assert.deepEqual(visited, ['parsing', 'releasingNoted', 'succeeded']);
    assert.deepEqual(output, { type: 'ok', result: { cniVersion: '1.0.0', ips: [], routes: [], dns: {} } });
  });

  test('a failure of the one-request release goes the full way, which decides', async () => {
    const { visited } = await run({ releaseNoted: rejects(new Error('unforeseen')) });
    assert.deepEqual(visited, ['parsing', 'releasingNoted', 'pickingServer', 'findingAllocations', 'releasing', 'succeeded']);
  });

  test('nothing to release is success without a release step', async () => {
    const { output, visited } = await run({ findAllocations: resolves([]) });
    assert.deepEqual(visited.slice(-2), ['findingAllocations', 'succeeded']);
    assert.equal(output.type, 'ok');
  });

  test('bad stdin ends in invalidInput', async () => {
    const { output, visited } = await run({}, 'not json');
    assert.deepEqual(visited, ['parsing', 'invalidInput']);
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.DecodingFailure);
  });

  test('no server: consulUnreachable, code 11, so the runtime retries', async () => {
    const { output } = await run({ pickServer: rejects(kvDown) });
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.TryAgainLater);
  });

  for (const failing of ['findAllocations', 'releaseAllocations']) {
    test(`a failure in ${failing} ends in consulFailed`, async () => {
      const { output, visited } = await run({ [failing]: rejects(kvDown) });
      assert.equal(visited[visited.length - 1], 'consulFailed');
      assert.equal(output.type === 'error' && output.error.code, ErrorCode.TryAgainLater);
    });
  }

  test('searches and releases in every pool prevResult.pools lists, whatever IPAM_POOL says (Nomad sends none on DEL)', async () => {
    const twoPools = JSON.stringify({ ...JSON.parse(configText({ ips: ['10.0.20.10/23'] })), prevResult: { ips: [{ address: '10.0.20.10/23' }], pools: [{ name: 'pool1' }, { name: 'blue' }] } });
    const seen: Array<readonly string[]> = [];
    const record = <T>(value: T) => fromPromise<T, { pools: readonly string[] }>(async ({ input }) => (seen.push(input.pools), value));
    await run({ findAllocations: record(found), releaseAllocations: record({ released: [], leftAlone: [] }) }, twoPools);
    assert.deepEqual(seen, [['pool1', 'blue'], ['pool1', 'blue']]);
  });

  test('every final state of DEL is reached', () => {
    assert.deepEqual([...reached].sort(), finalStates(delCommandMachine).sort());
  });
});

describe('CHECK', () => {
  const reached = new Set<string>();
  async function run(actors: Record<string, unknown>, stdin = configText({ ips: ['10.0.20.10/23'], cniVersion: '0.4.0' })) {
    const machine = checkCommandMachine.provide({
      actors: { pickServer: resolves(unusedKv), loadPools: resolves([{ pool }]), verifyAllocations: resolves([{ ip: '10.0.20.10', range }]), ...actors } as never,
    });
    const result = await runMachine(machine, commandInput(stdin, { command: 'CHECK' }));
    reached.add(result.final);
    return result;
  }

  test('prints the verified addresses in the config version (0.4.0 carries "version")', async () => {
    const { output, visited } = await run({});
    assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPools', 'verifying', 'succeeded']);
    assert.deepEqual(output.type === 'ok' && output.result?.ips, [{ version: '4', address: '10.0.20.10/23', gateway: '10.0.20.1' }]);
  });

  test('an address held by another container ends in mismatch (108)', async () => {
    const { output } = await run({ verifyAllocations: rejects(new CniError(ErrorCode.AllocationMismatch, 'not yours')) });
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.AllocationMismatch);
    assert.equal(output.type === 'error' && output.cniVersion, '0.4.0');
  });

  for (const ips of [[], ['192.168.7.5/24']]) {
    test(`prevResult.ips holding no address of the pool (${JSON.stringify(ips)}) ends in nothingToVerify (108), without verifying`, async () => {
      let verified = false;
      const { output, visited } = await run(
        { verifyAllocations: fromPromise(async () => ((verified = true), [])) },
        configText({ ips, cniVersion: '1.0.0' }),
      );
      assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPools', 'nothingToVerify']);
      assert.equal(verified, false);
      assert.equal(output.type === 'error' && output.error.code, ErrorCode.AllocationMismatch);
      assert.match(output.type === 'error' ? output.error.message : '', /no address of pool pool1: there is nothing of this pool to verify/);
      assert.match(output.type === 'error' ? output.error.details : '', ips.length === 0 ? /prevResult\.ips is empty/ : /192\.168\.7\.5\/24/);
    });
  }

  test('bad stdin, no server, missing pool end in their own states', async () => {
    assert.equal((await run({}, '{}')).final, 'invalidInput');
    assert.equal((await run({ pickServer: rejects(kvDown) })).final, 'consulUnreachable');
    assert.equal((await run({ loadPools: rejects(new CniError(ErrorCode.PoolNotFound, 'no pool')) })).final, 'poolUnusable');
  });

  test('every listed pool is read, and each address is verified against them all', async () => {
    const twoPools = JSON.stringify({
      ...JSON.parse(configText({ ips: ['10.0.20.10/23', 'fd00:20::10/64'] })),
      ipam: { type: 'ipam-delegated', consul_servers: ['http://consul.invalid:8500'], all_pools: true },
      prevResult: { ips: [{ address: '10.0.20.10/23' }, { address: 'fd00:20::10/64' }], pools: [{ name: 'pool1' }, { name: 'pool6' }] },
    });
    const range6 = normalizeRange({ subnet: 'fd00:20::/64', gateway: 'fd00:20::1' });
    const pool6: LoadedPool = { name: 'pool6', ranges: [range6], identity: 8 };
    let loaded: readonly string[] = [];
    let verified: readonly LoadedPool[] = [];
    const { output } = await run(
      {
        loadPools: fromPromise<object, { pools: ReadonlyArray<{ name: string }> }>(async ({ input }) => ((loaded = input.pools.map((p) => p.name)), [{ pool }, { pool: pool6 }])),
        verifyAllocations: fromPromise<object, { pools: readonly LoadedPool[] }>(async ({ input }) => ((verified = input.pools), [{ ip: '10.0.20.10', range }, { ip: 'fd00:20::10', range: range6 }])),
      },
      twoPools,
    );
    assert.deepEqual(loaded, ['pool1', 'pool6']);
    assert.deepEqual(verified, [pool, pool6]);
    assert.deepEqual(output.type === 'ok' && output.result?.routes, [{ dst: '0.0.0.0/0', gw: '10.0.20.1' }, { dst: '::/0', gw: 'fd00:20::1' }]);
  });

  test('every final state of CHECK is reached', () => {
    assert.deepEqual([...reached].sort(), finalStates(checkCommandMachine).sort());
  });
});
