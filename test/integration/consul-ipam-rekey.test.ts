// consul-ipam rekey, and the pool reads that agree with the plugin, against a real Consul: keys in the old IPv6
// spelling (releases before RFC 5952 keys wrote fd00:1:2:3:4:5::1 for fd00:1:2:3:4:5:0:1) are moved to their
// canonical keys, each in one transaction; KV is read back after each run. Pools the plugin serves leniently
// are shown as it serves them, with its warning.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { assertFailure, assertOk, execute, json, startProxy, type Run } from '../support/cli';
import { kvState } from '../support/reliability';
import { allocationKeys, freshPoolName, putPool, runPlugin, netConfig, describeRun } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/consul-ipam');
const agent = useConsul();
const T = { timeout: 30_000 };
const consulIpam = (...args: string[]): Promise<Run> => execute(cli, ['--consul', agent.url, ...args]);

before(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` before the integration tests`);
});

const old = (n: number): string => `fd00:1:2:3:4:5::${n}`;
const canonical = (n: number): string => `fd00:1:2:3:4:5:0:${n}`;
const allocation = (target: string) => ({ target, ifname: 'eth0', host: 'h1' });

/** A pool with: :1 old only, :2 old and canonical of the same container, :3 old and canonical of two containers, and keys rekey leaves alone. */
async function oldPool(): Promise<string> {
  const pool = freshPoolName('rekey');
  await putPool(agent.kv, pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/120' }]);
  await agent.kv.put(`ipam/${pool}/${old(1)}`, allocation('c1'));
  await agent.kv.put(`ipam/${pool}/${old(2)}`, allocation('c2'));
  await agent.kv.put(`ipam/${pool}/${canonical(2)}`, { ...allocation('c2'), network: 'net' });
  await agent.kv.put(`ipam/${pool}/${old(3)}`, allocation('c3-old'));
  await agent.kv.put(`ipam/${pool}/${canonical(3)}`, allocation('c3-new'));
  await agent.kv.put(`ipam/${pool}/${canonical(4)}`, allocation('c4'));
  await agent.kv.put(`ipam/${pool}/hello`, 'not an allocation');
  return pool;
}

test('rekey without --yes changes nothing and says what it would do', T, async () => {
  const pool = await oldPool();
  const before = await kvState(agent.url);
  const run = await consulIpam('rekey', pool);
  assertOk(run);
  assert.deepEqual(await kvState(agent.url), before, 'a dry run writes nothing');
  assert.match(run.stdout, new RegExp(`would rekey ipam/${pool}/${old(1)}: moved to ipam/${pool}/${canonical(1)} \\(c1 eth0 on h1\\)`));
  assert.match(run.stdout, new RegExp(`would merge ipam/${pool}/${old(2)}: `));
  assert.match(run.stdout, new RegExp(`CONFLICT, left alone ipam/${pool}/${old(3)}: ipam/${pool}/${canonical(3)} holds c3-new .* holds c3-old`));
  assert.match(run.stdout, /would move 2 of 3; nothing was changed: run again with --yes/);
  assert.match(run.stderr, /warning: 1 address is held under two spellings by different containers/);
});

test('rekey --yes moves each key in one transaction, merges a copy, leaves a conflict; a second run changes nothing more', T, async () => {
  const pool = await oldPool();
  const value1 = (await agent.kv.get(`ipam/${pool}/${old(1)}`))!.value;
  const canonical2 = await agent.kv.get(`ipam/${pool}/${canonical(2)}`);
  const run = await consulIpam('--json', 'rekey', pool, '--yes');
  assertOk(run);
  const outcomes = Object.fromEntries(json(run).results.map((r: { key: string; outcome: string }) => [r.key, r.outcome]));
  assert.deepEqual(outcomes, { [`ipam/${pool}/${old(1)}`]: 'rekeyed', [`ipam/${pool}/${old(2)}`]: 'merged', [`ipam/${pool}/${old(3)}`]: 'conflict' });
  assert.deepEqual(
    await allocationKeys(agent.kv, pool),
    [canonical(1), canonical(2), old(3), canonical(3), canonical(4), 'hello'].map((k) => `ipam/${pool}/${k}`).sort(),
  );
  assert.equal((await agent.kv.get(`ipam/${pool}/${canonical(1)}`))!.value, value1, 'the same value, byte for byte');
  assert.deepEqual(await agent.kv.get(`ipam/${pool}/${canonical(2)}`), canonical2, 'the canonical key of a merge is untouched');
  const before = await kvState(agent.url);
  const again = await consulIpam('--json', 'rekey', pool, '--yes');
  assertOk(again);
  assert.deepEqual(json(again).results.map((r: { outcome: string }) => r.outcome), ['conflict']);
  assert.deepEqual(await kvState(agent.url), before);
  // The plugin's DEL now finds c1's allocation under its canonical key.
  const del = await runPlugin({ command: 'DEL', containerId: 'c1', config: netConfig({ servers: [agent.url], pool, ips: [{ address: `${canonical(1)}/120` }] }) });
  assert.equal(del.code, 0, describeRun(del));
  assert.equal(await agent.kv.get(`ipam/${pool}/${canonical(1)}`), undefined);
});

test('rekey leaves alone a key released or rewritten after it was listed: the old allocation is never brought back', T, async () => {
  const pool = freshPoolName('rekey-race');
  await putPool(agent.kv, pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/120' }]);
  await agent.kv.put(`ipam/${pool}/${old(1)}`, allocation('c1'));
  await agent.kv.put(`ipam/${pool}/${old(2)}`, allocation('c2'));
  // Between the listing and the moves: c1's DEL releases its key, and c2's key is rewritten.
  const proxy = await startProxy(agent.url, async (method, url) => {
    if (method === 'PUT' && url.startsWith('/v1/txn') && (await agent.kv.get(`ipam/${pool}/${old(1)}`)) !== undefined) {
      await agent.kv.delete(`ipam/${pool}/${old(1)}`);
      await agent.kv.put(`ipam/${pool}/${old(2)}`, allocation('c2-again'));
    }
  });
  try {
    const run = await execute(cli, ['--consul', proxy.url, '--json', 'rekey', pool, '--yes']);
    assertOk(run);
    assert.deepEqual(json(run).results.map((r: { outcome: string }) => r.outcome), ['changed', 'changed']);
  } finally {
    await proxy.close();
  }
  assert.deepEqual(await allocationKeys(agent.kv, pool), [`ipam/${pool}/${old(2)}`]);
});

test('release NAME IP finds an allocation held under the old spelling of the address', T, async () => {
  const pool = freshPoolName('release-old');
  await putPool(agent.kv, pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/120' }]);
  await agent.kv.put(`ipam/${pool}/${old(7)}`, allocation('c7'));
  const show = await consulIpam('pool', 'show', pool);
  assertOk(show);
  assert.match(show.stdout, new RegExp(`keys listed apart .*\\n.*\\n\\s+ipam/${pool}/${old(7)}\\s+named after ${canonical(7)} in another spelling`));
  assertFailure(await consulIpam('release', pool, canonical(7), '--target', 'someone-else'), 1, /allocated to c7, not to someone-else/);
  const run = await consulIpam('release', pool, canonical(7), '--target', 'c7');
  assertOk(run);
  assert.match(run.stdout, new RegExp(`released ${canonical(7)} from pool ${pool}: it was allocated to c7`));
  assert.deepEqual(await allocationKeys(agent.kv, pool), []);
});

test('rekey of a pool that does not exist fails with 1 and names it', T, async () => {
  assertFailure(await consulIpam('rekey', freshPoolName('missing')), 1, /does not exist/);
});

test('pool list, show and check read a pool the plugin serves leniently as it serves it, with its warning; pool set still refuses it', T, async () => {
  const pool = freshPoolName('lenient');
  // Host bits set: the plugin masks them and serves 10.88.0.0/29 (6 addresses), with a warning.
  await putPool(agent.kv, pool, [{ subnet: '10.88.0.3/29' }]);
  await agent.kv.put(`ipam/${pool}/10.88.0.2`, allocation('c1'));
  await agent.kv.put(`ipam/${pool}/${old(1)}`, allocation('c2')); // outside the ranges, but an address taken

  const list = await consulIpam('--json', 'pool', 'list');
  assertOk(list);
  const row = json(list).find((p: { name: string }) => p.name === pool);
  assert.deepEqual([row.size, row.allocated, row.free, row.error], ['6', 2, '5', undefined]);
  assert.match(row.oddities.join(' '), /host bits set: did you mean 10\.88\.0\.0\/29\?/);
  assert.match(list.stderr, new RegExp(`warning: pool key ipam/${pool} is served as the original serves it, though consul-ipam pool set would refuse it: .*host bits`));

  const show = await consulIpam('--json', 'pool', 'show', pool);
  assertOk(show);
  assert.deepEqual(json(show).ranges.map((r: { subnet: string }) => r.subnet), ['10.88.0.0/29']);
  assert.deepEqual([json(show).size, json(show).allocated, json(show).free], ['6', 2, '5']);
  assert.deepEqual(json(show).allocations.map((a: { ip: string }) => a.ip), ['10.88.0.2']);
  assert.match(JSON.stringify(json(show).invalid), new RegExp(`${old(1)}.*another spelling`));
  assert.match(show.stderr, /warning: pool key .* host bits/);

  const check = await consulIpam('--json', 'check', pool);
  assertOk(check);
  const checked = json(check).pools[0];
  assert.equal(checked.error, undefined, 'the pool is read, not refused');
  assert.deepEqual([checked.size, checked.allocated, checked.free], ['6', 2, '5']);
  assert.deepEqual(
    checked.problems.map((p: { key: string; problems: Array<{ kind: string }> }) => [p.key, p.problems.map((q) => q.kind)]),
    [[`ipam/${pool}/${old(1)}`, ['non-canonical-key']]],
  );
  assert.match(check.stderr, /warning: pool key .* host bits/);

  assertFailure(await consulIpam('pool', 'set', pool, '--range', '10.88.0.3/29'), 2, /did you mean 10\.88\.0\.0\/29\?/);
});
