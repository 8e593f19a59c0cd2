// Several pools against a real Consul, through the built executable: ipam.all_pools takes one address from each
// (an IPv4 and an IPv6 pool), all-or-nothing; DEL and CHECK cover every pool prevResult.pools lists, so an
// address ADD took from a pool IPAM_POOL picked is released by a DEL that carries no CNI_ARGS (Nomad's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useConsul } from '../support/consul';
import { addressOf, allocationKeys, assertCniError, assertSuccess, describeRun, expectCniErrorWithoutWrites, freshPoolName, netConfig, putPool, runPlugin, tempDir } from '../support/plugin';

const agent = useConsul();
const T = { timeout: 30_000 };

/** An IPv4 and an IPv6 pool, and configs listing both (in that order) for one host. */
async function dualStack(v6Range: { subnet: string; rangeStart?: string; rangeEnd?: string; gateway?: string } = { subnet: 'fd00:31::/64', gateway: 'fd00:31::1' }) {
  const v4 = freshPoolName('v4');
  const v6 = freshPoolName('v6');
  await putPool(agent.kv, v4, [{ subnet: '10.31.0.0/24', gateway: '10.31.0.1' }]);
  await putPool(agent.kv, v6, [v6Range]);
  const dataDir = tempDir('ipam-da-consul-data-');
  const config = (options: { ips?: Array<{ address: string }>; allPools?: boolean } = {}) => {
    const base = netConfig({ servers: [agent.url], pool: v4, dataDir, ...(options.ips ? { ips: options.ips } : {}), ipam: { all_pools: options.allPools ?? true } });
    return { ...base, prevResult: { ...base.prevResult, pools: [{ name: v4 }, { name: v6 }] } };
  };
  return { v4, v6, dataDir, config };
}

/** The addresses of a result, without their prefix. */
const addresses = (result: { ips: Array<{ address: string }> }): string[] => result.ips.map((ip) => addressOf(ip.address));

const targets = async (pool: string) =>
  Promise.all((await allocationKeys(agent.kv, pool)).map(async (key) => [key.split('/').pop(), (await agent.kv.getJson<{ target: string }>(key))?.target]));

test('all_pools: ADD takes one address from each pool with a default route each; ADD again returns the same; CHECK passes; DEL without ips releases both', T, async () => {
  const s = await dualStack();
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds1', config: s.config() }));
  // Where in a pool the search starts is this host's business (its home): the addresses are read from the result.
  const [v4, v6] = addresses(added);
  assert.match(v4!, /^10\.31\.0\.\d+$/);
  assert.match(v6!, /^fd00:31::[0-9a-f:]+$/);
  assert.deepEqual(
    added.ips.map((ip: { gateway: string }) => ip.gateway),
    ['10.31.0.1', 'fd00:31::1'],
  );
  assert.deepEqual(added.routes, [
    { dst: '0.0.0.0/0', gw: '10.31.0.1' },
    { dst: '::/0', gw: 'fd00:31::1' },
  ]);
  assert.deepEqual(await targets(s.v4), [[v4, 'ds1']]);
  assert.deepEqual(await targets(s.v6), [[v6, 'ds1']]);

  // Nomad's retry: ADD again without DEL gives the same two addresses, and takes nothing more.
  assert.deepEqual(assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds1', config: s.config() })).ips, added.ips);
  assert.equal((await allocationKeys(agent.kv, s.v6)).length, 1);

  const checked = assertSuccess(await runPlugin({ command: 'CHECK', containerId: 'ds1', config: s.config({ ips: added.ips }) }));
  assert.deepEqual(checked.ips, added.ips);

  // A DEL from another host, with libcni's cache gone: no ips, no note; each pool is searched.
  const elsewhere = netConfig({ servers: [agent.url], pool: s.v4, dataDir: tempDir(), ipam: { all_pools: true } });
  const run = await runPlugin({ command: 'DEL', containerId: 'ds1', config: { ...elsewhere, prevResult: { ...elsewhere.prevResult, pools: [{ name: s.v4 }, { name: s.v6 }] } } });
  assertSuccess(run);
  assert.deepEqual([...(await allocationKeys(agent.kv, s.v4)), ...(await allocationKeys(agent.kv, s.v6))], [], describeRun(run));
});

test('all_pools: when the IPv6 pool is full, the IPv4 address this ADD took is released and the error is 104', T, async () => {
  const s = await dualStack({ subnet: 'fd00:32::/120', rangeStart: 'fd00:32::5', rangeEnd: 'fd00:32::5' });
  await agent.kv.put(`ipam/${s.v6}/fd00:32::5`, { target: 'someone-else', ifname: 'eth0' });
  const error = assertCniError(await runPlugin({ command: 'ADD', containerId: 'ds2', config: s.config() }), 104);
  assert.match(error.msg, new RegExp(`pool ${s.v6} is full`));
  assert.deepEqual(await allocationKeys(agent.kv, s.v4), []);
  assert.deepEqual(await targets(s.v6), [['fd00:32::5', 'someone-else']]);
});

test('all_pools: CNI_ARGS IP= goes to the pool whose subnet holds it; the other pool hands out the next free address', T, async () => {
  const s = await dualStack();
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds3', config: s.config(), env: { CNI_ARGS: 'IgnoreUnknown=1;IP=fd00:31::50' } }));
  assert.match(added.ips[0].address, /^10\.31\.0\.\d+\/24$/);
  assert.equal(added.ips[1].address, 'fd00:31::50/64');
  assert.deepEqual(await targets(s.v6), [['fd00:31::50', 'ds3']]);
});

test('all_pools: an IP= that no pool holds is 103, nothing written', T, async () => {
  const s = await dualStack();
  const error = await expectCniErrorWithoutWrites(agent, 103, '1.0.0', () => runPlugin({ command: 'ADD', containerId: 'ds4', config: s.config(), env: { CNI_ARGS: 'IP=10.99.0.5' } }));
  assert.match(error.msg, /requested IP 10\.99\.0\.5 fits none of the pools/);
  assert.match(error.details ?? '', /10\.31\.0\.0\/24, fd00:31::\/64/);
});

test('without all_pools: only the first selected pool; a DEL with no CNI_ARGS releases what IPAM_POOL picked from the second', T, async () => {
  const s = await dualStack();
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds5', config: s.config({ allPools: false }), env: { CNI_ARGS: `IPAM_POOL=${s.v6}` } }));
  assert.equal(added.ips.length, 1);
  assert.match(added.ips[0].address, /^fd00:31::[0-9a-f:]+\/64$/);
  assert.deepEqual(await allocationKeys(agent.kv, s.v4), []);
  // Nomad's DEL: no CNI_ARGS; the cached result names the address.
  assertSuccess(await runPlugin({ command: 'DEL', containerId: 'ds5', config: s.config({ allPools: false, ips: added.ips }) }));
  assert.deepEqual(await allocationKeys(agent.kv, s.v6), []);
});

test('CHECK verifies each address in the pool holding it: a lost IPv6 allocation is 108 naming it', T, async () => {
  const s = await dualStack();
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds6', config: s.config() }));
  const [v4, v6] = addresses(added);
  await agent.kv.put(`ipam/${s.v6}/${v6}`, { target: 'intruder', ifname: 'eth0' });
  const error = assertCniError(await runPlugin({ command: 'CHECK', containerId: 'ds6', config: s.config({ ips: added.ips }) }), 108);
  assert.ok((error.details ?? '').includes(`${v6} is allocated to intruder`), error.details);
  assert.ok(!(error.details ?? '').includes(v4!), error.details);
});

test('GC collects a stale dual-stack container in both pools, and keeps a live one in both', T, async () => {
  const s = await dualStack();
  const [live] = [addresses(assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds-live', config: s.config() })))];
  assertSuccess(await runPlugin({ command: 'ADD', containerId: 'ds-gone', config: s.config() }));
  const base = s.config();
  const gc = { ...base, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'ds-live', ifname: 'eth0' }], prevResult: { pools: base.prevResult.pools } };
  const run = await runPlugin({ command: 'GC', config: gc, env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined } });
  assert.equal(run.code, 0, describeRun(run));
  assert.deepEqual(await targets(s.v4), [[live![0], 'ds-live']]);
  assert.deepEqual(await targets(s.v6), [[live![1], 'ds-live']]);
});
