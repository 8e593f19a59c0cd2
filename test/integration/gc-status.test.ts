// CNI 1.1 GC and STATUS against a real Consul (issue 4, "CNI 1.1: STATUS and GC"; issue 8, items 1, 2, 3 and 11).
// GC releases an allocation only when every condition holds: it lies in a pool the selector named; its `network`
// is the network being collected; its `host` is this host, whose data_dir notes the address; its attachment is in
// neither cni.dev/valid-attachments nor cni.dev/attachments. The cases run through ipam-delegated → ipam-ds-static →
// ipam-da-consul as libcni's GC reaches them, and through ipam-da-consul alone with the config the chain hands it.
// Simulated hosts each have their own data_dir. STATUS exits 0 with a live server, else code 50 naming each server
// (one of them a real Consul server that has no leader).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { startLeaderlessConsul, useConsul } from '../support/consul';
import {
  addressOf,
  allocationKeys,
  assertSuccess,
  closedPortUrl,
  cniBinDir,
  describeRun,
  freshPoolName,
  netConfig,
  putPool,
  runCni,
  runPlugin,
  startHungServer,
  tempDir,
  type CniRun,
  type PluginRun,
} from '../support/plugin';
import { assertCleanError, assertNoKvWrite, kvState, reportFigures } from '../support/reliability';

const T = { timeout: 60_000 };
const agent = useConsul();
let cniPath: string;
const figures = { gcRuns: 0, allocationsChecked: 0, wronglyReleased: 0, wronglyKept: 0, statusRuns: 0 };

before(async () => {
  cniPath = cniBinDir();
});

after(() => reportFigures('gc-status', 'totals', figures));

let hostCounter = 0;

/** A simulated host: its own data_dir, and its ipam.host_id (none: the default, the hostname). */
interface Host {
  id?: string;
  dataDir: string;
}
const hostIdOf = (host: Host) => (host.id === undefined ? {} : { host_id: host.id });
const newHost = (label: string): Host => ({ id: `${label}-${process.pid}-${++hostCounter}`, dataDir: tempDir(`ipam-da-consul-${label}-`) });

type Attachment = { containerID: string; ifname: string };

/** ADD on `host` for container/ifname in `pool`; returns the allocation key. */
async function add(host: Host, pool: string, containerId: string, ifname = 'eth0'): Promise<string> {
  const config = netConfig({ servers: [agent.url], pool, dataDir: host.dataDir, ipam: hostIdOf(host) });
  const result = assertSuccess(await runPlugin({ command: 'ADD', containerId, ifname, config }));
  return `ipam/${pool}/${addressOf(result.ips[0].address)}`;
}

/** The config GC gets: the network config with cni.dev/valid-attachments, and prevResult.pools when a selector named pools. */
function gcConfig(host: Host, options: { valid: Attachment[]; pools?: string[]; ipam?: Record<string, unknown>; servers?: string[] }) {
  const config: Record<string, unknown> = {
    cniVersion: '1.1.0',
    name: 'test-net',
    ipam: { type: 'ipam-delegated', consul_servers: options.servers ?? [agent.url], data_dir: host.dataDir, ...hostIdOf(host), ...options.ipam },
    'cni.dev/valid-attachments': options.valid,
  };
  if (options.pools) config.prevResult = { cniVersion: '1.1.0', ips: [], routes: [], dns: {}, pools: options.pools.map((name) => ({ name })) };
  return config;
}

/** GC and STATUS get only CNI_COMMAND and CNI_PATH. */
const maintenanceEnv = { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined, CNI_ARGS: undefined };

async function gc(host: Host, options: Parameters<typeof gcConfig>[1]): Promise<PluginRun> {
  figures.gcRuns++;
  return runPlugin({ command: 'GC', env: maintenanceEnv, config: gcConfig(host, options) });
}

/** GC succeeded as the spec says: exit 0 and nothing on stdout. */
function assertGcOk(run: PluginRun): void {
  assert.equal(run.code, 0, describeRun(run));
  assert.equal(run.stdout, '', `GC prints nothing on success\n${describeRun(run)}`);
}

// ---------------------------------------------------------------------------
// GC through the chain, as a runtime's libcni reaches it (bridge runs the ipam plugin with the same config)

interface Network {
  name: string;
  pool: string;
}

/** The network config a runtime hands the ipam plugin: ipam-delegated, its selector naming the network's pool. */
function chainConfig(net: Network, host: Host, more: Record<string, unknown> = {}, delegates = ['ipam-ds-static', 'ipam-da-consul']) {
  return {
    cniVersion: '1.1.0',
    name: net.name,
    type: 'bridge',
    ipam: { type: 'ipam-delegated', delegates, pools: [{ name: net.pool }], consul_servers: [agent.url], data_dir: host.dataDir, ...hostIdOf(host) },
    ...more,
  };
}

const delegated = () => path.join(cniPath, 'ipam-delegated');
const showCni = (run: CniRun) => `exit ${run.code} after ${run.ms} ms\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;

/** ADD through the chain on `host`; returns the allocation key. */
async function chainAdd(net: Network, host: Host, containerId: string, ifname = 'eth0'): Promise<string> {
  const env = { CNI_CONTAINERID: containerId, CNI_IFNAME: ifname, CNI_NETNS: '/var/run/netns/none', CNI_PATH: cniPath };
  const run = await runCni(delegated(), { command: 'ADD', config: chainConfig(net, host), env });
  assert.equal(run.code, 0, showCni(run));
  return `ipam/${net.pool}/${addressOf(run.json.ips[0].address)}`;
}

/** GC through the chain; `lists` holds the attachment lists (libcni ≥ 1.2.3 sends both keys: see `both`). GC gets only CNI_COMMAND and CNI_PATH. */
async function chainGc(net: Network, host: Host, lists: Record<string, unknown>, delegates?: string[]): Promise<CniRun> {
  figures.gcRuns++;
  return runCni(delegated(), { command: 'GC', config: chainConfig(net, host, lists, delegates), env: { CNI_PATH: cniPath } });
}
const both = (valid: Attachment[]) => ({ 'cni.dev/valid-attachments': valid, 'cni.dev/attachments': valid });
const live = (...containerIds: string[]): Attachment[] => containerIds.map((containerID) => ({ containerID, ifname: 'eth0' }));

function assertChainGcOk(run: CniRun): void {
  assert.equal(run.code, 0, showCni(run));
  assert.equal(run.stdout, '', `GC prints nothing on success\n${showCni(run)}`);
}

/** Compares the keys left with the keys expected, counting what GC released or kept wrongly. */
async function assertKeysLeft(pool: string, expected: string[], context: string): Promise<void> {
  const left = await allocationKeys(agent.kv, pool);
  figures.allocationsChecked += new Set([...left, ...expected]).size;
  figures.wronglyReleased += expected.filter((k) => !left.includes(k)).length;
  figures.wronglyKept += left.filter((k) => !expected.includes(k)).length;
  assert.deepEqual(left, [...expected].sort(), context);
}

test('GC on host-a releases exactly its allocations missing from the valid list: never host-b\'s, never one without host or network', T, async () => {
  const pool = freshPoolName('gc-shared');
  await putPool(agent.kv, pool, [{ subnet: '10.80.0.0/24', gateway: '10.80.0.1' }]);
  const hostA: Host = { id: 'host-a', dataDir: tempDir('ipam-da-consul-host-a-') };
  const hostB: Host = { id: 'host-b', dataDir: tempDir('ipam-da-consul-host-b-') };

  const a1 = await add(hostA, pool, 'a1');
  const a1eth1 = await add(hostA, pool, 'a1', 'eth1');
  const a2 = await add(hostA, pool, 'a2');
  const a3 = await add(hostA, pool, 'a3');
  const b1 = await add(hostB, pool, 'b1');
  const b2 = await add(hostB, pool, 'b2');
  // Written by hand, as the original plugin (or an operator) writes them: no host, so no host may GC them.
  const byHand = `ipam/${pool}/10.80.0.200`;
  const byHandWithIfname = `ipam/${pool}/10.80.0.201`;
  await agent.kv.put(byHand, { target: 'a2' });
  await agent.kv.put(byHandWithIfname, { target: 'gone', ifname: 'eth0' });
  // Written by a version before `network`: host-b's, but no network, so no GC may take it.
  const b3 = `ipam/${pool}/10.80.0.202`;
  await agent.kv.put(b3, { target: 'a2', ifname: 'eth0', host: 'host-b' });
  // The folder key Consul's UI makes, and another container's broken key: GC must pass over both.
  await agent.kv.put(`ipam/${pool}/`, '');
  const broken = `ipam/${pool}/10.80.0.203`;
  await agent.kv.put(broken, 'not json');

  // host-a still runs a1 on eth0 and a3; a1's eth1 and a2 are gone.
  const valid: Attachment[] = [
    { containerID: 'a1', ifname: 'eth0' },
    { containerID: 'a3', ifname: 'eth0' },
  ];
  assertGcOk(await gc(hostA, { valid, pools: [pool] }));
  await assertKeysLeft(pool, [a1, a3, b1, b2, byHand, byHandWithIfname, b3, broken], 'GC on host-a');
  assert.ok(await agent.kv.get(`ipam/${pool}/`), 'the folder key stays');
  assert.equal(await agent.kv.get(a1eth1), undefined);
  assert.equal(await agent.kv.get(a2), undefined);
  // host-a's note of a2 is gone with it; a1's stays.
  assert.equal(existsSync(path.join(hostA.dataDir, pool, 'containers', 'a2', 'eth0')), false, "GC must forget host-a's note of a2");
  assert.equal(existsSync(path.join(hostA.dataDir, pool, 'containers', 'a1', 'eth0')), true, "GC must keep host-a's note of a1");

  // Again: nothing left to release, and nothing is written.
  const before = await kvState(agent.url);
  assertGcOk(await gc(hostA, { valid, pools: [pool] }));
  assertNoKvWrite(before, await kvState(agent.url), 'second GC on host-a');

  // host-b with an empty valid list releases its own two, and still none of those without host or network.
  assertGcOk(await gc(hostB, { valid: [], pools: [pool] }));
  await assertKeysLeft(pool, [a1, a3, byHand, byHandWithIfname, b3, broken], 'GC on host-b');
  assert.ok(await agent.kv.get(`ipam/${pool}/`), 'the folder key stays');
});

test('GC with ipam.gc false releases nothing and writes nothing', T, async () => {
  const pool = freshPoolName('gc-off');
  await putPool(agent.kv, pool, [{ subnet: '10.81.0.0/24' }]);
  const host = newHost('host-off');
  const keys = [await add(host, pool, 'c1'), await add(host, pool, 'c2')];
  const before = await kvState(agent.url);
  assertGcOk(await gc(host, { valid: [], pools: [pool], ipam: { gc: false } }));
  assertGcOk(await gc(host, { valid: [], ipam: { gc: false } }));
  assertNoKvWrite(before, await kvState(agent.url), 'GC with gc: false');
  await assertKeysLeft(pool, keys, 'GC with gc: false');
  // gc: false must not depend on Consul being there: it touches nothing at all.
  assertGcOk(await gc(host, { valid: [], pools: [pool], ipam: { gc: false }, servers: [await closedPortUrl()] }));
});

test('GC with prevResult.pools naming one pool leaves the other pools alone', T, async () => {
  const named = freshPoolName('gc-named');
  const other = freshPoolName('gc-other');
  await putPool(agent.kv, named, [{ subnet: '10.82.0.0/24' }]);
  await putPool(agent.kv, other, [{ subnet: '10.83.0.0/24' }]);
  const host = newHost('host-pools');
  await add(host, named, 'c1');
  const inOther = await add(host, other, 'c1');
  const keptInOther = await add(host, other, 'c2');

  assertGcOk(await gc(host, { valid: [{ containerID: 'c2', ifname: 'eth0' }], pools: [named] }));
  await assertKeysLeft(named, [], 'the named pool');
  await assertKeysLeft(other, [inOther, keptInOther], 'the pool not named');
});

test('GC naming no pool releases nothing anywhere, says so on stderr and exits 0: it never sweeps ipam/', T, async () => {
  const pool = freshPoolName('gc-unnamed');
  await putPool(agent.kv, pool, [{ subnet: '10.87.0.0/24' }]);
  const host = newHost('host-unnamed');
  const net: Network = { name: 'test-net', pool };
  const keys = [await add(host, pool, 'c1'), await chainAdd(net, host, 'c2')];
  const before = await kvState(agent.url);
  // ipam-da-consul handed no prevResult.pools, and a chain with no selector before it.
  const direct = await gc(host, { valid: [] });
  assertGcOk(direct);
  assert.match(direct.stderr, /GC of network test-net: no pool named in prevResult\.pools.*nothing released/, describeRun(direct));
  const noSelector = await chainGc(net, host, both([]), ['ipam-da-consul']);
  assertChainGcOk(noSelector);
  assert.match(noSelector.stderr, /no pool named/, showCni(noSelector));
  assertNoKvWrite(before, await kvState(agent.url), 'GC naming no pool');
  await assertKeysLeft(pool, keys, 'GC naming no pool');
});

test('GC through ipam-delegated → ipam-ds-static → ipam-da-consul collects only the network collected, in its pool', T, async () => {
  const poolA = freshPoolName('gc-chain-a');
  const poolB = freshPoolName('gc-chain-b');
  await putPool(agent.kv, poolA, [{ subnet: '10.84.0.0/24' }]);
  await putPool(agent.kv, poolB, [{ subnet: '10.85.0.0/24' }]);
  const host = newHost('host-chain');
  // Three networks on one host: net-b has a pool of its own, net-c shares net-a's.
  const netA: Network = { name: 'net-a', pool: poolA };
  const netB: Network = { name: 'net-b', pool: poolB };
  const netC: Network = { name: 'net-c', pool: poolA };
  const a1 = await chainAdd(netA, host, 'a1');
  const b1 = await chainAdd(netB, host, 'b1');
  const c1 = await chainAdd(netC, host, 'c1');
  assert.deepEqual(await agent.kv.getJson(a1), { target: 'a1', ifname: 'eth0', host: host.id, network: 'net-a' }, 'ADD records the network');
  // This host's allocation from a version before `network`, noted in its data_dir: no network, so no GC takes it.
  const older = `ipam/${poolA}/10.84.0.200`;
  await agent.kv.put(older, { target: 'old1', ifname: 'eth0', host: host.id });
  mkdirSync(path.join(host.dataDir, poolA, 'containers', 'old1'), { recursive: true });
  writeFileSync(path.join(host.dataDir, poolA, 'containers', 'old1', 'eth0'), '10.84.0.200\n');

  // The runtime collects net-a, where nothing is live any more.
  assertChainGcOk(await chainGc(netA, host, both([])));
  await assertKeysLeft(poolA, [c1, older], "GC of net-a in net-a's pool");
  await assertKeysLeft(poolB, [b1], "GC of net-a in net-b's pool");
  // Then net-b and net-c, each with its container live: nothing more goes.
  assertChainGcOk(await chainGc(netB, host, both(live('b1'))));
  assertChainGcOk(await chainGc(netC, host, both(live('c1'))));
  await assertKeysLeft(poolA, [c1, older], 'GC of net-b and net-c');
  await assertKeysLeft(poolB, [b1], 'GC of net-b and net-c');
});

test('GC reads cni.dev/valid-attachments and the older cni.dev/attachments, alone or together; an empty list collects', T, async () => {
  const pool = freshPoolName('gc-keys');
  await putPool(agent.kv, pool, [{ subnet: '10.88.0.0/24' }]);
  const host = newHost('host-keys');
  const net: Network = { name: 'net-keys', pool };
  const [k1, k2, k3] = [await chainAdd(net, host, 'k1'), await chainAdd(net, host, 'k2'), await chainAdd(net, host, 'k3')];
  // The spec's older key alone lists what is live: nothing goes.
  assertChainGcOk(await chainGc(net, host, { 'cni.dev/attachments': live('k1', 'k2', 'k3') }));
  await assertKeysLeft(pool, [k1!, k2!, k3!], 'cni.dev/attachments alone');
  // Both keys: an attachment listed under either is live.
  assertChainGcOk(await chainGc(net, host, { 'cni.dev/valid-attachments': live('k1'), 'cni.dev/attachments': live('k2') }));
  await assertKeysLeft(pool, [k1!, k2!], 'both keys');
  // An empty list means nothing is live.
  assertChainGcOk(await chainGc(net, host, { 'cni.dev/valid-attachments': [] }));
  await assertKeysLeft(pool, [], 'an empty list');
});

test('GC with neither list fails with 7 naming cni.dev/valid-attachments, and releases nothing', T, async () => {
  const pool = freshPoolName('gc-nolist');
  await putPool(agent.kv, pool, [{ subnet: '10.89.0.0/24' }]);
  const host = newHost('host-nolist');
  const net: Network = { name: 'test-net', pool };
  const keys = [await chainAdd(net, host, 'n1')];
  const before = await kvState(agent.url);
  const chained = await chainGc(net, host, {});
  assert.equal(chained.code, 1, showCni(chained));
  assert.equal(chained.json?.code, 7, showCni(chained));
  assert.match(`${chained.json?.msg} ${chained.json?.details}`, /cni\.dev\/valid-attachments/, showCni(chained));
  const direct = await runPlugin({ command: 'GC', env: maintenanceEnv, config: { ...gcConfig(host, { valid: [], pools: [pool] }), 'cni.dev/valid-attachments': undefined } });
  const error = assertCleanError(direct, 'GC without a list');
  assert.equal(error.code, 7, describeRun(direct));
  assert.match(`${error.msg} ${error.details}`, /cni\.dev\/valid-attachments.*cni\.dev\/attachments/, describeRun(direct));
  assertNoKvWrite(before, await kvState(agent.url), 'GC without a list');
  await assertKeysLeft(pool, keys, 'GC without a list');
});

test('GC never follows a target or ifname read from KV out of data_dir: passed over with a warning, files outside untouched', T, async () => {
  const pool = freshPoolName('gc-escape');
  await putPool(agent.kv, pool, [{ subnet: '10.86.0.0/24' }]);
  const root = tempDir('ipam-da-consul-escape-');
  const host: Host = { id: `host-escape-${process.pid}`, dataDir: path.join(root, 'data') };
  const net: Network = { name: 'net-escape', pool };
  await chainAdd(net, host, 'gone'); // makes data_dir/<pool>/containers/ as a real host has it
  // Each names this host and network, so that only the decoding of target and ifname stands in the way.
  const hostile = [
    { ip: '10.86.0.200', target: '../../../escape', ifname: 'f' },
    { ip: '10.86.0.201', target: 'c1', ifname: '../../../../x' },
    { ip: '10.86.0.202', target: '..', ifname: 'eth0' },
  ];
  const canaries = hostile.map(({ target, ifname }) => path.join(host.dataDir, pool, 'containers', target, ifname));
  for (const canary of canaries) {
    assert.ok(!canary.startsWith(`${host.dataDir}/${pool}/containers/`), `${canary} lies outside the notes`);
    mkdirSync(path.dirname(canary), { recursive: true });
    writeFileSync(canary, '10.86.0.200\n');
  }
  const keys = hostile.map(({ ip }) => `ipam/${pool}/${ip}`);
  for (const [i, { target, ifname }] of hostile.entries()) await agent.kv.put(keys[i]!, { target, ifname, host: host.id, network: net.name });

  const run = await chainGc(net, host, both([]));
  assertChainGcOk(run);
  for (const canary of canaries) assert.equal(readFileSync(canary, 'utf8'), '10.86.0.200\n', `${canary} must survive GC\n${showCni(run)}`);
  for (const key of keys) assert.match(run.stderr, new RegExp(`GC passes over ${key.replace(/\./g, '\\.')}: `), `the warning names ${key}\n${showCni(run)}`);
  await assertKeysLeft(pool, keys, 'hostile allocations'); // the legitimate stale one ("gone") went
});

test("two hosts with one hostname (cloned VMs, default host_id) never collect each other's live allocations", T, async () => {
  const pool = freshPoolName('gc-clones');
  await putPool(agent.kv, pool, [{ subnet: '10.90.0.0/24' }]);
  const first: Host = { dataDir: tempDir('ipam-da-consul-clone1-') };
  const second: Host = { dataDir: tempDir('ipam-da-consul-clone2-') };
  const net: Network = { name: 'net-clones', pool };
  const x1 = await chainAdd(net, first, 'x1');
  const y1 = await chainAdd(net, second, 'y1');
  const y2 = await chainAdd(net, second, 'y2');
  for (const key of [x1, y1, y2]) assert.equal((await agent.kv.getJson<{ host: string }>(key))?.host, hostname(), 'both record the hostname');

  // The second host's runtime knows y1 only; x1 runs on the first host.
  const run = await chainGc(net, second, both(live('y1')));
  assertChainGcOk(run);
  await assertKeysLeft(pool, [x1, y1], 'GC on the second host');
  assert.match(run.stderr, new RegExp(`GC keeps ${x1.replace(/\./g, '\\.')} .*no note of it`), showCni(run));
  // The first host, with nothing live: its own x1 goes, y1 stays.
  assertChainGcOk(await chainGc(net, first, both([])));
  await assertKeysLeft(pool, [y1], 'GC on the first host');
});

test('GC when Consul is unreachable fails with 11 and names each server', T, async () => {
  const host = newHost('host-down');
  const servers = [await closedPortUrl(), await closedPortUrl()];
  const r = await gc(host, { valid: [], pools: ['whatever'], servers });
  const error = assertCleanError(r, 'GC');
  assert.equal(error.code, 11, describeRun(r));
  for (const server of servers) assert.ok(error.details?.includes(server), `the details must name ${server}\n${describeRun(r)}`);
});

// ---------------------------------------------------------------------------
// STATUS

async function status(servers: string[], ipam: Record<string, unknown> = {}): Promise<PluginRun> {
  figures.statusRuns++;
  return runPlugin({ command: 'STATUS', env: maintenanceEnv, config: gcConfig(newHost('status'), { valid: [], servers, ipam }) });
}

test('STATUS exits 0 with no output when a Consul server answers with a leader, also after dead servers', T, async () => {
  for (const servers of [[agent.url], [await closedPortUrl(), agent.url]]) {
    const r = await status(servers);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stdout, '', describeRun(r));
  }
});

test('STATUS with no usable server fails with 50, naming each server and its reason', T, async () => {
  const refused = await closedPortUrl();
  const hung = await startHungServer();
  const noLeader = await startLeaderlessConsul();
  try {
    const r = await status([refused, hung.url, noLeader.url], { request_timeout_ms: 300 });
    const error = assertCleanError(r, 'STATUS');
    assert.equal(error.code, 50, describeRun(r));
    const details = error.details ?? '';
    assert.match(details, new RegExp(`${refused}[^;]*ECONNREFUSED`), `the refused server and why\n${describeRun(r)}`);
    assert.match(details, new RegExp(`${hung.url}[^;]*(ETIMEDOUT|timed? ?out)`, 'i'), `the hung server and why\n${describeRun(r)}`);
    assert.match(details, new RegExp(`${noLeader.url}[^;]*no cluster leader`, 'i'), `the server without a leader\n${describeRun(r)}`);
    // Bounded: the election waits (3 s, jittered up to 4.5 s) plus the hung server's 300 ms in each of six passes.
    assert.ok(r.elapsedMs < 8000, `STATUS must not hang: ${r.elapsedMs} ms`);
  } finally {
    await Promise.all([hung.close(), noLeader.stop()]);
  }
});
