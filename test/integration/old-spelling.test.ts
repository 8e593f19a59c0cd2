// Keys in the second spelling that releases of this plugin before RFC 5952 keys wrote (ip6addr's zeroElide:
// fd00:1:2:3:4:5::1 for fd00:1:2:3:4:5:0:1). An operator who upgrades has live allocations under them: ADD must
// never hand such an address to a second container, and DEL, CHECK and GC must find the container's own.
// Everything against a real Consul through the built executables, KV read back afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { oldSpelling as spelledOld } from '../../src/cni/codecs';
import { homePosition } from '../../src/services/contention';
import { addressAt, normalizeRange, poolSpan, positionOf } from '../../src/services/ip-math';
import { useConsul } from '../support/consul';
import { startProxy } from '../support/cli';
import { addressOf, allocationKeys, assertCniError, assertSuccess, describeRun, putPool, runPlugin, scenario, tempDir, type Scenario } from '../support/plugin';

const agent = useConsul();
const T = { timeout: 60_000 };

/** fd00:1:2:3:4:5:0:<n> as the old releases keyed it: the single zero group shortened to `::`. */
const oldSpelling = (n: number): string => `fd00:1:2:3:4:5::${n.toString(16)}`;
const canonical = (n: number): string => `fd00:1:2:3:4:5:0:${n.toString(16)}`;

/** Live allocations, as an old release wrote them, of fd00:1:2:3:4:5:0:<n> for each n. */
async function oldAllocations(s: Scenario, numbers: readonly number[]): Promise<void> {
  for (const n of numbers) await agent.kv.put(`ipam/${s.pool}/${oldSpelling(n)}`, { target: `old-${n}`, ifname: 'eth0', host: 'old-host' });
}

const add = (s: Scenario, containerId: string) => runPlugin({ command: 'ADD', containerId, config: s.config() });

test('ADD from a host with an empty data_dir never hands out an address held under its old spelling', T, async () => {
  const s = scenario([agent.url], 'old-spelling');
  // fd00:1:2:3:4:5:0:1 .. :7 (the network address :0 is never handed out): seven addresses, six held the old way.
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  await oldAllocations(s, [1, 2, 3, 5, 6, 7]);
  const run = await add(s, 'new-1');
  assert.deepEqual(assertSuccess(run).ips, [{ address: `${canonical(4)}/125` }], describeRun(run));
  // The pool is full now: a second ADD must not take one of the old keys' addresses.
  const full = await add(s, 'new-2');
  assertCniError(full, 104);
  const keys = await allocationKeys(agent.kv, s.pool);
  assert.deepEqual(keys.sort(), [...[1, 2, 3, 5, 6, 7].map((n) => `ipam/${s.pool}/${oldSpelling(n)}`), `ipam/${s.pool}/${canonical(4)}`].sort());
});

test('ADD past a window of old keys lists the pool: each is an address taken, with one warning naming them, not 102', T, async () => {
  const s = scenario([agent.url], 'old-spelling-list');
  // 63 addresses, too few for homes: the search starts at :1, its first window (32) is all old keys, so it lists.
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/122' }]);
  const held = Array.from({ length: 32 }, (_, i) => i + 1);
  await oldAllocations(s, held);
  // And one made by hand in yet another spelling, past the window: only the listing sees it.
  await agent.kv.put(`ipam/${s.pool}/FD00:1:2:3:4:5:0:21`, { target: 'by-hand' });
  const run = await add(s, 'new-1');
  assert.deepEqual(assertSuccess(run).ips, [{ address: `${canonical(0x22)}/122` }], describeRun(run));
  const warnings = run.stderr.split('\n').filter((line) => line.includes(`ipam/${s.pool}/${oldSpelling(1)}`));
  assert.equal(warnings.length, 1, `one warning names the old keys\n${describeRun(run)}`);
  assert.match(warnings[0]!, /WARN .*33 keys .*taken all the same; consul-ipam rekey/);
});

test('ADD: a live allocation written under the old spelling after the search read it loses the claim for ADD (one transaction guards both keys)', T, async () => {
  const s = scenario([agent.url], 'old-spelling-race');
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  let txns = 0;
  let given = '';
  // A writer of the old release takes :1 between ADD's window read (its first transaction) and its claim (its second).
  const proxy = await startProxy(agent.url, async (method, url) => {
    if (method === 'PUT' && url.startsWith('/v1/txn') && ++txns === 2) await agent.kv.put(`ipam/${s.pool}/${oldSpelling(1)}`, { target: 'old-writer' });
  });
  try {
    const run = await runPlugin({ command: 'ADD', containerId: 'new-1', config: s.config({ servers: [proxy.url] }) });
    given = addressOf(assertSuccess(run).ips[0].address);
  } finally {
    await proxy.close();
  }
  // Lost, so it chose again (among the free addresses, spread at random after a loss): any but :1.
  assert.notEqual(given, canonical(1));
  assert.ok(txns >= 3, `the claim was a transaction, and a second claim followed (${txns} transactions)`);
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${given}`, `ipam/${s.pool}/${oldSpelling(1)}`].sort());
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${oldSpelling(1)}`))?.target, 'old-writer');
});

test('ADD of a static IP held under its old spelling re-allocates it in one transaction: the old key goes, one key per address', T, async () => {
  const s = scenario([agent.url], 'old-spelling-static');
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  await oldAllocations(s, [3]);
  const run = await runPlugin({ command: 'ADD', containerId: 'static-1', config: s.config({ requestedIp: oldSpelling(3) }) });
  assert.deepEqual(assertSuccess(run).ips, [{ address: `${canonical(3)}/125` }], describeRun(run));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${canonical(3)}`]);
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${canonical(3)}`))?.target, 'static-1');
});

test("DEL and CHECK find the container's allocation under its old spelling, from a host that never saw it; another container's stays", T, async () => {
  const s = scenario([agent.url], 'old-spelling-del');
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  await oldAllocations(s, [1, 2, 3]);
  const ips = (n: number) => [{ address: `${canonical(n)}/125` }];
  // CHECK: the runtime's cached result names the canonical address; the key is the old one.
  const checked = await runPlugin({ command: 'CHECK', containerId: 'old-1', config: s.config({ ips: ips(1) }) });
  assert.equal(checked.code, 0, describeRun(checked));
  assertCniError(await runPlugin({ command: 'CHECK', containerId: 'old-1', config: s.config({ ips: ips(2) }) }), 108);
  // DEL with the address named, and DEL without (the pool is searched).
  const named = await runPlugin({ command: 'DEL', containerId: 'old-1', config: s.config({ ips: ips(1) }) });
  assert.equal(named.code, 0, describeRun(named));
  const searched = await runPlugin({ command: 'DEL', containerId: 'old-2', config: s.config() });
  assert.equal(searched.code, 0, describeRun(searched));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${oldSpelling(3)}`]);
});

test('GC collects a stale allocation of this host under its old spelling, and keeps a live one', T, async () => {
  const s = scenario([agent.url], 'old-spelling-gc');
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  const host = { host_id: `gc-host-${process.pid}` };
  // This host's ADDs (each leaves the host's note), then the keys as an old release spelled them.
  for (const id of ['stale-1', 'live-1']) assertSuccess(await runPlugin({ command: 'ADD', containerId: id, config: s.config({ ipam: host }) }));
  for (const n of [1, 2]) {
    const entry = await agent.kv.get(`ipam/${s.pool}/${canonical(n)}`);
    assert.ok(entry, `ADD wrote ${canonical(n)}`);
    await agent.kv.put(`ipam/${s.pool}/${oldSpelling(n)}`, entry.value);
    await agent.kv.delete(`ipam/${s.pool}/${canonical(n)}`);
  }
  const live = (await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${oldSpelling(1)}`))?.target === 'live-1' ? 1 : 2;
  const gc = await runPlugin({
    command: 'GC',
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined, CNI_ARGS: undefined },
    config: {
      cniVersion: '1.1.0',
      name: 'test-net',
      ipam: { type: 'ipam-delegated', consul_servers: [agent.url], data_dir: s.dataDir, ...host },
      'cni.dev/valid-attachments': [{ containerID: 'live-1', ifname: 'eth0' }],
      prevResult: { cniVersion: '1.1.0', ips: [], routes: [], dns: {}, pools: [{ name: s.pool }] },
    },
  });
  assert.equal(gc.code, 0, describeRun(gc));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${oldSpelling(live)}`]);
});

test('an address without a second spelling is read and claimed as before: one transaction of reads, one cas=0 PUT', T, async () => {
  const s = scenario([agent.url], 'old-spelling-none');
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:9::/120' }]);
  const requests: string[] = [];
  const proxy = await startProxy(agent.url, async (method, url) => {
    requests.push(`${method} ${decodeURIComponent(url.split('?')[0]!)}`);
  });
  try {
    // fd00:9::1 (fd00:9:0:0:0:0:0:1) has a run of zero groups: one spelling.
    const run = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config({ servers: [proxy.url], dataDir: tempDir() }) });
    assert.deepEqual(assertSuccess(run).ips, [{ address: 'fd00:9::1/120' }], describeRun(run));
  } finally {
    await proxy.close();
  }
  assert.deepEqual(requests.slice(-2), ['PUT /v1/txn', `PUT /v1/kv/ipam/${s.pool}/fd00:9::1`]);
});

test('ADD probing past a window of old keys reads both spellings of 64 candidates: two transactions side by side (Consul 1.8 refuses one of more than 64 operations)', T, async () => {
  const s = scenario([agent.url], 'old-spelling-probe');
  const subnet = 'fd00:1:2:3:4:5:0:0/112'; // every address has a second spelling: fd00:1:2:3:4:5:0:x
  await putPool(agent.kv, s.pool, [{ subnet }]);
  const ranges = [normalizeRange({ subnet })];
  const hostId = `probe-host-${process.pid}`;
  const home = homePosition(hostId, poolSpan(ranges));
  // The host's first window (32 from its home), all held under the old spelling.
  const window = Array.from({ length: 32 }, (_, i) => addressAt(ranges, home + BigInt(i))!);
  for (const [i, ip] of window.entries()) await agent.kv.put(`ipam/${s.pool}/${spelledOld(ip)!}`, { target: `old-${i}` });
  let txns = 0;
  const proxy = await startProxy(agent.url, async (method, url) => {
    if (method === 'PUT' && url.startsWith('/v1/txn')) txns++;
  });
  let given = '';
  try {
    const run = await runPlugin({ command: 'ADD', containerId: 'new-1', config: s.config({ servers: [proxy.url], ipam: { host_id: hostId } }) });
    given = addressOf(assertSuccess(run).ips[0].address);
  } finally {
    await proxy.close();
  }
  assert.ok(!window.includes(given), `${given} is not one of the window's held addresses`);
  // The first probe lies 32 past the home: its first free address.
  assert.equal(given, addressAt(ranges, positionOf(ranges, window[0]!)! + 32n));
  // Window: one read, one re-read of the taken; probes: 64 candidates and their 64 old keys in two; the claim.
  assert.equal(txns, 5, `${txns} transactions`);
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [...window.map((ip) => `ipam/${s.pool}/${spelledOld(ip)!}`), `ipam/${s.pool}/${given}`].sort());
});
