// releaseAllocations against a real Consul, given an index that is no longer current (as a stale read that
// picked the server can give): still this container's → released on the new index; someone else's → left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, toPromise } from 'xstate';
import { connectConsul, gotOptions } from '../../src/services/consul-client';
import { silentLog } from '../../src/services/logger';
import { releaseAllocationsLogic } from '../../src/services/release-allocations';
import { useConsul } from '../support/consul';
import { tempDir } from '../support/plugin';

const agent = useConsul();

async function releaseWithOldIndex(rewrite: object) {
  const key = 'ipam/rel/10.0.0.5';
  await agent.kv.put(key, { target: 'c1', ifname: 'eth0', host: 'h' });
  const old = (await agent.kv.get(key))!.modifyIndex;
  await agent.kv.put(key, rewrite);
  assert.notEqual((await agent.kv.get(key))!.modifyIndex, old);
  const kv = await connectConsul(agent.url, gotOptions({ servers: [agent.url], connectTimeoutMs: 1000, requestTimeoutMs: 5000 }), silentLog);
  const input = { kv, pools: ['rel'], found: [{ pool: 'rel', ip: '10.0.0.5', key, modifyIndex: old }], containerId: 'c1', ifname: 'eth0', dataDir: tempDir(), log: silentLog };
  return { key, outcome: await toPromise(createActor(releaseAllocationsLogic, { input }).start()) };
}

test('a key still this container\'s, rewritten since it was read, is released on its new index', async () => {
  const { key, outcome } = await releaseWithOldIndex({ target: 'c1', ifname: 'eth0', host: 'other-host' });
  assert.deepEqual(outcome, { released: ['10.0.0.5'], leftAlone: [] });
  assert.equal(await agent.kv.get(key), undefined);
});

test('a key reallocated to another container since it was read is left alone', async () => {
  const { key, outcome } = await releaseWithOldIndex({ target: 'c2', ifname: 'eth0', host: 'h' });
  assert.deepEqual(outcome, { released: [], leftAlone: ['10.0.0.5'] });
  assert.equal((await agent.kv.getJson<{ target: string }>(key))?.target, 'c2');
});
