// ADD, as a runtime runs it through ipam-delegated, against a real Consul: which address is handed out
// (next free, round robin, ranges, IPv6, static IPs), what the result looks like per cniVersion, what is
// written to KV, server fail-over, concurrency, and the verbose flavour's log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { homePosition } from '../../src/services/contention';
import { addressAt, normalizeRange, poolSpan, positionOf } from '../../src/services/ip-math';
import { useConsul } from '../support/consul';
import {
  addressOf,
  allocationKeys,
  assertCniError,
  assertSuccess,
  closedPortUrl,
  describeRun,
  putPool,
  runPlugin,
  scenario,
  snapshotKv,
  startHungServer,
  startTripwire,
  tempDir,
  packageVersion,
  type Scenario,
} from '../support/plugin';

const agent = useConsul();
const T = { timeout: 30_000 };

/** Runs ADD for a container of the scenario and returns the run. */
function add(s: Scenario, containerId: string, more: Parameters<Scenario['config']>[0] = {}, ifname = 'eth0', env: Record<string, string> = {}) {
  return runPlugin({ command: 'ADD', containerId, ifname, config: s.config(more), env });
}

/** Runs ADD and returns the single address it handed out (without prefix). */
async function addAddress(s: Scenario, containerId: string, more: Parameters<Scenario['config']>[0] = {}, ifname = 'eth0'): Promise<string> {
  const result = assertSuccess(await add(s, containerId, more, ifname));
  assert.equal(result.ips.length, 1, JSON.stringify(result));
  return addressOf(result.ips[0].address);
}

test('ADD hands out the next free address in order, skipping the network address, the gateway, taken keys and the broadcast', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.10.0.0/29', gateway: '10.10.0.1' }]);
  await agent.kv.put(`ipam/${s.pool}/10.10.0.3`, { target: 'someone-else' });

  const first = assertSuccess(await add(s, 'c1'));
  assert.deepEqual(first, {
    cniVersion: '1.0.0',
    ips: [{ address: '10.10.0.2/29', gateway: '10.10.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.10.0.1' }],
    dns: {},
  });
  assert.equal(await addAddress(s, 'c2'), '10.10.0.4');
  assert.equal(await addAddress(s, 'c3'), '10.10.0.5');
  assert.equal(await addAddress(s, 'c4'), '10.10.0.6');
  // .7 is the broadcast address: the pool is full now.
  assertCniError(await add(s, 'c5'), 104, '1.0.0');

  assert.deepEqual(await allocationKeys(agent.kv, s.pool), ['2', '3', '4', '5', '6'].map((n) => `ipam/${s.pool}/10.10.0.${n}`));
  assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/10.10.0.3`), { target: 'someone-else' }, 'a taken key is left as it was');
  for (const [n, c] of [['2', 'c1'], ['4', 'c2'], ['5', 'c3'], ['6', 'c4']] as const) {
    assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.10.0.${n}`))?.target, c);
  }
});

test('ADD: without rangeStart and rangeEnd the whole subnet but the network and broadcast addresses is used', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.11.0.0/30' }]);
  const first = assertSuccess(await add(s, 'c1'));
  assert.deepEqual(first, { cniVersion: '1.0.0', ips: [{ address: '10.11.0.1/30' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} }, 'no gateway: no gateway field, a default route without gw, as the original');
  assert.equal(await addAddress(s, 'c2'), '10.11.0.2');
  assertCniError(await add(s, 'c3'), 104, '1.0.0');
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.11.0.1`, `ipam/${s.pool}/10.11.0.2`]);
});

test('ADD: rangeStart and rangeEnd bound the addresses handed out', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.11.1.0/24', rangeStart: '10.11.1.100', rangeEnd: '10.11.1.101', gateway: '10.11.1.1' }]);
  assert.equal(await addAddress(s, 'c1'), '10.11.1.100');
  assert.equal(await addAddress(s, 'c2'), '10.11.1.101');
  assertCniError(await add(s, 'c3'), 104, '1.0.0');
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.11.1.100`, `ipam/${s.pool}/10.11.1.101`]);
});

test('ADD: several ranges are used in order, each result with its own prefix and gateway', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [
    { subnet: '10.12.0.0/30', gateway: '10.12.0.1' },
    { subnet: '10.12.1.0/29', rangeStart: '10.12.1.5' },
  ]);
  assert.deepEqual(assertSuccess(await add(s, 'c1')), {
    cniVersion: '1.0.0',
    ips: [{ address: '10.12.0.2/30', gateway: '10.12.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.12.0.1' }],
    dns: {},
  });
  assert.deepEqual(assertSuccess(await add(s, 'c2')), { cniVersion: '1.0.0', ips: [{ address: '10.12.1.5/29' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  assert.equal(await addAddress(s, 'c3'), '10.12.1.6');
  assertCniError(await add(s, 'c4'), 104, '1.0.0');
});

test('ADD: an IPv6 pool gives RFC 5952 addresses, and the key is the canonical text', T, async () => {
  const s = scenario([agent.url]);
  // rangeEnd keeps the range under the size from which hosts start at a home of their own: from rangeStart here.
  await putPool(agent.kv, s.pool, [{ subnet: 'FD00:0:0:7:0::/64', rangeStart: 'fd00:0000:0:7::000A', rangeEnd: 'fd00:0:0:7::3ff', gateway: 'FD00:0:0:7::1' }]);
  assert.deepEqual(assertSuccess(await add(s, 'c1')), {
    cniVersion: '1.0.0',
    ips: [{ address: 'fd00:0:0:7::a/64', gateway: 'fd00:0:0:7::1' }],
    routes: [{ dst: '::/0', gw: 'fd00:0:0:7::1' }],
    dns: {},
  });
  assert.equal(await addAddress(s, 'c2'), 'fd00:0:0:7::b');
  // A static IP in a non-canonical spelling lands on the canonical key.
  assert.equal(await addAddress(s, 'c3', { requestedIp: 'FD00:0:0:7:0:0:0:FF' }), 'fd00:0:0:7::ff');
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), ['a', 'b', 'ff'].map((h) => `ipam/${s.pool}/fd00:0:0:7::${h}`));
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/fd00:0:0:7::ff`))?.target, 'c3');
});

test('ADD: in a /48 IPv6 pool a host with no hint starts at its home, found without walking the subnet', T, async () => {
  const s = scenario([agent.url]);
  const definition = [{ subnet: 'fd00:48::/48' }];
  await putPool(agent.kv, s.pool, definition);
  const run = await add(s, 'c1');
  // The home of this host (ipam.host_id defaults to the hostname): a position hashed from host_id, 2^80 wide.
  const ranges = definition.map((d) => normalizeRange(d));
  const home = addressAt(ranges, homePosition(hostname(), poolSpan(ranges)))!;
  assert.deepEqual(assertSuccess(run), { cniVersion: '1.0.0', ips: [{ address: `${home}/48` }], routes: [{ dst: '::/0' }], dns: {} });
  assert.equal(await addAddress(s, 'c2'), addressAt(ranges, positionOf(ranges, home)! + 1n));
  assert.ok(run.elapsedMs < 3000, `a /48 pool must allocate quickly (${run.elapsedMs} ms)`);
});

test('ADD: /31 and /32 ranges use every address (no network or broadcast address to skip)', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.12.2.0/31' }, { subnet: '10.12.3.7/32' }]);
  assert.deepEqual(assertSuccess(await add(s, 'c1')).ips, [{ address: '10.12.2.0/31' }]);
  assert.deepEqual(assertSuccess(await add(s, 'c2')).ips, [{ address: '10.12.2.1/31' }]);
  assert.deepEqual(assertSuccess(await add(s, 'c3')).ips, [{ address: '10.12.3.7/32' }]);
  assertCniError(await add(s, 'c4'), 104, '1.0.0');
});

test('ADD in a crowded pool: a host with no hint finds the first free address after 200 taken ones', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.24.0.0/24' }]);
  await agent.kv.put(`ipam/${s.pool}/`, '');
  // 200 allocations from the start of the range, made by others, written in transactions of 50.
  for (let batch = 0; batch < 4; batch++) {
    const ops = Array.from({ length: 50 }, (_, i) => ({
      KV: { Verb: 'set', Key: `ipam/${s.pool}/10.24.0.${batch * 50 + i + 1}`, Value: Buffer.from(JSON.stringify({ target: `other-${batch * 50 + i}` })).toString('base64') },
    }));
    const res = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
    assert.equal(res.status, 200, await res.text());
  }
  assert.equal(await addAddress(s, 'c1'), '10.24.0.201');
  assert.equal(await addAddress(s, 'c2'), '10.24.0.202');
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, 202);
});

test('ADD is round robin: a released address is not handed straight out again, and the search wraps at the end', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.13.0.0/29', gateway: '10.13.0.1' }]); // usable: .2 to .6
  const first = assertSuccess(await add(s, 'c1'));
  assert.equal(addressOf(first.ips[0].address), '10.13.0.2');
  assert.equal(await addAddress(s, 'c2'), '10.13.0.3');
  assertSuccess(await runPlugin({ command: 'DEL', containerId: 'c1', config: s.config({ ips: first.ips }) }));
  assert.equal(await agent.kv.get(`ipam/${s.pool}/10.13.0.2`), undefined, 'DEL released .2');

  assert.equal(await addAddress(s, 'c3'), '10.13.0.4', 'the address just released (.2) is not reused at once');
  assert.equal(await addAddress(s, 'c4'), '10.13.0.5');
  assert.equal(await addAddress(s, 'c5'), '10.13.0.6');
  assert.equal(await addAddress(s, 'c6'), '10.13.0.2', 'after the end of the range the search wraps to its start');
  assertCniError(await add(s, 'c7'), 104, '1.0.0');
});

test('ADD: a pool deleted and made again starts round robin afresh (the host hint is tied to the pool key)', T, async () => {
  const s = scenario([agent.url]);
  const ranges = [{ subnet: '10.13.1.0/29' }];
  await putPool(agent.kv, s.pool, ranges);
  assert.equal(await addAddress(s, 'c1'), '10.13.1.1');
  assert.equal(await addAddress(s, 'c2'), '10.13.1.2');
  await agent.kv.deleteTree(`ipam/${s.pool}`);
  await putPool(agent.kv, s.pool, ranges);
  assert.equal(await addAddress(s, 'c3'), '10.13.1.1', 'the old hint (.2) does not apply to the new pool');
});

test('ADD uses the first of several pools, and warns on stderr about the others', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.13.2.0/24' }]);
  await putPool(agent.kv, `${s.pool}-second`, [{ subnet: '10.13.3.0/24' }]);
  const config = s.config();
  config.prevResult.pools.push({ name: `${s.pool}-second` });
  const run = await runPlugin({ command: 'ADD', containerId: 'c1', config });
  assert.equal(assertSuccess(run).ips[0].address, '10.13.2.1/24');
  assert.match(run.stderr, /WARN/, `a warning on stderr\n${describeRun(run)}`);
  assert.ok(run.stderr.includes(s.pool), `naming the pool used\n${describeRun(run)}`);
  assert.deepEqual(await allocationKeys(agent.kv, `${s.pool}-second`), []);
});

test('ADD repeated for the same container and interface returns the same address and writes nothing', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.14.0.0/24', gateway: '10.14.0.1' }]);
  const first = assertSuccess(await add(s, 'c1'));
  const before = await snapshotKv(agent);
  const again = assertSuccess(await add(s, 'c1'));
  assert.deepEqual(again, first);
  assert.deepEqual(await snapshotKv(agent), before, 'no key added or rewritten');
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${addressOf(first.ips[0].address)}`]);
});

test('ADD for the same container on another interface gets another address', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.15.0.0/24' }]);
  const eth0 = await addAddress(s, 'c1', {}, 'eth0');
  const eth1 = await addAddress(s, 'c1', {}, 'eth1');
  assert.notEqual(eth0, eth1);
  assert.equal(await addAddress(s, 'c1', {}, 'eth1'), eth1, 'and a repeated ADD on eth1 keeps it');
  assert.deepEqual((await agent.kv.getJson<{ ifname: string }>(`ipam/${s.pool}/${eth0}`))?.ifname, 'eth0');
  assert.deepEqual((await agent.kv.getJson<{ ifname: string }>(`ipam/${s.pool}/${eth1}`))?.ifname, 'eth1');
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, 2);
});

test('ADD with requested-ip writes it unconditionally, even when another container holds it', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.16.0.0/24', rangeStart: '10.16.0.100', rangeEnd: '10.16.0.150', gateway: '10.16.0.1' }]);
  assert.equal(await addAddress(s, 'c1'), '10.16.0.100');

  const taken = assertSuccess(await add(s, 'c2', { requestedIp: '10.16.0.100' }));
  assert.deepEqual(taken, {
    cniVersion: '1.0.0',
    ips: [{ address: '10.16.0.100/24', gateway: '10.16.0.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.16.0.1' }],
    dns: {},
  });
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.16.0.100`))?.target, 'c2', 're-allocated to c2');

  // The snake_case spelling (the original's code and its Nomad selector) works the same.
  assert.equal(await addAddress(s, 'c3', { requestedIpSnake: '10.16.0.100' }), '10.16.0.100');
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.16.0.100`))?.target, 'c3');

  // Static IPs usually live outside rangeStart..rangeEnd: anywhere in the subnet is fine.
  assert.equal(await addAddress(s, 'c4', { requestedIp: '10.16.0.7' }), '10.16.0.7');
  // Both spellings, equal: accepted.
  assert.equal(await addAddress(s, 'c5', { requestedIp: '10.16.0.8', requestedIpSnake: '10.16.0.8' }), '10.16.0.8');
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), ['100', '7', '8'].map((n) => `ipam/${s.pool}/10.16.0.${n}`));
});

for (const cniVersion of ['0.4.0', '1.0.0', '1.1.0']) {
  test(`ADD result format for cniVersion ${cniVersion}`, T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.17.0.0/24', gateway: '10.17.0.1' }, { subnet: 'fd00:17::/64', gateway: 'fd00:17::1' }]);
    const v4 = assertSuccess(await add(s, 'c1', { cniVersion }));
    const v6 = assertSuccess(await add(s, 'c2', { cniVersion, requestedIp: 'fd00:17::5' }));
    // 0.4.0 results name each address's family; 1.0.0 dropped the field.
    const version = (family: string) => (cniVersion === '0.4.0' ? { version: family } : {});
    assert.deepEqual(v4, {
      cniVersion,
      ips: [{ ...version('4'), address: '10.17.0.2/24', gateway: '10.17.0.1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.17.0.1' }],
      dns: {},
    });
    assert.deepEqual(v6, {
      cniVersion,
      ips: [{ ...version('6'), address: 'fd00:17::5/64', gateway: 'fd00:17::1' }],
      routes: [{ dst: '::/0', gw: 'fd00:17::1' }],
      dns: {},
    });
  });
}

test('ADD: a dead, a hung and a failing first server are passed over, the next one is used', T, async () => {
  const hung = await startHungServer();
  const failing = await startTripwire(); // answers 500 to everything
  try {
    const dead = await closedPortUrl();
    const s = scenario([dead, hung.url, failing.url, agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.18.0.0/24' }]);
    const run = await runPlugin({
      command: 'ADD',
      containerId: 'c1',
      config: s.config({ ipam: { connect_timeout_ms: 300, request_timeout_ms: 500 } }),
    });
    assert.equal(addressOf(assertSuccess(run).ips[0].address), '10.18.0.1');
    assert.ok(run.elapsedMs < 3000, `fail-over must be bounded by the timeouts\n${describeRun(run)}`);
    assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.18.0.1`]);
    assert.ok(failing.requests.length >= 1, 'the failing server was tried');
    assert.ok(failing.requests.every((r) => !r.startsWith('PUT')), `nothing was written to the failing server: ${failing.requests.join(', ')}`);
  } finally {
    await Promise.all([hung.close(), failing.close()]);
  }
});

test('ADD writes {target, ifname, host, network}: the container ID, the interface, the host (ipam.host_id, else the hostname) and the network\'s name', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.19.0.0/24' }]);
  assertSuccess(await add(s, 'alloc-7f3a', { ipam: { host_id: 'host-a' } }, 'eth3'));
  assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/10.19.0.1`), { target: 'alloc-7f3a', ifname: 'eth3', host: 'host-a', network: 'test-net' });
  // Without ipam.host_id the host is the machine's hostname.
  assertSuccess(await add(s, 'alloc-8b4c'));
  assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/10.19.0.2`), { target: 'alloc-8b4c', ifname: 'eth0', host: hostname(), network: 'test-net' });
  // A name the spec does not allow is not recorded (no GC could match it): no network, and ADD says so.
  const unnamed = await runPlugin({ command: 'ADD', containerId: 'alloc-9c5d', config: { ...s.config(), name: 'not a/name' } });
  assertSuccess(unnamed);
  assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/10.19.0.3`), { target: 'alloc-9c5d', ifname: 'eth0', host: hostname() });
  assert.match(unnamed.stderr, /no valid name: GC will never release ipam\/.*\/10\.19\.0\.3/);
});

test('ADD: CNI_ARGS with unknown keys (as Nomad sends them) is accepted', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.20.0.0/24' }]);
  const run = await add(s, 'c1', {}, 'eth0', {
    CNI_ARGS: 'IgnoreUnknown=true;NOMAD_REGION=global;NOMAD_NAMESPACE=default;NOMAD_JOB_ID=x;NOMAD_GROUP_NAME=g;NOMAD_ALLOC_ID=c1',
  });
  assert.equal(addressOf(assertSuccess(run).ips[0].address), '10.20.0.1');
});

test('ADD storm: 30 processes at once on one pool, from 3 hosts, all succeed with 30 distinct addresses', { timeout: 60_000 }, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.21.0.0/24', gateway: '10.21.0.1' }]);
  const hosts = [s.dataDir, tempDir(), tempDir()];
  const containers = Array.from({ length: 30 }, (_, i) => `storm-${i}`);
  const runs = await Promise.all(
    containers.map((containerId, i) =>
      runPlugin({
        command: 'ADD',
        containerId,
        config: s.config({ dataDir: hosts[i % 3], ipam: { host_id: `host-${i % 3}` } }),
        timeoutMs: 45_000,
      }),
    ),
  );
  const addresses = runs.map((run) => addressOf(assertSuccess(run).ips[0].address));
  assert.equal(new Set(addresses).size, 30, `no address given twice: ${addresses.join(' ')}`);
  const keys = await allocationKeys(agent.kv, s.pool);
  assert.equal(keys.length, 30, keys.join(' '));
  for (const [i, address] of addresses.entries()) {
    assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/${address}`), { target: containers[i], ifname: 'eth0', host: `host-${i % 3}`, network: 'test-net' });
  }
});

test('verbose flavour: logs the version and the machine states to the log file, and only the result to stdout', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.22.0.0/24' }]);
  const logFile = path.join(tempDir(), 'nested', 'ipam-da-consul.log');
  const run = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config(), flavour: 'verbose', env: { IPAM_DA_CONSUL_LOG_FILE: logFile } });
  const result = assertSuccess(run);
  assert.deepEqual(result, { cniVersion: '1.0.0', ips: [{ address: '10.22.0.1/24' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  assert.equal(run.stdout, `${JSON.stringify(result)}\n`, 'nothing but the result on stdout');
  assert.ok(existsSync(logFile), `the verbose flavour writes ${logFile}`);
  const log = readFileSync(logFile, 'utf8');
  assert.ok(log.includes(`v${packageVersion}`), `the version is logged:\n${log}`);
  assert.match(log, /DEBUG/, 'at debug level');
  for (const state of ['parsing', 'pickingServer', 'loadingPools', 'choosingIp', 'claimingIp', 'succeeded']) {
    assert.ok(log.includes(`add: "${state}"`), `the machine's state ${state} is logged:\n${log}`);
  }
  assert.match(log, new RegExp(`ipam/${s.pool}\\S* -> 200`), `Consul requests and their outcome are logged:\n${log}`);
});

test('verbose flavour: a log file that cannot be opened does not break ADD (result on stdout, no stack trace)', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.22.1.0/24' }]);
  const notADir = path.join(tempDir(), 'a-file');
  writeFileSync(notADir, '');
  const run = await runPlugin({
    command: 'ADD',
    containerId: 'c1',
    config: s.config(),
    flavour: 'verbose',
    env: { IPAM_DA_CONSUL_LOG_FILE: path.join(notADir, 'ipam-da-consul.log') },
  });
  assert.deepEqual(assertSuccess(run), { cniVersion: '1.0.0', ips: [{ address: '10.22.1.1/24' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.22.1.1`]);
});

test('ADD succeeds when the host data folder cannot be written: the hints are hints, Consul decides', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.22.2.0/24' }]);
  const notADir = path.join(tempDir(), 'a-file');
  writeFileSync(notADir, '');
  const run = await add(s, 'c1', { dataDir: path.join(notADir, 'data') });
  assert.deepEqual(assertSuccess(run), { cniVersion: '1.0.0', ips: [{ address: '10.22.2.1/24' }], routes: [{ dst: '0.0.0.0/0' }], dns: {} });
  assert.match(run.stderr, /WARN/, `the failure to write the hint is reported\n${describeRun(run)}`);
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.22.2.1`]);
});

test('standard flavour: no log file, nothing on stderr on success', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.23.0.0/24' }]);
  const logFile = path.join(tempDir(), 'ipam-da-consul.log');
  const run = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config(), env: { IPAM_DA_CONSUL_LOG_FILE: logFile } });
  assertSuccess(run);
  assert.equal(run.stderr, '');
  assert.equal(existsSync(logFile), false, 'the standard flavour does not log to a file');
});

test('ADD serves a pool the original serves (host bits, a gateway outside the subnet), with one warning naming the key', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.23.0.9/29', gateway: '10.23.9.1' }]);
  const run = await add(s, 'c1');
  assert.deepEqual(assertSuccess(run), { cniVersion: '1.0.0', ips: [{ address: '10.23.0.9/29', gateway: '10.23.9.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.23.9.1' }], dns: {} });
  const warnings = run.stderr.split('\n').filter((line) => / WARN /.test(line));
  assert.equal(warnings.length, 1, run.stderr);
  assert.match(warnings[0]!, new RegExp(`pool key ipam/${s.pool} is served as the original serves it.*host bits set.*gateway 10\\.23\\.9\\.1 is not an address of subnet 10\\.23\\.0\\.8/29`));
});

test('ADD on a pool of overlapping ranges hands out each address once, then reports it full', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.24.0.0/29' }, { subnet: '10.24.0.0/30' }, { subnet: '10.24.0.4/30', rangeStart: '10.24.0.4', rangeEnd: '10.24.0.7' }]);
  const given: string[] = [];
  // .7, the /29's broadcast address, is never given (nor .0); each other address exactly once.
  for (let i = 0; i < 6; i++) given.push(await addAddress(s, `c${i}`));
  assert.deepEqual([...given].sort(), ['10.24.0.1', '10.24.0.2', '10.24.0.3', '10.24.0.4', '10.24.0.5', '10.24.0.6'], given.join(' '));
  assertCniError(await add(s, 'c-full'), 104, '1.0.0');
});

test('ADD on a pool key holding [] reports the pool full (104), as the original', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, '[]');
  const error = assertCniError(await add(s, 'c1'), 104, '1.0.0');
  assert.match(`${error.msg} ${error.details}`, /holds no IP Ranges/);
});
