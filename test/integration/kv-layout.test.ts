// The KV layout, exactly as the seed describes it, both ways: a pool and allocations made by hand with plain
// HTTP PUTs (as an operator does with curl or the Consul UI) work with ADD, DEL and CHECK; and what the plugin
// writes reads back with plain HTTP GETs as the seed says: ipam/<pool>/<ip> holding {"target": "<container id>"}.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useConsul } from '../support/consul';
import { assertSuccess, freshPoolName, runPlugin, netConfig, tempDir } from '../support/plugin';

const agent = useConsul();
const T = { timeout: 30_000 };

/** `curl -X PUT --data <body> $CONSUL/v1/kv/<key>` */
async function curlPut(key: string, body: string): Promise<void> {
  const res = await fetch(`${agent.url}/v1/kv/${key}`, { method: 'PUT', body });
  assert.equal(res.status, 200, `PUT ${key}`);
  assert.equal((await res.text()).trim(), 'true', `PUT ${key} applied`);
}

/** `curl $CONSUL/v1/kv/<key>?raw`: the value as stored, or undefined when the key does not exist. */
async function curlGetRaw(key: string): Promise<string | undefined> {
  const res = await fetch(`${agent.url}/v1/kv/${key}?raw`);
  if (res.status === 404) return undefined;
  assert.equal(res.status, 200, `GET ${key}`);
  return res.text();
}

/** `curl $CONSUL/v1/kv/<prefix>?recurse`: every key with its raw value (null for a folder) and ModifyIndex. */
async function curlTree(prefix: string): Promise<Map<string, { value: string | null; modifyIndex: number }>> {
  const res = await fetch(`${agent.url}/v1/kv/${prefix}?recurse`);
  if (res.status === 404) return new Map();
  const entries = (await res.json()) as Array<{ Key: string; Value: string | null; ModifyIndex: number }>;
  return new Map(entries.map((e) => [e.Key, { value: e.Value === null ? null : Buffer.from(e.Value, 'base64').toString('utf8'), modifyIndex: e.ModifyIndex }]));
}

// The seed's own example range.
const seedRange = `[
  {
    "subnet": "10.0.20.0/23",
    "rangeStart": "10.0.21.100",
    "rangeEnd": "10.0.21.150",
    "gateway": "10.0.20.1"
  }
]`;

test('a pool and allocations made by hand as the seed shows work with ADD, CHECK and DEL, and what the plugin writes reads back as the seed says', T, async () => {
  const pool = freshPoolName('seed');
  const p = `ipam/${pool}`;
  // The folders as Consul's UI creates them (a key ending in "/" with no value), the pool key, and two
  // allocations in the original's format: only "target".
  await curlPut('ipam/', '');
  await curlPut(p, seedRange);
  await curlPut(`${p}/`, '');
  await curlPut(`${p}/10.0.21.100`, '{"target": "someone-else"}');
  await curlPut(`${p}/10.0.21.123`, '{"target": "mine"}');
  const handMade = await curlTree('');

  const dataDir = tempDir();
  const config = (more: Partial<Parameters<typeof netConfig>[0]> = {}) => netConfig({ servers: [agent.url], pool, dataDir, ...more });

  // ADD skips the hand-made allocation at rangeStart.
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'new-container', ifname: 'eth0', config: config({ ipam: { host_id: 'node-7' } }) }));
  assert.deepEqual(added, {
    cniVersion: '1.0.0',
    ips: [{ address: '10.0.21.101/23', gateway: '10.0.20.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.0.20.1' }],
    dns: {},
  });

  // The seed's layout: one key ipam/<pool>/<address without prefix>, holding JSON whose "target" is the container ID.
  const raw = await curlGetRaw(`${p}/10.0.21.101`);
  assert.ok(raw !== undefined, 'the allocation key is ipam/<pool>/<ip>');
  const value = JSON.parse(raw) as Record<string, unknown>;
  assert.equal(value.target, 'new-container');
  assert.deepEqual(value, { target: 'new-container', ifname: 'eth0', host: 'node-7', network: 'test-net' }, 'target, plus the interface, the host and the network beside it');

  // Nothing else was written anywhere in KV: no other key, no change to the pool key, the folders or the hand-made allocations.
  const afterAdd = await curlTree('');
  assert.deepEqual([...afterAdd.keys()].sort(), [...handMade.keys(), `${p}/10.0.21.101`].sort());
  for (const [key, entry] of handMade) assert.deepEqual(afterAdd.get(key), entry, `${key} untouched`);
  assert.equal(afterAdd.get('ipam/')?.value, null);
  assert.equal(afterAdd.get(`${p}/`)?.value, null);

  // CHECK accepts an allocation made by hand with only "target" (it names no interface).
  assert.deepEqual(assertSuccess(await runPlugin({ command: 'CHECK', containerId: 'mine', config: config({ ips: [{ address: '10.0.21.123/23', gateway: '10.0.20.1' }] }) })), {
    cniVersion: '1.0.0',
    ips: [{ address: '10.0.21.123/23', gateway: '10.0.20.1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.0.20.1' }],
    dns: {},
  });
  // ... and CHECK of the plugin's own allocation.
  assertSuccess(await runPlugin({ command: 'CHECK', containerId: 'new-container', config: config({ ips: added.ips }) }));

  // DEL of the hand-made allocation, found by searching the pool (no prevResult.ips, no host note).
  assertSuccess(await runPlugin({ command: 'DEL', containerId: 'mine', config: config({ dataDir: tempDir() }) }));
  assert.equal(await curlGetRaw(`${p}/10.0.21.123`), undefined);
  // DEL of the plugin's allocation, named by prevResult.ips.
  assertSuccess(await runPlugin({ command: 'DEL', containerId: 'new-container', config: config({ ips: added.ips }) }));
  assert.equal(await curlGetRaw(`${p}/10.0.21.101`), undefined);

  // DEL removed exactly those two keys: the folders, the pool and the other container's allocation stay.
  const afterDel = await curlTree('');
  assert.deepEqual([...afterDel.keys()].sort(), ['ipam/', p, `${p}/`, `${p}/10.0.21.100`].sort());
  for (const key of afterDel.keys()) assert.deepEqual(afterDel.get(key), handMade.get(key), `${key} untouched`);
});

test("a requested IP (the seed's example) is written as ipam/<pool>/<ip> with this container as target", T, async () => {
  const pool = freshPoolName('seed');
  await curlPut(`ipam/${pool}`, seedRange);
  await curlPut(`ipam/${pool}/10.0.21.123`, '{"target": "previous-owner"}');
  const run = await runPlugin({ command: 'ADD', containerId: 'static-one', config: netConfig({ servers: [agent.url], pool, requestedIp: '10.0.21.123' }) });
  assert.equal(assertSuccess(run).ips[0].address, '10.0.21.123/23');
  assert.equal((JSON.parse((await curlGetRaw(`ipam/${pool}/10.0.21.123`))!) as { target: string }).target, 'static-one');
  assert.deepEqual([...(await curlTree(`ipam/${pool}/`)).keys()], [`ipam/${pool}/10.0.21.123`]);
});

test('an IPv6 pool made by hand: the allocation key is the RFC 5952 text of the address', T, async () => {
  const pool = freshPoolName('seed6');
  await curlPut(`ipam/${pool}`, JSON.stringify([{ subnet: '2001:db8:a::/64', rangeStart: '2001:db8:a::100', rangeEnd: '2001:db8:a::3ff', gateway: '2001:db8:a::1' }]));
  await curlPut(`ipam/${pool}/`, '');
  await curlPut(`ipam/${pool}/2001:db8:a::100`, '{"target": "someone-else"}');
  const run = await runPlugin({ command: 'ADD', containerId: 'c6', config: netConfig({ servers: [agent.url], pool }) });
  assert.deepEqual(assertSuccess(run).ips, [{ address: '2001:db8:a::101/64', gateway: '2001:db8:a::1' }]);
  assert.deepEqual([...(await curlTree(`ipam/${pool}/`)).keys()].sort(), [`ipam/${pool}/`, `ipam/${pool}/2001:db8:a::100`, `ipam/${pool}/2001:db8:a::101`]);
  assert.equal((JSON.parse((await curlGetRaw(`ipam/${pool}/2001:db8:a::101`))!) as { target: string }).target, 'c6');
});

test('the pool folder may be absent: the first ADD creates only the allocation key', T, async () => {
  const pool = freshPoolName('nofolder');
  await curlPut(`ipam/${pool}`, JSON.stringify([{ subnet: '10.0.30.0/24' }]));
  const run = await runPlugin({ command: 'ADD', containerId: 'c1', config: netConfig({ servers: [agent.url], pool }) });
  assert.equal(assertSuccess(run).ips[0].address, '10.0.30.1/24');
  assert.deepEqual([...(await curlTree(`ipam/${pool}`)).keys()].sort(), [`ipam/${pool}`, `ipam/${pool}/10.0.30.1`]);
});
