// consul-ipam check and release --from-report, the day-thirty routine, against real Consul agents: a dev server
// (its node name is this machine's hostname, the plugin's default host_id) and a client agent of another name
// that joins it, gets allocations from the real dist/ipam-da-consul through its own HTTP API, dies and is
// force-removed. Its allocations are reported and released; the live host's never; a key re-allocated after
// the report is left alone. Every problem kind of the report is made for real and checked here.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { catalogNodes, forceLeave, startClientAgent, startConsul, type ClientAgent, type ConsulAgent } from '../support/consul';
import { assertFailure, assertOk, execute, json, show, type Run } from '../support/cli';
import { assertNoKvWrite, createToken, kvState } from '../support/reliability';
import { closedPortUrl } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/consul-ipam');
const plugin = path.join(root, 'dist/ipam-da-consul');
const scratch = mkdtempSync(path.join(tmpdir(), 'consul-ipam-check-'));
const other = `ipam-host-b-${process.pid}`; // the second agent's node name, and its allocations' host_id
const live = hostname(); // the dev server's node name, and the plugin's default host_id

let server: ConsulAgent;
let hostB: ClientAgent | undefined;
const consulIpam = (...args: string[]): Promise<Run> => execute(cli, ['--consul', server.url, ...args]);

/** ADD through the real plugin, as a runtime on that host runs it: its agent, its data_dir, its host_id. */
async function add(options: { consul: string; pool: string; container: string; dataDir: string; hostId?: string; ifname?: string }): Promise<string> {
  const config = {
    cniVersion: '1.0.0',
    name: 'net',
    ipam: { type: 'ipam-delegated', consul_servers: [options.consul], data_dir: path.join(scratch, options.dataDir), ...(options.hostId ? { host_id: options.hostId } : {}) },
    prevResult: { cniVersion: '1.0.0', ips: [], routes: [], dns: {}, pools: [{ name: options.pool }] },
  };
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: options.container, CNI_IFNAME: options.ifname ?? 'eth0', CNI_NETNS: '/var/run/netns/x', CNI_PATH: '/opt/cni/bin' };
  const run = await execute(plugin, [], env, JSON.stringify(config));
  assert.equal(run.code, 0, show(run));
  return (json(run).ips[0].address as string).split('/')[0]!;
}

/** The problems of a check --json, as key -> kinds. */
const kinds = (report: any, pool: string): Record<string, string[]> =>
  Object.fromEntries((report.pools.find((p: { name: string }) => p.name === pool)?.problems ?? []).map((p: any) => [p.key, p.problems.map((q: any) => q.kind)]));

/** A report file as check wrote it, with its time moved `ms` into the past (instead of waiting out --grace). */
function aged(file: string, ms: number): string {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  report.createdAt = new Date(Date.parse(report.createdAt) - ms).toISOString();
  const copy = file.replace(/\.json$/, `-aged.json`);
  writeFileSync(copy, JSON.stringify(report));
  return copy;
}

before(async () => {
  for (const file of [cli, plugin]) if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` before the integration tests`);
  server = await startConsul();
  hostB = await startClientAgent(server, other);
});

after(async () => {
  await hostB?.stop();
  await server?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('a host that dies: check, then release --from-report', () => {
  const pool = 'leak';
  const ips: Record<string, string> = {};

  before(async () => {
    assertOk(await consulIpam('pool', 'set', pool, '--range', '10.30.0.0/24,10.30.0.10,10.30.0.100'));
    ips['live-1'] = await add({ consul: server.url, pool, container: 'live-1', dataDir: 'live' });
    ips['b-1'] = await add({ consul: hostB!.url, pool, container: 'b-1', dataDir: 'b', hostId: other });
    ips['b-2'] = await add({ consul: hostB!.url, pool, container: 'b-2', dataDir: 'b', hostId: other });
  });

  test('both hosts are nodes: nothing is reported', async () => {
    assert.deepEqual((await catalogNodes(server.url)).sort(), [live, other].sort());
    const run = await consulIpam('check', pool, '--json');
    assertOk(run);
    assert.deepEqual(kinds(json(run), pool), {});
    assert.deepEqual(json(run).pools[0].notes, []);
  });

  test('crashed but not yet removed, the host is still a node: nothing is reported', async () => {
    await hostB!.crash();
    assert.ok((await catalogNodes(server.url)).includes(other), 'Consul keeps a failed node in its catalog');
    assert.deepEqual(kinds(json(await consulIpam('check', pool, '--json')), pool), {});
  });

  test('force-removed: its allocations are reported dead with value and ModifyIndex; the live host\'s are not', async () => {
    await forceLeave(server, other);
    const file = path.join(scratch, 'leak.json');
    const run = await consulIpam('check', pool, '-o', file);
    assertOk(run);
    const report = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(report.report, 'consul-ipam check');
    assert.ok(Math.abs(Date.now() - Date.parse(report.createdAt)) < 60_000, report.createdAt);
    assert.deepEqual(report.servers, [server.url]);
    assert.deepEqual(report.nodes, [live]);
    assert.deepEqual(kinds(report, pool), { [`ipam/${pool}/${ips['b-1']}`]: ['dead-host'], [`ipam/${pool}/${ips['b-2']}`]: ['dead-host'] });
    for (const container of ['b-1', 'b-2']) {
      const key = `ipam/${pool}/${ips[container]}`;
      const found = report.pools[0].problems.find((p: { key: string }) => p.key === key);
      const stored = await server.kv.get(key);
      assert.deepEqual([found.value, found.modifyIndex, found.host, found.target, found.release], [stored!.value, stored!.modifyIndex, other, container, true]);
    }
    assert.deepEqual([report.pools[0].size, report.pools[0].allocated, report.pools[0].free], ['91', 3, '88']);
    // The text says the same for people.
    assert.match(run.stdout, new RegExp(`^pool ${pool}: 91 addresses, 3 allocated, 88 free$`, 'm'));
    assert.match(run.stdout, new RegExp(`^  ipam/${pool}/${ips['b-1']!.replace(/\./g, '\\.')}\\s+dead-host\\s+b-1\\s+eth0\\s+${other}\\s+yes\\s+host ${other} is not a node of the Consul cluster$`, 'm'));
    assert.match(run.stdout, /^2 problem keys, 2 to release with consul-ipam release --from-report .*leak\.json --yes/m);
  });

  test('release without --yes says what it would do and deletes nothing', async () => {
    const file = aged(path.join(scratch, 'leak.json'), 11 * 60_000);
    const run = await consulIpam('release', '--from-report', file);
    assertOk(run);
    assert.match(run.stdout, new RegExp(`^would release ipam/${pool}/${ips['b-1']!.replace(/\./g, '\\.')} \\(b-1 eth0 on ${other}\\): dead-host$`, 'm'));
    assert.match(run.stdout, /^would release 2 of 2; nothing was deleted: run again with --yes/m);
    assert.equal((await server.kv.keys(`ipam/${pool}/`)).length, 3);
  });

  test('a report younger than --grace (default 10m) is refused; --grace 1h refuses an 11-minute-old one', async () => {
    const fresh = await consulIpam('release', '--from-report', path.join(scratch, 'leak.json'), '--yes');
    assertFailure(fresh, 1, /the report .*leak\.json is \d+s old, younger than --grace 10m; nothing released \(it can be acted on from \d{4}-/);
    const longer = await consulIpam('release', '--from-report', aged(path.join(scratch, 'leak.json'), 11 * 60_000), '--grace', '1h', '--yes');
    assertFailure(longer, 1, /is 11m( \d+s)? old, younger than --grace 1h/);
    assert.equal((await server.kv.keys(`ipam/${pool}/`)).length, 3);
  });

  test('--yes: the dead host\'s allocations are released; one re-allocated since the report is left alone and named', async () => {
    // After the report, b-2's address is released by hand and the plugin hands it to a container of the live
    // host (round robin after live-1's address skips b-1's, still taken, and lands on it).
    assertOk(await consulIpam('release', pool, ips['b-2']!));
    const taken = await add({ consul: server.url, pool, container: 'live-3', dataDir: 'live' });
    assert.equal(taken, ips['b-2'], 'the freed address is re-allocated');
    const before = await server.kv.get(`ipam/${pool}/${ips['b-2']}`);

    const run = await consulIpam('release', '--from-report', aged(path.join(scratch, 'leak.json'), 11 * 60_000), '--yes');
    assertOk(run);
    assert.match(run.stdout, new RegExp(`^released ipam/${pool}/${ips['b-1']!.replace(/\./g, '\\.')} \\(b-1 eth0 on ${other}\\): dead-host$`, 'm'));
    assert.match(run.stdout, new RegExp(`^left alone ipam/${pool}/${ips['b-2']!.replace(/\./g, '\\.')} \\(b-2 eth0 on ${other}\\): changed since the report \\(ModifyIndex \\d+, now ${before!.modifyIndex}: .*live-3`, 'm'));
    assert.match(run.stdout, /^released 1 of 2; 1 left alone$/m);
    assert.equal(await server.kv.get(`ipam/${pool}/${ips['b-1']}`), undefined);
    assert.deepEqual(await server.kv.getJson(`ipam/${pool}/${ips['b-2']}`), { target: 'live-3', ifname: 'eth0', host: live, network: 'net' });
    assert.equal((await server.kv.get(`ipam/${pool}/${ips['b-2']}`))!.modifyIndex, before!.modifyIndex);
    assert.equal(((await server.kv.getJson(`ipam/${pool}/${ips['live-1']}`)) as { target: string }).target, 'live-1');

    // The same report again: the released key is gone, the other still changed; nothing is deleted.
    const again = await consulIpam('--json', 'release', '--from-report', aged(path.join(scratch, 'leak.json'), 11 * 60_000), '--yes');
    assertOk(again);
    assert.deepEqual(json(again).results.map((r: { outcome: string }) => r.outcome), ['gone', 'changed']);
    assert.deepEqual((await server.kv.keys(`ipam/${pool}/`)).sort(), [ips['b-2'], ips['live-1']].map((ip) => `ipam/${pool}/${ip}`).sort());
  });

  test('a host that became a node again since the report is left alone', async () => {
    const file = path.join(scratch, 'back.json');
    await server.kv.put(`ipam/${pool}/10.30.0.99`, { target: 'b-9', ifname: 'eth0', host: other });
    assertOk(await consulIpam('check', pool, '-o', file));
    assert.deepEqual(kinds(JSON.parse(readFileSync(file, 'utf8')), pool), { [`ipam/${pool}/10.30.0.99`]: ['dead-host'] });
    await hostB!.stop();
    hostB = await startClientAgent(server, other); // the host comes back under its name
    const run = await consulIpam('release', '--from-report', file, '--grace', '0s', '--yes');
    assertOk(run);
    assert.match(run.stdout, new RegExp(`^left alone ipam/${pool}/10\\.30\\.0\\.99 \\(b-9 eth0 on ${other}\\): host ${other} is a node of the Consul cluster again$`, 'm'));
    assert.notEqual(await server.kv.get(`ipam/${pool}/10.30.0.99`), undefined);
  });
});

describe('every other problem kind, made for real', () => {
  const pool = 'kinds';
  let first: string;
  let second: string;

  before(async () => {
    assertOk(await consulIpam('pool', 'set', pool, '--range', '10.31.0.0/24,10.31.0.10,10.31.0.50', '--range', 'fd31::/120'));
    // A duplicate as it happens: ADD, then the same container and interface again on a host whose hints were lost.
    first = await add({ consul: server.url, pool, container: 'dup', dataDir: 'dup-1' });
    second = await add({ consul: server.url, pool, container: 'dup', dataDir: 'dup-2' });
    assert.notEqual(first, second);
    await server.kv.put(`ipam/${pool}/10.31.0.40`, 'not json'); // invalid-value
    await server.kv.put(`ipam/${pool}/fd31:0:0:0:0:0:0:5`, { target: 'v6', ifname: 'eth0', host: live }); // non-canonical-key
    await server.kv.put(`ipam/${pool}/notes`, 'remember the milk'); // invalid-key
    await server.kv.put(`ipam/${pool}/10.31.0.200`, { target: 'shrunk', ifname: 'eth0', host: live }); // outside-ranges, once the pool shrinks:
    assertOk(await consulIpam('pool', 'set', pool, '--range', '10.31.0.0/25,10.31.0.10,10.31.0.30', '--range', 'fd31::/120', '--force'));
    await server.kv.put(`ipam/${pool}/10.31.0.127`, { target: 'bcast', ifname: 'eth0', host: live }); // outside-ranges: the broadcast address
    await server.kv.put(`ipam/${pool}/10.31.0.45`, { target: 'static', ifname: 'eth0', host: live }); // in the subnet, past rangeEnd: a static address, fine
  });

  test('check reports each kind, and which it would release', async () => {
    const file = path.join(scratch, 'kinds.json');
    const before = await kvState(server.url);
    const run = await consulIpam('check', pool, '--json', '-o', file);
    assertOk(run);
    assertNoKvWrite(before, await kvState(server.url), 'check changes nothing');
    assert.deepEqual(json(run), JSON.parse(readFileSync(file, 'utf8')), '--json prints the report it writes');
    assert.deepEqual(kinds(json(run), pool), {
      [`ipam/${pool}/${first}`]: ['duplicate'],
      [`ipam/${pool}/10.31.0.40`]: ['invalid-value'],
      [`ipam/${pool}/10.31.0.127`]: ['outside-ranges'],
      [`ipam/${pool}/10.31.0.200`]: ['outside-ranges'],
      [`ipam/${pool}/fd31:0:0:0:0:0:0:5`]: ['non-canonical-key'],
      [`ipam/${pool}/notes`]: ['invalid-key'],
    });
    const problems = json(run).pools[0].problems as Array<{ key: string; release: boolean; value: string | null; problems: Array<{ detail: string }> }>;
    assert.deepEqual(problems.filter((p) => p.release).map((p) => p.key).sort(), [`ipam/${pool}/${first}`, `ipam/${pool}/10.31.0.40`].sort());
    assert.match(problems.find((p) => p.key.endsWith(first))!.problems[0]!.detail, new RegExp(`dup eth0 on ${live} holds 2 addresses; ${second.replace(/\./g, '\\.')} is kept`));
    assert.equal(problems.find((p) => p.key.endsWith('/notes'))!.value, 'remember the milk');
    assert.match(problems.find((p) => p.key.endsWith('/10.31.0.200'))!.problems[0]!.detail, /outside every range/);
    assert.match(problems.find((p) => p.key.endsWith('/10.31.0.127'))!.problems[0]!.detail, /network or broadcast address/);
  });

  test('release frees the older duplicate and the broken value, nothing else', async () => {
    const before = await server.kv.keys(`ipam/${pool}/`);
    const run = await consulIpam('release', '--from-report', aged(path.join(scratch, 'kinds.json'), 11 * 60_000), '--yes');
    assertOk(run);
    assert.match(run.stdout, /^released 2 of 6; 4 left alone$/m);
    assert.match(run.stdout, /^not released ipam\/kinds\/notes: invalid-key: reported, never released$/m);
    const after = await server.kv.keys(`ipam/${pool}/`);
    assert.deepEqual(before.filter((key) => !after.includes(key)).sort(), [`ipam/${pool}/${first}`, `ipam/${pool}/10.31.0.40`].sort());
    assert.deepEqual(kinds(json(await consulIpam('check', pool, '--json')), pool), {
      [`ipam/${pool}/10.31.0.127`]: ['outside-ranges'],
      [`ipam/${pool}/10.31.0.200`]: ['outside-ranges'],
      [`ipam/${pool}/fd31:0:0:0:0:0:0:5`]: ['non-canonical-key'],
      [`ipam/${pool}/notes`]: ['invalid-key'],
    });
  });

  test('a pool whose hosts are none of the nodes: no host reported dead, and the note says why', async () => {
    assertOk(await consulIpam('pool', 'set', 'elsewhere', '--range', '10.32.0.0/24'));
    await server.kv.put('ipam/elsewhere/10.32.0.5', { target: 'x', ifname: 'eth0', host: 'h5.other-naming' });
    const run = await consulIpam('check', 'elsewhere');
    assertOk(run);
    assert.match(run.stdout, /^pool elsewhere: 254 addresses, 1 allocated, 253 free; no problems$/m);
    assert.match(run.stdout, /^ {2}note: no host reported dead: none of the 1 host recorded in pool elsewhere \(h5\.other-naming\) is a node of the Consul cluster/m);
  });

  test('check without POOL checks every pool; a named pool that does not exist fails', async () => {
    const all = json(await consulIpam('check', '--json'));
    assert.deepEqual(all.pools.map((p: { name: string }) => p.name), ['elsewhere', 'kinds', 'leak']);
    assertFailure(await consulIpam('check', 'kinds', 'nope'), 1, /pool nope does not exist/);
  });
});

describe('pool list --prometheus', () => {
  test('size, allocated and free per pool, as pool list --json counts them', async () => {
    await server.kv.put('ipam/broken', '[]');
    const run = await consulIpam('pool', 'list', '--prometheus');
    assertOk(run);
    assert.ok(run.stdout.endsWith('\n'));
    const samples = new Map(run.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => [l.split(' ')[0]!, l.split(' ')[1]!]));
    const listed = json(await consulIpam('pool', 'list', '--json')) as Array<{ name: string; size?: string; allocated: number; free?: string }>;
    for (const pool of listed) {
      assert.equal(samples.get(`consul_ipam_pool_allocated_addresses{pool="${pool.name}"}`), String(pool.allocated));
      assert.equal(samples.get(`consul_ipam_pool_size_addresses{pool="${pool.name}"}`), pool.size);
      assert.equal(samples.get(`consul_ipam_pool_free_addresses{pool="${pool.name}"}`), pool.free);
      assert.equal(samples.get(`consul_ipam_pool_valid{pool="${pool.name}"}`), pool.size === undefined ? '0' : '1');
    }
    assert.equal(samples.get('consul_ipam_pool_size_addresses{pool="kinds"}'), String(21 + 255));
    assert.match(run.stdout, /^# HELP consul_ipam_pool_free_addresses .+\n# TYPE consul_ipam_pool_free_addresses gauge$/m);
  });
});

describe('consul-ipam check and release: usage errors', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['a pool name the plugin cannot use', ['check', 'a/b'], /pool name "a\/b" is not valid/],
    ['-o without a file', ['check', '-o', ''], /-o needs a file name/],
    ['a --grace without a unit', ['release', '--from-report', 'r.json', '--grace', '10'], /--grace "10" is not a duration/],
    ['--yes without --from-report', ['release', 'web', '10.0.0.1', '--yes'], /--yes does not apply to release/],
    ['arguments with --from-report', ['release', '--from-report', 'r.json', 'web'], /release --from-report: unexpected argument "web"/],
    ['--prometheus with --json', ['pool', 'list', '--prometheus', '--json'], /--prometheus and --json/],
  ];
  for (const [label, argv, message] of cases) {
    test(label, async () => {
      const run = await consulIpam(...argv);
      assert.equal(run.code, 2, show(run));
      assert.match(run.stderr, message);
    });
  }

  test('a file that is not a report, or names a key outside its pool, is refused before anything is deleted', async () => {
    const missing = await consulIpam('release', '--from-report', path.join(scratch, 'none.json'), '--yes');
    assertFailure(missing, 1, /cannot read the report .*none\.json/);
    const forged = path.join(scratch, 'forged.json');
    const report = JSON.parse(readFileSync(path.join(scratch, 'kinds.json'), 'utf8'));
    report.createdAt = '2000-01-01T00:00:00.000Z';
    report.pools[0].problems[0] = { ...report.pools[0].problems[0], key: 'ipam/kinds', problems: [{ kind: 'invalid-value', detail: '' }] };
    writeFileSync(forged, JSON.stringify(report));
    // Through a port where nothing listens: the report is refused before any request is tried.
    const run = await execute(cli, ['--consul', await closedPortUrl(), 'release', '--from-report', forged, '--yes']);
    assertFailure(run, 1, /forged\.json is not a report of consul-ipam check: key "ipam\/kinds" is not an allocation key of pool kinds/);
    assert.notEqual(await server.kv.get('ipam/kinds'), undefined);
  });
});

describe('consul-ipam check with ACLs', () => {
  const master = '5f0c7a2e-8d1b-4c3a-9e2f-6b7a8c9d0e1f';
  let secured: ConsulAgent;

  before(async () => {
    secured = await startConsul({ aclMasterToken: master });
  });
  after(async () => {
    await secured?.stop();
  });

  test('a token that may not read the catalog sees no node: no host is reported dead, and the note says why', async () => {
    const kvOnly = await createToken(secured.url, master, 'kv-only', 'key_prefix "ipam/" { policy = "read" }');
    const withNodes = await createToken(secured.url, master, 'kv-and-nodes', 'key_prefix "ipam/" { policy = "read" } node_prefix "" { policy = "read" }');
    await secured.kv.put('ipam/acl', [{ subnet: '10.40.0.0/24' }]);
    await secured.kv.put('ipam/acl/10.40.0.5', { target: 'c1', ifname: 'eth0', host: live });
    await secured.kv.put('ipam/acl/10.40.0.6', { target: 'c2', ifname: 'eth0', host: 'gone' });

    const blind = await execute(cli, ['--consul', secured.url, '--token', kvOnly, 'check', '--json']);
    assertOk(blind);
    assert.deepEqual([json(blind).nodes, kinds(json(blind), 'acl')], [[], {}]);
    assert.match(json(blind).pools[0].notes[0], /no host reported dead: none of the 2 hosts .* \(the catalog lists 0 nodes\), .*node:read/);

    const seeing = await execute(cli, ['--consul', secured.url, '--token', withNodes, 'check', '--json']);
    assertOk(seeing);
    assert.deepEqual(kinds(json(seeing), 'acl'), { 'ipam/acl/10.40.0.6': ['dead-host'] });
  });
});
