// CNI 1.1 GC and STATUS against a real Consul (issue 4, "CNI 1.1: STATUS and GC"). Two simulated hosts
// (ipam.host_id "host-a" and "host-b", each with its own data_dir) share one pool. GC on host-a releases
// exactly host-a's allocations whose attachment is not in cni.dev/valid-attachments: never host-b's, never
// one written without `host` (another implementation's), never one in a pool the selector did not name,
// and nothing at all with ipam.gc false. STATUS exits 0 with a live server, else code 50 naming each server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import {
  addressOf,
  allocationKeys,
  assertSuccess,
  closedPortUrl,
  describeRun,
  freshPoolName,
  netConfig,
  putPool,
  runPlugin,
  startHungServer,
  tempDir,
  type PluginRun,
} from '../support/plugin';
import { assertCleanError, assertNoKvWrite, kvState, reportFigures } from '../support/reliability';

const T = { timeout: 60_000 };
let agent: ConsulAgent;
const figures = { gcRuns: 0, allocationsChecked: 0, wronglyReleased: 0, wronglyKept: 0, statusRuns: 0 };

before(async () => {
  agent = await startConsul();
});

after(async () => {
  await agent?.stop();
  reportFigures('gc-status', 'totals', figures);
});

let hostCounter = 0;

/** A simulated host: its own host_id and data_dir. */
interface Host {
  id: string;
  dataDir: string;
}
const newHost = (label: string): Host => ({ id: `${label}-${process.pid}-${++hostCounter}`, dataDir: tempDir(`ipam-da-consul-${label}-`) });

type Attachment = { containerID: string; ifname: string };

/** ADD on `host` for container/ifname in `pool`; returns the allocation key. */
async function add(host: Host, pool: string, containerId: string, ifname = 'eth0'): Promise<string> {
  const config = netConfig({ servers: [agent.url], pool, dataDir: host.dataDir, ipam: { host_id: host.id } });
  const result = assertSuccess(await runPlugin({ command: 'ADD', containerId, ifname, config }));
  return `ipam/${pool}/${addressOf(result.ips[0].address)}`;
}

/** The config GC gets: the network config with cni.dev/valid-attachments, and prevResult.pools when a selector named pools. */
function gcConfig(host: Host, options: { valid: Attachment[]; pools?: string[]; ipam?: Record<string, unknown>; servers?: string[] }) {
  const config: Record<string, unknown> = {
    cniVersion: '1.1.0',
    name: 'test-net',
    ipam: { type: 'ipam-delegated', consul_servers: options.servers ?? [agent.url], data_dir: host.dataDir, host_id: host.id, ...options.ipam },
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

/** Compares the keys left with the keys expected, counting what GC released or kept wrongly. */
async function assertKeysLeft(pool: string, expected: string[], context: string): Promise<void> {
  const left = await allocationKeys(agent.kv, pool);
  figures.allocationsChecked += new Set([...left, ...expected]).size;
  figures.wronglyReleased += expected.filter((k) => !left.includes(k)).length;
  figures.wronglyKept += left.filter((k) => !expected.includes(k)).length;
  assert.deepEqual(left, [...expected].sort(), context);
}

test('GC on host-a releases exactly its allocations missing from the valid list: never host-b\'s, never one without host', T, async () => {
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
  // Another host's allocation for a container ID that host-a also knows.
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

  // host-b with an empty valid list releases its own three, and still not the ones without host.
  assertGcOk(await gc(hostB, { valid: [], pools: [pool] }));
  await assertKeysLeft(pool, [a1, a3, byHand, byHandWithIfname, broken], 'GC on host-b');
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

test('GC with prevResult.pools naming one pool leaves the other pools alone; without it, every pool is covered', T, async () => {
  const named = freshPoolName('gc-named');
  const other = freshPoolName('gc-other');
  await putPool(agent.kv, named, [{ subnet: '10.82.0.0/24' }]);
  await putPool(agent.kv, other, [{ subnet: '10.83.0.0/24' }]);
  const host = newHost('host-pools');
  const inNamed = await add(host, named, 'c1');
  const inOther = await add(host, other, 'c1');
  const keptInOther = await add(host, other, 'c2');

  assertGcOk(await gc(host, { valid: [{ containerID: 'c2', ifname: 'eth0' }], pools: [named] }));
  await assertKeysLeft(named, [], 'the named pool');
  await assertKeysLeft(other, [inOther, keptInOther], 'the pool not named');

  // Pool names GC cannot address, and keys directly under ipam/ that are not pools, must not stop it.
  await agent.kv.put('ipam/not a pool name', 'x');
  await agent.kv.put(`ipam/${other}-garbage`, 'not json');
  assertGcOk(await gc(host, { valid: [{ containerID: 'c2', ifname: 'eth0' }] }));
  await assertKeysLeft(other, [keptInOther], 'every pool');
  assert.equal(inNamed.startsWith(`ipam/${named}/`), true);
  await agent.kv.delete('ipam/not a pool name');
  await agent.kv.delete(`ipam/${other}-garbage`);
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

/** An HTTP server that answers every request with this status and body: a Consul without a leader. */
async function fakeConsul(statusCode: number, body: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((_, res) => {
    res.statusCode = statusCode;
    res.setHeader('content-type', 'application/json');
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
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
  const noLeader = await fakeConsul(200, '""');
  const failing = await fakeConsul(500, 'No cluster leader');
  try {
    const r = await status([refused, hung.url, noLeader.url, failing.url], { request_timeout_ms: 300 });
    const error = assertCleanError(r, 'STATUS');
    assert.equal(error.code, 50, describeRun(r));
    const details = error.details ?? '';
    assert.match(details, new RegExp(`${refused}[^;]*ECONNREFUSED`), `the refused server and why\n${describeRun(r)}`);
    assert.match(details, new RegExp(`${hung.url}[^;]*(ETIMEDOUT|timed? ?out)`, 'i'), `the hung server and why\n${describeRun(r)}`);
    assert.match(details, new RegExp(`${noLeader.url}[^;]*no cluster leader`, 'i'), `the server without a leader\n${describeRun(r)}`);
    assert.match(details, new RegExp(`${failing.url}[^;]*500`), `the server answering 500\n${describeRun(r)}`);
    assert.ok(r.elapsedMs < 6000, `STATUS must not hang: ${r.elapsedMs} ms`);
  } finally {
    await Promise.all([hung.close(), noLeader.close(), failing.close()]);
  }
});
