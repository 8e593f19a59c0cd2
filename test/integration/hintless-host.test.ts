// A host with no hint (new, or data_dir lost) in a crowded pool, run as a runtime runs the plugin, through a
// proxy that records every request the real Consul behind it receives: it starts at its home, probes past
// the run of allocations around it and never lists the pool; a pool with one free address left still gives
// it; a full pool is still 104.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { homePosition } from '../../src/services/contention';
import { addressAt, normalizeRange, poolSpan, positionOf, type RangeDefinition } from '../../src/services/ip-math';
import { useConsul } from '../support/consul';
import { addressOf, assertCniError, assertSuccess, freshPoolName, netConfig, putPool, runPlugin } from '../support/plugin';
import { startConsulProxy, type ConsulProxy } from '../support/reliability';

const agent = useConsul();
let proxy: ConsulProxy;
before(async () => {
  await agent.ready();
  proxy = await startConsulProxy(agent.url, () => 'forward');
});
after(async () => {
  await proxy?.close();
});

const hostId = 'joining-host-7';

/** Writes allocations of other hosts at positions [from, from + count) of the pool (wrapping), 64 per transaction. */
async function fillPositions(pool: string, definition: RangeDefinition[], from: bigint, count: number): Promise<void> {
  const ranges = definition.map((d) => normalizeRange(d));
  for (let done = 0; done < count; done += 64) {
    const ops = Array.from({ length: Math.min(64, count - done) }, (_, i) => {
      const ip = addressAt(ranges, from + BigInt(done + i))!;
      return { KV: { Verb: 'set', Key: `ipam/${pool}/${ip}`, Value: Buffer.from(JSON.stringify({ target: `other-${ip}` })).toString('base64') } };
    });
    const response = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
    assert.equal(response.status, 200, await response.text());
  }
}

/** One ADD by the hint-less host (a fresh data_dir), and the requests Consul received for it. */
async function hintlessAdd(pool: string) {
  const before = proxy.seen.length;
  const run = await runPlugin({ command: 'ADD', containerId: 'c-new', config: netConfig({ servers: [proxy.url], pool, ipam: { host_id: hostId } }) });
  return { run, requests: proxy.seen.slice(before).map((r) => `${r.method} ${r.path}`) };
}

const listings = (requests: string[]) => requests.filter((r) => /[?&](keys|recurse)/.test(r));

test('a pool filled around the host\'s home: the first ADD probes past the run, without listing the pool', async () => {
  const pool = freshPoolName('crowded');
  const definition = [{ subnet: '10.81.0.0/16', gateway: '10.81.0.1' }];
  const ranges = definition.map((d) => normalizeRange(d));
  await putPool(agent.kv, pool, definition);
  const home = homePosition(hostId, poolSpan(ranges));
  // 3,000 allocations behind the home and 6,000 from it on: the run's end is 6,000 positions ahead.
  await fillPositions(pool, definition, home - 3000n, 9000);
  const { run, requests } = await hintlessAdd(pool);
  const ip = addressOf(assertSuccess(run).ips[0].address);
  const position = positionOf(ranges, ip)!;
  const ahead = (position - home + poolSpan(ranges)) % poolSpan(ranges);
  assert.ok(ahead >= 6000n, `${ip} is ${ahead} positions past the home: inside the run?`);
  assert.deepEqual(listings(requests), [], requests.join('\n'));
  const transactions = requests.filter((r) => r.startsWith('PUT /v1/txn'));
  assert.ok(transactions.length >= 2 && transactions.length <= 4, `the window and 1–3 transactions of probes: ${requests.join('\n')}`);
  assert.deepEqual((await agent.kv.getJson<{ target: string; host: string }>(`ipam/${pool}/${ip}`))?.host, hostId);
});

// A /21: 2,046 positions, past the pool size from which hosts have homes.
const smallCrowded = [{ subnet: '10.82.0.0/21' }];

test('a pool with one free address left, far from the probes: the first ADD still finds it', async () => {
  const pool = freshPoolName('almost');
  const ranges = smallCrowded.map((d) => normalizeRange(d));
  await putPool(agent.kv, pool, smallCrowded);
  const span = poolSpan(ranges);
  await fillPositions(pool, smallCrowded, 0n, Number(span));
  // The one free address: just before the home, the last one a walk from the home reaches.
  const free = addressAt(ranges, homePosition(hostId, span) - 1n)!;
  await agent.kv.delete(`ipam/${pool}/${free}`);
  const { run, requests } = await hintlessAdd(pool);
  assert.equal(addressOf(assertSuccess(run).ips[0].address), free);
  assert.equal(listings(requests).length, 1, 'the probes found nothing: one listing of key names');
});

test('a full pool is still 104, and nothing is written', async () => {
  const pool = freshPoolName('full');
  const ranges = smallCrowded.map((d) => normalizeRange(d));
  await putPool(agent.kv, pool, smallCrowded);
  await fillPositions(pool, smallCrowded, 0n, Number(poolSpan(ranges)));
  const { run, requests } = await hintlessAdd(pool);
  assertCniError(run, 104);
  assert.deepEqual(requests.filter((r) => r.startsWith('PUT /v1/kv') || r.startsWith('DELETE')), []);
  assert.equal(listings(requests).length, 1);
});
