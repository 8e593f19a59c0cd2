import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPromise } from 'xstate';
import { addCommandMachine } from '../../src/machines/add-command.machine';
import { CniError, ErrorCode } from '../../src/cni/errors';
import type { ChooseIpInput, Choice } from '../../src/services/choose-ip';
import { normalizeRange } from '../../src/services/ip-math';
import type { LoadedPool } from '../../src/services/load-pool';
import { commandInput, configText, finalStates, inTurn, rejects, resolves, runMachine, unusedKv } from '../support/machines';

const range = normalizeRange({ subnet: '10.0.20.0/23', gateway: '10.0.20.1' });
const pool: LoadedPool = { name: 'pool1', ranges: [range], identity: 7 };
const free = (ip: string): Choice => ({ kind: 'free', candidate: { ip, range } });
const reached = new Set<string>();

/** Runs ADD with every actor succeeding on the happy path, except those a test overrides. */
async function run(actors: Record<string, unknown>, stdin = configText()) {
  const machine = addCommandMachine.provide({
    actors: {
      pickServer: resolves(unusedKv),
      loadPool: resolves(pool),
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
  assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPool', 'recallingHost', 'choosingIp', 'claimingIp', 'succeeded']);
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
  assert.deepEqual(visited.slice(4), ['choosingIp', 'claimingIp', 'backingOff', 'choosingIp', 'claimingIp', 'succeeded']);
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

test('a requested IP is checked, then claimed without a search', async () => {
  let mode: string | undefined;
  const { output, visited } = await run(
    {
      claimIp: fromPromise<{ won: boolean }, { mode: string }>(async ({ input }) => {
        mode = input.mode;
        return { won: true };
      }),
    },
    configText({ requestedIp: '10.0.21.200' }),
  );
  assert.deepEqual(visited, ['parsing', 'pickingServer', 'loadingPool', 'checkingRequestedIp', 'claimingRequestedIp', 'succeeded']);
  assert.equal(mode, 'requested');
  assert.equal(output.type === 'ok' && output.result?.ips[0]?.address, '10.0.21.200/23');
});

test('a requested IP outside the pool ends in requestRefused (103), nothing claimed', async () => {
  let claimed = false;
  const { output, visited } = await run(
    { claimIp: fromPromise(async () => ((claimed = true), { won: true })) },
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
  const { output } = await run({ loadPool: rejects(new CniError(ErrorCode.PoolNotFound, 'pool pool1 does not exist')) });
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
  const { output } = await run({ claimIp: rejects(new Error('socket hang up')) }, configText({ requestedIp: '10.0.21.200' }));
  assertError(output, ErrorCode.Unexpected);
});

test('every final state of ADD is reached by a test above', () => {
  assert.deepEqual([...reached].sort(), finalStates(addCommandMachine).sort());
});
