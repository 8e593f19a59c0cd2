// DEL against a real Consul: releases only this container's keys (named by prevResult.ips, or searched for),
// is idempotent, leaves a reallocated key alone, fails with 11 when Consul is unreachable, and always prints
// a JSON IPAM result (the delegation protocol's meta plugin treats empty output as a failure).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useConsul } from '../support/consul';
import {
  addressOf,
  allocationKeys,
  assertSuccess,
  closedPortUrl,
  describeRun,
  expectCniErrorWithoutWrites,
  putPool,
  runPlugin,
  scenario,
  snapshotKv,
  startHungServer,
  tempDir,
  type Scenario,
} from '../support/plugin';

const agent = useConsul();
const T = { timeout: 30_000 };

type More = Parameters<Scenario['config']>[0];

const del = (s: Scenario, containerId: string, more: More = {}, ifname = 'eth0') =>
  runPlugin({ command: 'DEL', containerId, ifname, config: s.config(more) });

/** Asserts DEL succeeded and printed the empty IPAM result in the config's version. */
function assertDelResult(run: Awaited<ReturnType<typeof del>>, cniVersion = '1.0.0'): void {
  assert.deepEqual(assertSuccess(run), { cniVersion, ips: [], routes: [], dns: {} }, describeRun(run));
}

test('DEL with prevResult.ips releases that key only', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.30.0.0/24', gateway: '10.30.0.1' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  assert.equal(added.ips[0].address, '10.30.0.2/24');
  assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c2', config: s.config() }));
  // An older allocation of c1, written as the original plugin writes them; prevResult does not name it.
  await agent.kv.put(`ipam/${s.pool}/10.30.0.9`, { target: 'c1' });

  // Another host (no note of c1) runs DEL with the runtime's cached result.
  assertDelResult(await del(s, 'c1', { ips: added.ips, dataDir: tempDir() }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.30.0.3`, `ipam/${s.pool}/10.30.0.9`]);
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.30.0.3`))?.target, 'c2');
});

test('DEL without prevResult.ips searches the pool for this container and interface', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.31.0.0/24' }]);
  await agent.kv.put(`ipam/${s.pool}/`, ''); // the folder key Consul's UI creates
  await agent.kv.put(`ipam/${s.pool}/10.31.0.5`, { target: 'c1' }); // written by the original: any interface
  await agent.kv.put(`ipam/${s.pool}/10.31.0.6`, { target: 'c1', ifname: 'eth0', host: 'h' });
  await agent.kv.put(`ipam/${s.pool}/10.31.0.7`, { target: 'c1', ifname: 'eth1', host: 'h' });
  await agent.kv.put(`ipam/${s.pool}/10.31.0.8`, { target: 'c2' });
  await agent.kv.put(`ipam/${s.pool}/10.31.0.9`, 'not an allocation'); // another container's broken key must not fail DEL

  assertDelResult(await del(s, 'c1'));
  assert.deepEqual(await agent.kv.keys(`ipam/${s.pool}/`), [`ipam/${s.pool}/`, ...['7', '8', '9'].map((n) => `ipam/${s.pool}/10.31.0.${n}`)]);
});

test('DEL without prevResult.ips finds the address through the host note left by ADD', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.32.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${addressOf(added.ips[0].address)}`]);
  assertDelResult(await del(s, 'c1'));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
});

test('DEL without prevResult.ips releases every allocation of the container, also one this host does not remember', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.32.1.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  // Another implementation (the original writes {"target"} only) gave the same container a second address.
  await agent.kv.put(`ipam/${s.pool}/10.32.1.200`, { target: 'c1' });
  await agent.kv.put(`ipam/${s.pool}/10.32.1.201`, { target: 'c2' });
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, 3, `ADD took ${added.ips[0].address}`);
  assertDelResult(await del(s, 'c1'));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.32.1.201`]);
});

test('DEL twice succeeds twice; DEL with nothing to release (or no such pool) succeeds', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.33.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  assertDelResult(await del(s, 'c1', { ips: added.ips }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
  assertDelResult(await del(s, 'c1', { ips: added.ips }));
  assertDelResult(await del(s, 'c1'));
  assertDelResult(await del(s, 'never-added'));
  assertDelResult(await runPlugin({ command: 'DEL', containerId: 'c1', config: s.config({ pool: `${s.pool}-missing` }) }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
});

test('DEL without CNI_NETNS (the namespace may be gone already) still releases', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.33.1.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  assertDelResult(await runPlugin({ command: 'DEL', containerId: 'c1', config: s.config({ ips: added.ips }), env: { CNI_NETNS: undefined } }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
});

test('DEL leaves alone a key reallocated to another container, and succeeds', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.34.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  const ip = addressOf(added.ips[0].address);
  assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c2', config: s.config({ requestedIp: ip }) }));
  const before = await snapshotKv(agent);
  // Same host (it still notes the address for c1), and the runtime's cached result names it too.
  assertDelResult(await del(s, 'c1', { ips: added.ips }));
  assert.deepEqual(await snapshotKv(agent), before, 'c2 keeps the address');
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${ip}`))?.target, 'c2');
});

test('DEL releases an IPv6 address named in a non-canonical spelling', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:35::/64' }]);
  await agent.kv.put(`ipam/${s.pool}/fd00:35::5`, { target: 'c1' });
  assertDelResult(await del(s, 'c1', { ips: [{ address: 'FD00:35:0:0::05/64' }] }));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
});

for (const cniVersion of ['0.4.0', '1.1.0']) {
  test(`DEL prints an empty IPAM result in cniVersion ${cniVersion}`, T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.36.0.0/24' }]);
    const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config({ cniVersion }) }));
    assertDelResult(await del(s, 'c1', { cniVersion, ips: added.ips }), cniVersion);
    assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
  });
}

test('DEL when no Consul server can be reached fails with 11 (so the runtime retries) and releases nothing', T, async () => {
  const hung = await startHungServer();
  try {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.37.0.0/24' }]);
    const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
    const unreachable = [await closedPortUrl(), hung.url];
    const error = await expectCniErrorWithoutWrites(agent, 11, '1.0.0', () =>
      runPlugin({
        command: 'DEL',
        containerId: 'c1',
        config: s.config({ servers: unreachable, ips: added.ips, ipam: { connect_timeout_ms: 300, request_timeout_ms: 500 } }),
      }),
    );
    for (const server of unreachable) assert.ok(`${error.msg} ${error.details}`.includes(server), `the error names ${server}: ${JSON.stringify(error)}`);
    assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/${addressOf(added.ips[0].address)}`]);
  } finally {
    await hung.close();
  }
});
