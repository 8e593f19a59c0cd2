// Faults with a real 3-server Consul 1.8.7 cluster on loopback (issue 4, "Faults"): a dead first server is
// passed over; all servers down is code 11 within the timeouts; a server that accepts and never answers does
// not stall an invocation; transient 500s are retried within a bounded budget (DEL too: Nomad never retries a
// failed DEL); and the leader killed in the middle of a storm of 100 concurrent ADD processes on one pool
// leaves no IP held by two containers and, after DEL of the failed ones, no allocation leaked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startConsulCluster, type ClusterServer, type ConsulCluster } from '../support/consul';
import {
  addressOf,
  assertSuccess,
  describeRun,
  freshPoolName,
  netConfig,
  runPlugin,
  startBlackhole,
  startHungServer,
  tempDir,
  type PluginRun,
} from '../support/plugin';
import { assertCleanError, assertNoKvWrite, isKvRequest, kvState, reportFigures, startConsulProxy } from '../support/reliability';

let cluster: ConsulCluster;
const figures = { runs: 0, faultsInjected: 0 };

before(async () => {
  cluster = await startConsulCluster(3);
});

after(async () => {
  await cluster?.stop();
  reportFigures('cluster-faults', 'totals', figures);
});

const run = (...args: Parameters<typeof runPlugin>): Promise<PluginRun> => {
  figures.runs++;
  return runPlugin(...args);
};

/** The server that is the leader now, and the others. */
async function roles(): Promise<{ leader: ClusterServer; followers: ClusterServer[] }> {
  const url = await cluster.leaderUrl();
  const leader = cluster.servers.find((s) => s.url === url)!;
  return { leader, followers: cluster.servers.filter((s) => s !== leader) };
}

/** Writes a pool through the leader (consistent) and returns its name. */
async function makePool(label: string, ranges: object[]): Promise<string> {
  const pool = freshPoolName(label);
  const res = await fetch(`${await cluster.leaderUrl()}/v1/kv/ipam/${pool}`, { method: 'PUT', body: JSON.stringify(ranges) });
  assert.equal(await res.text(), 'true');
  return pool;
}

/** Every allocation of a pool, read consistently from the leader: key → value. */
async function allocations(pool: string): Promise<Map<string, { target: string; ifname?: string; host?: string }>> {
  const url = await cluster.leaderUrl();
  const res = await fetch(`${url}/v1/kv/ipam/${pool}/?recurse&consistent`);
  const out = new Map<string, { target: string; ifname?: string; host?: string }>();
  if (res.status === 404) return out;
  assert.equal(res.status, 200, await res.clone().text());
  for (const e of (await res.json()) as Array<{ Key: string; Value: string | null }>) {
    out.set(e.Key, JSON.parse(Buffer.from(e.Value ?? '', 'base64').toString('utf8')));
  }
  return out;
}

/** Restarts every stopped server and waits until all agree on a leader. */
async function healCluster(): Promise<void> {
  await Promise.all(cluster.servers.map((s) => s.start()));
  await cluster.leaderUrl();
}

test('a healthy cluster: ADD through a follower costs what it costs through the leader: 3 requests the full way (its stale read is trusted), 1 on a warm host', { timeout: 60_000 }, async (t) => {
  const pool = await makePool('faults-follower', [{ subnet: '10.91.0.0/24' }]);
  const { leader, followers } = await roles();
  const logs = tempDir('ipam-da-consul-follower-');
  const counts: Record<string, number[]> = { leader: [], follower: [], 'leader, warm': [], 'follower, warm': [] };
  const requests = async (role: string, server: { url: string }, i: number, dataDir: string, inPool = pool) => {
    const log = path.join(logs, `${role}-${i}.log`);
    const add = await run({ command: 'ADD', containerId: `c-${role}-${i}`, flavour: 'verbose', env: { IPAM_DA_CONSUL_LOG_FILE: log }, config: netConfig({ servers: [server.url], pool: inPool, dataDir }) });
    assertSuccess(add);
    return readFileSync(log, 'utf8').split('\n').filter((line) => / consul (GET|PUT|DELETE) /.test(line)).length;
  };
  // Made first, so that every server has applied them before an ADD reads them with ?stale.
  const warmPools = { leader: await makePool('faults-warm-leader', [{ subnet: '10.91.1.0/24' }]), follower: await makePool('faults-warm-follower', [{ subnet: '10.91.2.0/24' }]) };
  const fullWay = tempDir('ipam-da-consul-follower-full-');
  for (const [role, server] of [['leader', leader], ['follower', followers[0]!]] as const) {
    // The full way, which picks the server by its stale read of the pool: the host's copy of the pool is removed
    // before each ADD, and the count of free addresses from its hint (whose address stays, so that each window is
    // free): with it, the full way would claim without reading a window.
    for (let i = 0; i < 5; i++) {
      rmSync(path.join(fullWay, pool, 'pool'), { force: true });
      const hint = path.join(fullWay, pool, 'last_reserved_ip');
      if (existsSync(hint)) writeFileSync(hint, JSON.stringify({ ...JSON.parse(readFileSync(hint, 'utf8')), free: undefined }));
      counts[role]!.push(await requests(role, server, i, fullWay));
    }
    // One host, in an empty pool of its own: after its first ADD, each claims in one transaction, which a
    // follower forwards to the leader.
    const warm = tempDir('ipam-da-consul-follower-warm-');
    for (let i = 0; i < 3; i++) counts[`${role}, warm`]!.push(await requests(`${role}-warm`, server, i, warm, warmPools[role]));
  }
  reportFigures('cluster-faults', t.name, { requestsPerAdd: counts }, t);
  assert.deepEqual(counts, { leader: [3, 3, 3, 3, 3], follower: [3, 3, 3, 3, 3], 'leader, warm': [3, 1, 1], 'follower, warm': [3, 1, 1] });
});

test('the first listed server is down: ADD and DEL succeed through the next one', { timeout: 60_000 }, async () => {
  const pool = await makePool('faults-first-down', [{ subnet: '10.90.0.0/24', gateway: '10.90.0.1' }]);
  const { leader, followers } = await roles();
  const down = followers[0]!;
  await down.stop();
  figures.faultsInjected++;
  try {
    const servers = [down.url, leader.url, followers[1]!.url];
    const dataDir = tempDir();
    const r = await run({ command: 'ADD', containerId: 'c1', config: netConfig({ servers, pool, dataDir }) });
    const added = assertSuccess(r);
    const key = `ipam/${pool}/${addressOf(added.ips[0].address)}`;
    assert.equal((await allocations(pool)).get(key)?.target, 'c1');
    assert.ok(r.stderr.includes(down.url), `the dead server must be named in a warning\n${describeRun(r)}`);
    // DEL from another host (no note), without prevResult.ips: the search goes through the next server too.
    assertSuccess(await run({ command: 'DEL', containerId: 'c1', config: netConfig({ servers, pool }) }));
    assert.equal((await allocations(pool)).size, 0, 'DEL must release c1 through the second server');
  } finally {
    await healCluster();
  }
});

test('a server that accepts and never answers, listed first: the invocation moves on after request_timeout_ms', { timeout: 60_000 }, async () => {
  const pool = await makePool('faults-hung', [{ subnet: '10.91.0.0/24' }]);
  const hung = await startHungServer();
  figures.faultsInjected++;
  try {
    const servers = [hung.url, ...cluster.servers.map((s) => s.url)];
    for (const requestTimeoutMs of [500, 1500]) {
      const config = netConfig({ servers, pool, ipam: { request_timeout_ms: requestTimeoutMs } });
      const r = await run({ command: 'ADD', containerId: `c-${requestTimeoutMs}`, config });
      assertSuccess(r);
      assert.ok(r.elapsedMs >= requestTimeoutMs, `it must have waited for the hung server: ${r.elapsedMs} ms`);
      assert.ok(r.elapsedMs < requestTimeoutMs + 3000, `it must move on after ${requestTimeoutMs} ms, took ${r.elapsedMs} ms`);
      const del = await run({ command: 'DEL', containerId: `c-${requestTimeoutMs}`, config });
      assertSuccess(del);
      assert.ok(del.elapsedMs < requestTimeoutMs + 3000, `DEL must move on after ${requestTimeoutMs} ms, took ${del.elapsedMs} ms`);
    }
    // With the defaults (request_timeout_ms 5000) the wait is bounded too.
    const r = await run({ command: 'ADD', containerId: 'c-default', config: netConfig({ servers, pool }) });
    assertSuccess(r);
    assert.ok(r.elapsedMs >= 5000 && r.elapsedMs < 8000, `with the defaults it must move on after 5 s, took ${r.elapsedMs} ms`);
    assert.equal((await allocations(pool)).size, 1);
  } finally {
    await hung.close();
  }
});

test('a server that answers the leader probe, then hangs: code 11 after request_timeout_ms, nothing written', { timeout: 60_000 }, async () => {
  const pool = await makePool('faults-hang-later', [{ subnet: '10.92.0.0/24' }]);
  const { leader } = await roles();
  const proxy = await startConsulProxy(leader.url, (req) => (isKvRequest(req) ? 'hang' : 'forward'));
  figures.faultsInjected++;
  try {
    const before = await kvState(leader.url);
    for (const command of ['ADD', 'DEL', 'CHECK'] as const) {
      const config = netConfig({ servers: [proxy.url], pool, ips: command === 'CHECK' ? [{ address: '10.92.0.1/24' }] : [], ipam: { request_timeout_ms: 800 } });
      const r = await run({ command, containerId: 'c1', config });
      const error = assertCleanError(r, command);
      assert.equal(error.code, 11, describeRun(r));
      assert.ok(r.elapsedMs < 800 + 2500, `${command} must give up after about 800 ms, took ${r.elapsedMs} ms`);
      assert.match(error.details ?? '', /ETIMEDOUT|timed? ?out/i, describeRun(r));
    }
    assertNoKvWrite(before, await kvState(leader.url), 'hung KV requests');
  } finally {
    await proxy.close();
  }
});

test('"No cluster leader" 500s are retried within a bounded budget: a few are absorbed (ADD and DEL), endless ones end in 11', { timeout: 60_000 }, async (t) => {
  const pool = await makePool('faults-500', [{ subnet: '10.93.0.0/24' }]);
  const { leader } = await roles();
  // Which KV requests of the next invocation fail (0 is its first read), as during an election.
  let failing = new Set<number>();
  let kvSeen = 0;
  const proxy = await startConsulProxy(leader.url, (req) => (isKvRequest(req) && failing.has(kvSeen++) ? 'fail' : 'forward'));
  const arm = (indexes: number[]) => {
    failing = new Set(indexes);
    kvSeen = 0;
    figures.faultsInjected += indexes.length;
  };
  const held = async (container: string) => [...(await allocations(pool)).values()].filter((a) => a.target === container).length;
  try {
    for (const [label, indexes] of [
      ['after its first read', [1, 2, 3]],
      ['on its first read', [0, 1, 2]],
    ] as Array<[string, number[]]>) {
      await t.test(`ADD absorbs three 500s ${label}`, async () => {
        const container = `c-add-${indexes[0]}`;
        arm(indexes);
        const add = await run({ command: 'ADD', containerId: container, config: netConfig({ servers: [proxy.url], pool }) });
        const added = assertSuccess(add);
        assert.match(add.stderr, /retrying/, `the retries are logged as warnings\n${describeRun(add)}`);
        assert.equal((await allocations(pool)).get(`ipam/${pool}/${addressOf(added.ips[0].address)}`)?.target, container);
      });
      await t.test(`DEL absorbs three 500s ${label} (Nomad never retries a failed DEL)`, async () => {
        const container = `c-del-${indexes[0]}`;
        await fetch(`${leader.url}/v1/kv/ipam/${pool}/10.93.0.${200 + indexes[0]!}`, { method: 'PUT', body: JSON.stringify({ target: container, ifname: 'eth0', host: 'h' }) });
        assert.equal(await held(container), 1);
        arm(indexes);
        // Without prevResult.ips nor a host note: the search of the pool, then the delete, through the failures.
        const del = await run({ command: 'DEL', containerId: container, config: netConfig({ servers: [proxy.url], pool }) });
        assertSuccess(del);
        assert.equal(await held(container), 0, 'DEL must have released the allocation despite the 500s');
      });
    }

    await t.test('endless 500s: ADD and DEL give up with 11 within the budget (about 3 s), not at once', async () => {
      failing = { has: () => true } as unknown as Set<number>;
      const before = await kvState(leader.url);
      for (const command of ['ADD', 'DEL'] as const) {
        const seenBefore = proxy.seen.length;
        const r = await run({ command, containerId: 'c-endless', config: netConfig({ servers: [proxy.url], pool }) });
        const error = assertCleanError(r, command);
        assert.equal(error.code, 11, describeRun(r));
        const kvTries = proxy.seen.slice(seenBefore).filter(isKvRequest).length;
        figures.faultsInjected += kvTries;
        assert.ok(kvTries >= 4, `${command} must retry before giving up: ${kvTries} KV request(s)\n${describeRun(r)}`);
        assert.ok(r.elapsedMs >= 1000 && r.elapsedMs < 6000, `${command} must give up within its budget: ${r.elapsedMs} ms`);
      }
      assertNoKvWrite(before, await kvState(leader.url), 'endless 500s');
    });
  } finally {
    await proxy.close();
  }
});

test('quorum lost (two of three servers down): ADD fails with 11 within its budget, STATUS with 50, nothing written', { timeout: 60_000 }, async (t) => {
  const pool = await makePool('faults-quorum', [{ subnet: '10.94.0.0/24' }]);
  const { leader, followers } = await roles();
  const survivor = followers[0]!;
  await Promise.all([leader.stop(), followers[1]!.stop()]);
  figures.faultsInjected += 2;
  const servers = cluster.servers.map((s) => s.url);
  const statusConfig = netConfig({ servers, pool, cniVersion: '1.1.0' });
  const maintenanceEnv = { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined };
  const timings: Record<string, number> = {};
  try {
    // At once: the survivor still names the dead leader for a moment, and holds or fails KV requests.
    // The bound is the transient-retry budget (at most 4.5 s of waits) plus one request_timeout_ms (5 s).
    const early = await run({ command: 'ADD', containerId: 'c1', config: netConfig({ servers, pool }) });
    timings.addJustAfterLossMs = early.elapsedMs;
    const earlyError = assertCleanError(early, 'ADD just after the quorum was lost');
    assert.equal(earlyError.code, 11, describeRun(early));
    assert.ok(earlyError.details?.includes(survivor.url), `the details must name the survivor and why\n${describeRun(early)}`);
    assert.ok(early.elapsedMs < 5000 + 4500 + 1000, `ADD must give up within its budget, took ${early.elapsedMs} ms\n${describeRun(early)}`);

    // Once the survivor knows there is no leader: ADD fails within the all-down bound, STATUS says not available and why.
    const deadline = Date.now() + 20_000;
    while ((await (await fetch(`${survivor.url}/v1/status/leader`)).json()) !== '') {
      assert.ok(Date.now() < deadline, 'the survivor must notice that it has no leader');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const add = await run({ command: 'ADD', containerId: 'c1', config: netConfig({ servers, pool }) });
    timings.addWithoutLeaderMs = add.elapsedMs;
    const error = assertCleanError(add, 'ADD without a leader');
    assert.equal(error.code, 11, describeRun(add));
    // As STATUS does, the error says why the live server was not used; and a leaderless cluster is as good as
    // down, so the same bound holds as with every server down.
    assert.match(error.details ?? '', new RegExp(`${survivor.url}[^;]*no cluster leader`, 'i'), `the survivor must be named with its reason, no cluster leader\n${describeRun(add)}`);
    assert.ok(add.elapsedMs < 6000, `ADD took ${add.elapsedMs} ms\n${describeRun(add)}`);
    const status = await run({ command: 'STATUS', env: maintenanceEnv, config: statusConfig });
    timings.statusWithoutLeaderMs = status.elapsedMs;
    const statusError = assertCleanError(status, 'STATUS');
    assert.equal(statusError.code, 50, describeRun(status));
    for (const s of cluster.servers) assert.ok(statusError.details?.includes(s.url), `STATUS must name ${s.url}\n${describeRun(status)}`);
    assert.match(statusError.details ?? '', /no cluster leader/i, describeRun(status));
  } finally {
    reportFigures('cluster-faults', t.name, timings, t);
    await healCluster();
  }
  assert.equal((await allocations(pool)).size, 0);
  const status = await run({ command: 'STATUS', env: maintenanceEnv, config: statusConfig });
  assert.equal(status.code, 0, `STATUS once the cluster has healed\n${describeRun(status)}`);
});

test('every server down: code 11 in under 6 s with the default timeouts, sooner with a small connect_timeout_ms', { timeout: 60_000 }, async () => {
  const pool = await makePool('faults-all-down', [{ subnet: '10.95.0.0/24' }]);
  const servers = cluster.servers.map((s) => s.url);
  await Promise.all(cluster.servers.map((s) => s.stop()));
  figures.faultsInjected += 3;
  try {
    for (const command of ['ADD', 'DEL', 'CHECK'] as const) {
      const r = await run({ command, containerId: 'c1', config: netConfig({ servers, pool, ips: command === 'CHECK' ? [{ address: '10.95.0.1/24' }] : [] }) });
      const error = assertCleanError(r, command);
      assert.equal(error.code, 11, describeRun(r));
      for (const s of servers) assert.ok(error.details?.includes(s), `${command} must name ${s}\n${describeRun(r)}`);
      assert.ok(r.elapsedMs < 6000, `${command} took ${r.elapsedMs} ms`);
    }
  } finally {
    await healCluster();
  }
  assert.equal((await allocations(pool)).size, 0);
});

test('three dead hosts (connections never complete): code 11 in under 6 s with the defaults, and sooner with connect_timeout_ms', { timeout: 60_000 }, async (t) => {
  const holes = await Promise.all([startBlackhole(), startBlackhole(), startBlackhole()]);
  figures.faultsInjected += 3;
  try {
    const servers = holes.map((h) => h.url);
    const quick = await run({ command: 'ADD', containerId: 'c1', config: netConfig({ servers, pool: 'p', ipam: { connect_timeout_ms: 250 } }) });
    assert.equal(assertCleanError(quick, 'ADD with connect_timeout_ms 250').code, 11, describeRun(quick));
    assert.ok(quick.elapsedMs < 2500, `with connect_timeout_ms 250 it must give up within about 3 × 250 ms, took ${quick.elapsedMs} ms`);
    const slow = await run({ command: 'ADD', containerId: 'c1', config: netConfig({ servers, pool: 'p' }) });
    reportFigures('cluster-faults', t.name, { withConnectTimeout250Ms: quick.elapsedMs, withDefaultsMs: slow.elapsedMs }, t);
    const error = assertCleanError(slow, 'ADD with the default timeouts');
    assert.equal(error.code, 11, describeRun(slow));
    assert.ok(slow.elapsedMs > quick.elapsedMs, 'the defaults wait longer than 250 ms per server');
    assert.ok(slow.elapsedMs < 6000, `with the default timeouts, three dead hosts must fail in under 6 s, took ${slow.elapsedMs} ms\n${describeRun(slow)}`);
  } finally {
    await Promise.all(holes.map((h) => h.close()));
  }
});

test('the leader killed in the middle of a storm of 100 concurrent ADD processes: no duplicate, no leak', { timeout: 120_000 }, async (t) => {
  const started = Date.now();
  const pool = await makePool('faults-storm', [{ subnet: '10.96.0.0/24', rangeStart: '10.96.0.10', rangeEnd: '10.96.0.250', gateway: '10.96.0.1' }]);
  const { leader } = await roles();
  const servers = cluster.servers.map((s) => s.url);
  const total = 100;
  // 70 hosts with one container each; 6 hosts share the other 30 (a host's processes share its hints).
  const hostOf = (i: number): number => (i < 70 ? i : 70 + (i % 6));
  const hostDirs = new Map<number, string>();
  const dataDirOf = (i: number): string => {
    const h = hostOf(i);
    if (!hostDirs.has(h)) hostDirs.set(h, tempDir(`ipam-da-consul-storm-host${h}-`));
    return hostDirs.get(h)!;
  };
  const containerOf = (i: number): string => `storm-${i}`;
  // Each host lists the servers in its own order, so the storm reaches all three.
  const configOf = (i: number) =>
    netConfig({ servers: [0, 1, 2].map((k) => servers[(i + k) % 3]!), pool, dataDir: dataDirOf(i), ipam: { host_id: `storm-host-${hostOf(i)}` } });

  // Kill the leader once 15 allocations are written: the other ADDs are then in flight or about to start.
  let finished = 0;
  let finishedAtKill = -1;
  let writtenAtKill = -1;
  let killedAt: number | undefined;
  let kill: Promise<void> | undefined;
  let watching = true;
  const watcher = (async () => {
    while (watching && !kill) {
      const res = await fetch(`${leader.url}/v1/kv/ipam/${pool}/?keys`).catch(() => undefined);
      const written = res?.status === 200 ? ((await res.json()) as string[]).length : 0;
      if (written >= 15) {
        killedAt = Date.now() - started;
        finishedAtKill = finished;
        writtenAtKill = written;
        kill = leader.stop();
        figures.faultsInjected++;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const runs = await Promise.all(
    Array.from({ length: total }, async (_, i) => {
      const r = await run({ command: 'ADD', containerId: containerOf(i), config: configOf(i), timeoutMs: 40_000 });
      finished++;
      return r;
    }),
  );
  watching = false;
  await watcher;
  await kill;
  const stormMs = Date.now() - started;

  // Every ADD either succeeded with one address, or printed one CNI error JSON.
  const succeeded = new Map<number, string>();
  const failed: number[] = [];
  const codes: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  runs.forEach((r, i) => {
    if (r.code === 0) {
      const result = assertSuccess(r);
      assert.equal(result.ips.length, 1, describeRun(r));
      succeeded.set(i, addressOf(result.ips[0].address));
    } else {
      const error = assertCleanError(r, `ADD ${containerOf(i)}`);
      codes[error.code] = (codes[error.code] ?? 0) + 1;
      // Grouped by cause: the message without pool names, and the error code Node or Consul gave.
      const cause = `${error.msg.replace(/ipam\/\S+/g, 'ipam/…')}: ${(/(E[A-Z]+|answered \d+: [^;(]{0,40}|no cluster leader)/.exec(error.details ?? '') ?? ['?'])[0]}`;
      reasons[cause] = (reasons[cause] ?? 0) + 1;
      failed.push(i);
    }
  });

  // No IP held by two containers: successful addresses are distinct, each key names the container it was given to.
  const afterStorm = await allocations(pool);
  const addresses = [...succeeded.values()];
  const duplicateResults = addresses.length - new Set(addresses).size;
  let wrongTarget = 0;
  for (const [i, ip] of succeeded) if (afterStorm.get(`ipam/${pool}/${ip}`)?.target !== containerOf(i)) wrongTarget++;
  const targets = [...afterStorm.values()].map((a) => a.target);
  const containersWithTwoKeys = targets.length - new Set(targets).size;
  const strangers = targets.filter((target) => !/^storm-\d+$/.test(target) || Number(target.slice(6)) >= total).length;

  // DEL for every failed ADD, as the runtime would (no prevResult.ips: the ADD returned none), from its host.
  const dels = await Promise.all(failed.map((i) => run({ command: 'DEL', containerId: containerOf(i), config: configOf(i), timeoutMs: 40_000 })));
  for (const r of dels) assertSuccess(r);
  const afterDel = await allocations(pool);
  const failedIds = new Set(failed.map(containerOf));
  const leaks = [...afterDel.entries()].filter(([, a]) => failedIds.has(a.target));
  const heldByFailedBeforeDel = [...afterStorm.values()].filter((a) => failedIds.has(a.target)).length;

  const result = {
    processes: total,
    hosts: hostDirs.size,
    leaderKilledAtMs: killedAt,
    allocationsWrittenAtKill: writtenAtKill,
    addsFinishedAtKill: finishedAtKill,
    stormMs,
    successes: succeeded.size,
    failures: failed.length,
    failureCodes: codes,
    failureReasons: reasons,
    distinctIps: new Set(addresses).size,
    duplicates: duplicateResults + wrongTarget + containersWithTwoKeys,
    allocationsChecked: afterStorm.size,
    failedAddsThatHadWritten: heldByFailedBeforeDel,
    leaks: leaks.length + strangers,
    totalMs: Date.now() - started,
  };
  reportFigures('cluster-faults', t.name, result, t);

  assert.ok(killedAt !== undefined && finishedAtKill < total - 10, `the leader must have been killed while ADDs were running: ${JSON.stringify(result)}`);
  assert.equal(duplicateResults, 0, `two containers were given one address: ${JSON.stringify(result)}`);
  assert.equal(wrongTarget, 0, `a successful ADD's key does not name its container: ${JSON.stringify(result)}`);
  assert.equal(containersWithTwoKeys, 0, `a container holds two addresses: ${JSON.stringify(result)}`);
  assert.equal(strangers, 0, 'keys for containers that never ran');
  assert.equal(afterStorm.size, succeeded.size + heldByFailedBeforeDel, 'every key belongs to a successful ADD or to a failed one (to be released by DEL)');
  assert.deepEqual(leaks, [], 'DEL of the failed ADDs must leave no allocation for them');
  assert.equal(afterDel.size, succeeded.size, 'after DEL of the failed ones, exactly the successful ones hold addresses');
  assert.ok(succeeded.size > 0, 'some ADDs must succeed');
  assert.ok(Date.now() - started < 60_000, `the storm test must stay under 60 s: ${Date.now() - started} ms`);

  await healCluster();
});
