import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPromise } from 'xstate';
import { addCommandMachine } from '../../src/machines/add-command.machine';
import { CniError, ErrorCode } from '../../src/cni/errors';
import type { ChooseIpInput, Choice } from '../../src/services/choose-ip';
import { normalizeRange } from '../../src/services/ip-math';
import type { LoadedPool } from '../../src/services/load-pool';
import type { Taken } from '../../src/services/release-taken';
import { commandInput, configText, finalStates, inTurn, rejects, resolves, runMachine, unusedKv } from '../support/machines';

const range = normalizeRange({ subnet: '10.0.20.0/23', gateway: '10.0.20.1' });
const pool: LoadedPool = { name: 'pool1', ranges: [range], identity: 7 };
const free = (ip: string): Choice => ({ kind: 'free', candidate: { ip, range } });
const reached = new Set<string>();

/** Runs ADD with every actor succeeding on the happy path, except those a test overrides. */
async function run(actors: Record<string, unknown>, stdin = configText()) {
  const machine = addCommandMachine.provide({
    actors: {
      takeNext: resolves({ kind: 'declined', why: 'no copy of the pool on this host' }),
      pickServer: resolves(unusedKv),
      loadPools: resolves([{ pool }]),
      recallHost: resolves({ lastReserved: '10.0.20.9' }),
      chooseIp: resolves(free('10.0.20.10')),
      claimIp: resolves({ won: true }),
      ...actors,
    } as never,
    delays: { backoff: 0 },
  });
  const result = await runMachine(machine, commandInput(stdin));
  reached.add(result.final);
  return result;
}

function assertError(output: unknown, code: number, cniVersion = '1.0.0'): CniError {
  const out = output as { type: string; error: CniError; cniVersion: string };
  assert.equal(out.type, 'error');
  assert.equal(out.error.code, code, out.error.message);
  assert.equal(out.cniVersion, cniVersion);
  return out.error;
}

test('a free address is chosen, claimed and returned with its prefix and gateway', async () => {
  const { output, visited } = await run({});
  assert.deepEqual(visited, ['parsing', 'takingNext', 'pickingServer', 'loadingPools', 'recallingHost', 'choosingIp', 'claimingIp', 'succeeded']);
  assert.deepEqual(output, {
    type: 'ok',
    result: { cniVersion: '1.0.0', ips: [{ address: '10.0.20.10/23', gateway: '10.0.20.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.0.20.1' }], dns: {} },
  });
});

test('the search starts after the host hint', async () => {
  let seen: ChooseIpInput | undefined;
  await run({
    chooseIp: fromPromise<Choice, ChooseIpInput>(async ({ input }) => {
      seen = input;
      return free('10.0.20.10');
    }),
  });
  assert.equal(seen?.after, '10.0.20.9');
  assert.equal(seen?.lost, 0);
});

test('an address the container already holds is returned without choosing another', async () => {
  const { output, visited } = await run({ recallHost: resolves({ held: { ip: '10.0.20.77', range } }) });
  assert.deepEqual(visited.slice(-2), ['recallingHost', 'succeeded']);
  assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.20.77/23');
});

test('a lost cas write backs off, then chooses again avoiding the lost address', async () => {
  const inputs: ChooseIpInput[] = [];
  const choices = [free('10.0.20.10'), free('10.0.20.11')];
  const { output, visited } = await run({
    chooseIp: fromPromise<Choice, ChooseIpInput>(async ({ input }) => {
      inputs.push(input);
      return choices[inputs.length - 1]!;
    }),
    claimIp: inTurn({ won: false }, { won: true }),
  });
  assert.deepEqual(visited.slice(5), ['choosingIp', 'claimingIp', 'backingOff', 'choosingIp', 'claimingIp', 'succeeded']);
  assert.deepEqual(inputs[1]?.avoid, ['10.0.20.10']);
  assert.equal(inputs[1]?.lost, 1);
  assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.20.11/23');
});

test('when every retry loses, ADD ends in raceLost with code 105', async () => {
  // configText sets ipam.cas_retries to 2: three writes in all.
  const { output, visited } = await run({ claimIp: resolves({ won: false }) });
  assert.equal(visited.filter((s) => s === 'claimingIp').length, 3);
  assert.equal(visited[visited.length - 1], 'raceLost');
  assertError(output, ErrorCode.AllocationRace);
});

describe('the one-request claim of a warm host (takeNext)', () => {
  test('an address taken in one request is the result: no server is picked, no pool read, no search', async () => {
    const { output, visited } = await run({
      takeNext: resolves({ kind: 'took', pool: 'pool1', assigned: { ip: '10.0.20.10', range } }),
      pickServer: rejects(new Error('the full way must not run')),
    });
    assert.deepEqual(visited, ['parsing', 'takingNext', 'succeeded']);
    assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.20.10/23');
  });

  test('declined because another writer holds the address: the full way avoids it, without counting a lost write', async () => {
    let seen: ChooseIpInput | undefined;
    const { output, visited } = await run({
      takeNext: resolves({ kind: 'declined', why: 'another writer holds 10.0.20.10', lost: '10.0.20.10' }),
      chooseIp: fromPromise<Choice, ChooseIpInput>(async ({ input }) => {
        seen = input;
        return free('10.0.20.11');
      }),
    });
    assert.deepEqual(visited, ['parsing', 'takingNext', 'pickingServer', 'loadingPools', 'recallingHost', 'choosingIp', 'claimingIp', 'succeeded']);
    assert.deepEqual(seen?.avoid, ['10.0.20.10']);
    assert.equal(seen?.lost, 0);
    assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.20.11/23');
  });

  test('a failure of the one-request claim goes the full way, which decides', async () => {
    const { output, visited } = await run({ takeNext: rejects(new Error('unforeseen')) });
    assert.deepEqual(visited.slice(0, 3), ['parsing', 'takingNext', 'pickingServer']);
    assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.20.10/23');
  });

  test('a static IP is never claimed that way', async () => {
    const { visited } = await run({ takeNext: rejects(new Error('must not run')), loadPools: resolves([{ pool, requestedIp: '10.0.21.200' }]) }, configText({ requestedIp: '10.0.21.200' }));
    assert.ok(!visited.includes('takingNext'), visited.join(' '));
  });
});

test('a requested IP is checked, then claimed without a search', async () => {
  let mode: string | undefined;
  const { output, visited } = await run(
    {
      claimIp: fromPromise<{ won: boolean }, { mode: string }>(async ({ input }) => {
        mode = input.mode;
        return { won: true };
      }),
      loadPools: resolves([{ pool, requestedIp: '10.0.21.200' }]),
    },
    configText({ requestedIp: '10.0.21.200' }),
  );
  assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPools', 'checkingRequestedIp', 'claimingRequestedIp', 'succeeded']);
  assert.equal(mode, 'requested');
  assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.21.200/23');
});

test('a requested IP outside the pool ends in requestRefused (103), nothing claimed', async () => {
  let claimed = false;
  const { output, visited } = await run(
    { claimIp: fromPromise(async () => ((claimed = true), { won: true })), loadPools: resolves([{ pool, requestedIp: '10.9.9.9' }]) },
    configText({ requestedIp: '10.9.9.9' }),
  );
  assert.equal(visited[visited.length - 1], 'requestRefused');
  assert.equal(claimed, false);
  assertError(output, ErrorCode.RequestedIpNotInPool);
});

test('a full pool ends in poolFull (104)', async () => {
  const { output } = await run({ chooseIp: resolves({ kind: 'full' }) });
  assert.match(assertError(output, ErrorCode.PoolFull).message, /pool pool1 is full/);
});

test('invalid stdin ends in invalidInput before any server is picked', async () => {
  let picked = false;
  const { output, visited } = await run({ pickServer: fromPromise(async () => ((picked = true), unusedKv)) }, '{"cniVersion":"1.0.0","ipam":{}}');
  assert.deepEqual(visited, ['parsing', 'invalidInput']);
  assert.equal(picked, false);
  assert.match(assertError(output, ErrorCode.InvalidConfig).message, /ipam\.consul_servers/);
});

test('an unsupported cniVersion is code 1, reported in that version', async () => {
  const { output } = await run({}, configText({ cniVersion: '0.3.1' }));
  assertError(output, ErrorCode.IncompatibleVersion, '0.3.1');
});

test('no reachable server ends in consulUnreachable', async () => {
  const { output } = await run({ pickServer: rejects(new CniError(ErrorCode.TryAgainLater, 'no Consul server could be reached')) });
  assertError(output, ErrorCode.TryAgainLater);
});

test('a missing pool ends in poolUnusable', async () => {
  const { output } = await run({ loadPools: rejects(new CniError(ErrorCode.PoolNotFound, 'pool pool1 does not exist')) });
  assertError(output, ErrorCode.PoolNotFound);
});

for (const failing of ['recallHost', 'chooseIp', 'claimIp'] as const) {
  test(`a KV failure in ${failing} ends in consulFailed, keeping its code`, async () => {
    const { output, visited } = await run({ [failing]: rejects(new CniError(ErrorCode.KvFailure, 'Consul refused a write')) });
    assert.equal(visited[visited.length - 1], 'consulFailed');
    assertError(output, ErrorCode.KvFailure);
  });
}

test('a failed static write ends in consulFailed', async () => {
  const { output } = await run({ claimIp: rejects(new Error('socket hang up')), loadPools: resolves([{ pool, requestedIp: '10.0.21.200' }]) }, configText({ requestedIp: '10.0.21.200' }));
  assertError(output, ErrorCode.Unexpected);
});

describe('with ipam.all_pools', () => {
  const range6 = normalizeRange({ subnet: 'fd00:20::/64', gateway: 'fd00:20::1' });
  const pool6: LoadedPool = { name: 'pool6', ranges: [range6], identity: 8 };
  const dualStack = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'net',
    ipam: { type: 'ipam-delegated', consul_servers: ['http://consul.invalid:8500'], cas_retries: 2, all_pools: true },
    prevResult: { pools: [{ name: 'pool1' }, { name: 'pool6' }] },
  });
  /** chooseIp answering per pool: a free address of pool1, then of pool6 unless a test says otherwise. */
  const perPool = (answers: Record<string, Choice>) => fromPromise<Choice, ChooseIpInput>(async ({ input }) => answers[input.pool.name]!);
  const bothFree = { pool1: free('10.0.20.10'), pool6: { kind: 'free', candidate: { ip: 'fd00:20::10', range: range6 } } as Choice };
  /** An actor that answers `first` once, then fails with `error`. */
  const thenThrows = <T>(first: T, error: Error) => {
    let calls = 0;
    return fromPromise<T, unknown>(async () => {
      if (calls++ === 0) return first;
      throw error;
    });
  };
  const rollback = () => {
    const calls: Array<readonly Taken[]> = [];
    return { calls, actor: fromPromise<object, { taken: readonly Taken[] }>(async ({ input }) => (calls.push(input.taken), { released: [], leftAlone: [] })) };
  };

  test('one address from each pool, each with its default route', async () => {
    const { output, visited } = await run({ loadPools: resolves([{ pool }, { pool: pool6 }]), chooseIp: perPool(bothFree) }, dualStack);
    assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPools', 'recallingHost', 'choosingIp', 'claimingIp', 'recallingHost', 'choosingIp', 'claimingIp', 'succeeded']);
    assert.deepEqual(output, {
      type: 'ok',
      result: {
        cniVersion: '1.0.0',
        ips: [
          { address: '10.0.20.10/23', gateway: '10.0.20.1' },
          { address: 'fd00:20::10/64', gateway: 'fd00:20::1' },
        ],
        routes: [
          { dst: '0.0.0.0/0', gw: '10.0.20.1' },
          { dst: '::/0', gw: 'fd00:20::1' },
        ],
        dns: {},
      },
    });
  });

  test('each pool starts its search afresh: its own hint, no losses carried over', async () => {
    const inputs: ChooseIpInput[] = [];
    await run(
      {
        loadPools: resolves([{ pool }, { pool: pool6 }]),
        chooseIp: fromPromise<Choice, ChooseIpInput>(async ({ input }) => (inputs.push(input), bothFree[input.pool.name as 'pool1' | 'pool6'])),
        claimIp: inTurn({ won: false }, { won: true }, { won: true }),
        recallHost: fromPromise<object, { pool: LoadedPool }>(async ({ input }) => ({ lastReserved: input.pool.name === 'pool1' ? '10.0.20.9' : 'fd00:20::9' })),
      },
      dualStack,
    );
    assert.deepEqual(inputs.map((i) => [i.pool.name, i.after, i.lost, i.avoid.length]), [['pool1', '10.0.20.9', 0, 0], ['pool1', '10.0.20.9', 1, 1], ['pool6', 'fd00:20::9', 0, 0]]);
  });

  test('a full second pool releases what the first gave, then ends in poolFull (104)', async () => {
    const { calls, actor } = rollback();
    const { output, visited } = await run(
      { loadPools: resolves([{ pool }, { pool: pool6 }]), chooseIp: perPool({ ...bothFree, pool6: { kind: 'full' } }), releaseTaken: actor },
      dualStack,
    );
    assert.deepEqual(visited.slice(-3), ['choosingIp', 'rollingBack', 'poolFull']);
    assert.deepEqual(calls, [[{ pool: 'pool1', ip: '10.0.20.10' }]]);
    assert.match(assertError(output, ErrorCode.PoolFull).message, /pool pool6 is full/);
  });

  for (const [failure, actors] of [
    ['consulFailed', () => ({ claimIp: thenThrows({ won: true }, new CniError(ErrorCode.KvFailure, 'Consul refused a write')) })],
    ['raceLost', () => ({ claimIp: inTurn({ won: true }, { won: false }) })],
    ['requestRefused', () => ({ loadPools: resolves([{ pool }, { pool: pool6, requestedIp: 'fd00:99::5' }]), checkRequestedIp: rejects(new CniError(ErrorCode.RequestedIpNotInPool, 'requested IP fd00:99::5 does not fit pool pool6')) })],
  ] as const) {
    test(`${failure} in the second pool comes after the rollback of the first, and a failed rollback does not hide it`, async () => {
      const { calls, actor } = rollback();
      const { output, visited } = await run({ loadPools: resolves([{ pool }, { pool: pool6 }]), chooseIp: perPool(bothFree), releaseTaken: actor, ...actors() }, dualStack);
      assert.deepEqual(visited.slice(-2), ['rollingBack', failure]);
      assert.equal(calls.length, 1);
      const failed = await run({ loadPools: resolves([{ pool }, { pool: pool6 }]), chooseIp: perPool(bothFree), releaseTaken: rejects(new Error('Consul is gone')), ...actors() }, dualStack);
      assert.deepEqual(failed.visited.slice(-2), ['rollingBack', failure]);
      assert.equal((failed.output as { error: CniError }).error.code, (output as { error: CniError }).error.code);
    });
  }

  test('an address the first pool already held is not released when the second fails: this ADD did not take it', async () => {
    const { calls, actor } = rollback();
    const { visited } = await run(
      {
        loadPools: resolves([{ pool }, { pool: pool6 }]),
        recallHost: inTurn({ held: { ip: '10.0.20.77', range } }, {}),
        chooseIp: resolves({ kind: 'full' }),
        releaseTaken: actor,
      },
      dualStack,
    );
    assert.deepEqual(visited.slice(-2), ['choosingIp', 'poolFull']);
    assert.equal(calls.length, 0);
  });

  test('a static IP no pool holds is refused (103) before anything is written', async () => {
    const { output, visited } = await run({ loadPools: rejects(new CniError(ErrorCode.RequestedIpNotInPool, 'requested IP 10.9.9.9 fits none of the pools pool1, pool6')) }, dualStack);
    assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPools', 'requestRefused']);
    assertError(output, ErrorCode.RequestedIpNotInPool);
  });
});

test('every final state of ADD is reached by a test above', () => {
  assert.deepEqual([...reached].sort(), finalStates(addCommandMachine).sort());
});
