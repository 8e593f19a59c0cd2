// Proves the Consul test harness itself works, so a failure in the plugin's
// integration tests is not the harness's fault.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startConsul, startConsulCluster, useConsul } from '../support/consul';

const agent = useConsul();

test('dev agent: KV round trip', async () => {
  const { kv } = agent;
  await kv.put('harness/a', 'hello');
  await kv.put('harness/b/c', { ip: '10.0.0.1' });
  await kv.put('harness/empty', '');

  const a = await kv.get('harness/a');
  assert.equal(a?.value, 'hello');
  assert.ok(a.modifyIndex > 0 && a.createIndex > 0);
  assert.deepEqual(await kv.getJson('harness/b/c'), { ip: '10.0.0.1' });
  assert.equal((await kv.get('harness/empty'))?.value, '');
  assert.equal(await kv.get('harness/missing'), undefined);
  assert.deepEqual(await kv.keys('harness/'), ['harness/a', 'harness/b/c', 'harness/empty']);
  assert.deepEqual(await kv.keys('nothing-here/'), []);

  await kv.delete('harness/a');
  assert.equal(await kv.get('harness/a'), undefined);
  await kv.deleteTree('harness/');
  assert.deepEqual(await kv.keys('harness/'), []);
});

test('dev agent with ACLs: master token works, anonymous is denied', async () => {
  const secured = await startConsul({ aclMasterToken: 'harness-master' });
  try {
    await secured.kv.put('x', '1');
    assert.equal((await secured.kv.get('x'))?.value, '1');
    const anon = await fetch(`${secured.url}/v1/kv/x`, { method: 'PUT', body: '2' });
    assert.equal(anon.status, 403);
  } finally {
    await secured.stop();
  }
});

test('stop() ends the agent', async () => {
  const extra = await startConsul();
  await extra.stop();
  await assert.rejects(fetch(`${extra.url}/v1/status/leader`));
});

test('3-server cluster elects a leader and survives losing it', async () => {
  const t0 = Date.now();
  const cluster = await startConsulCluster(3);
  try {
    const formed = Date.now() - t0;
    const leader = await cluster.leaderUrl();
    const old = cluster.servers.find((s) => s.url === leader);
    assert.ok(old, `leader ${leader} is one of the servers`);

    const t1 = Date.now();
    await old.stop();
    let next = leader;
    while (next === leader) {
      assert.ok(Date.now() - t1 < 15_000, 'a new leader within 15 s');
      next = await cluster.leaderUrl();
    }
    const failover = Date.now() - t1;

    // The survivors still serve writes through the new leader.
    const put = await fetch(`${next}/v1/kv/harness/after-failover`, { method: 'PUT', body: 'ok' });
    assert.equal(await put.json(), true);

    await old.start(); // comes back with the same ports and data dir
    assert.equal(await cluster.leaderUrl(), next);
    console.log(`cluster formed in ${formed} ms, failover in ${failover} ms`);
  } finally {
    await cluster.stop();
  }
});
