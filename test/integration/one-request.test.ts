// A warm host's ADD in one request (take-next.ts), through the built executable against a real Consul, with a
// proxy in front of it counting what is sent: the one transaction when the host's copy of the pool and its hint
// allow it, and the full way (with what it costs) whenever Consul or the host's files say otherwise. KV is read
// back after each: never an address outside the pool's current ranges, never one key overwritten.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { addressOf, allocationKeys, assertSuccess, describeRun, putPool, runPlugin, scenario, startBlackhole, type Scenario } from '../support/plugin';
import { isKvRequest, reportFigures, startConsulProxy, type ConsulProxy } from '../support/reliability';

const agent = useConsul();
const T = { timeout: 90_000 };

/** The requests one ADD sent, as `METHOD /path` without the query. */
async function addThrough(proxy: ConsulProxy, s: Scenario, containerId: string, ipam: Record<string, unknown> = { host_id: 'warm-host' }) {
  const before = proxy.seen.length;
  const run = await runPlugin({ command: 'ADD', containerId, config: s.config({ servers: [proxy.url], ipam }) });
  const sent = proxy.seen.slice(before).filter(isKvRequest).map((r) => `${r.method} ${r.path.replace(/\?.*$/, '')}`);
  return { run, sent, ip: run.code === 0 ? addressOf(assertSuccess(run).ips[0].address) : undefined };
}

/** The full way: the pool read, the window (a second transaction reads the taken ones of a window that mixes both), the claim. */
const fullWay = (s: Scenario, ip: string, mixed = false) => [`GET /v1/kv/ipam/${s.pool}`, 'PUT /v1/txn', ...(mixed ? ['PUT /v1/txn'] : []), `PUT /v1/kv/ipam/${s.pool}/${ip}`];
const copyPath = (s: Scenario) => path.join(s.dataDir, s.pool, 'pool');

async function withProxy(body: (proxy: ConsulProxy) => Promise<void>, rewrite?: Parameters<typeof startConsulProxy>[2]): Promise<void> {
  const proxy = await startConsulProxy(agent.url, () => 'forward', rewrite);
  try {
    await body(proxy);
  } finally {
    await proxy.close();
  }
}

test('a warm host claims each next address in one request, and once the known-free run is used up reads a window on its copy of the pool key', T, async (t) => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.41.0.0/24', gateway: '10.41.0.254' }]);
  // Another host holds .6: the first window sees .2 to .5 free after the address it takes, then a taken one.
  await agent.kv.put(`ipam/${s.pool}/10.41.0.6`, JSON.stringify({ target: 'elsewhere', ifname: 'eth0', host: 'other' }));
  await withProxy(async (proxy) => {
    const runs = [];
    for (let i = 0; i < 6; i++) runs.push(await addThrough(proxy, s, `warm-${i}`));
    assert.deepEqual(
      runs.map((r) => r.ip),
      ['10.41.0.1', '10.41.0.2', '10.41.0.3', '10.41.0.4', '10.41.0.5', '10.41.0.7'],
    );
    assert.deepEqual(runs[0]!.sent, fullWay(s, '10.41.0.1', true), 'a host without a copy goes the full way');
    for (const r of runs.slice(1, 5)) assert.deepEqual(r.sent, ['PUT /v1/txn'], `${r.ip}: one transaction\n${describeRun(r.run)}`);
    // The window from .6 mixes taken and free: its read, the read of the taken .6, and the claim; no read of the pool key.
    assert.deepEqual(runs[5]!.sent, ['PUT /v1/txn', 'PUT /v1/txn', 'PUT /v1/txn'], 'the run of free addresses the window showed is used up: a window again, on the copy');
    reportFigures('one-request', t.name, { requests: runs.map((r) => r.sent.length) }, t);
    for (const [i, r] of runs.entries()) {
      assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/${r.ip}`), { target: `warm-${i}`, ifname: 'eth0', host: 'warm-host', network: 'test-net' });
    }
  });
  assert.deepEqual(JSON.parse(readFileSync(path.join(s.dataDir, s.pool, 'last_reserved_ip'), 'utf8')).ip, '10.41.0.7');
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, 7);
});

test('a pool an operator changed since the host read it: Consul refuses the one-request claim, and ADD takes from the new ranges', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.42.0.0/24' }]);
  await withProxy(async (proxy) => {
    assert.equal((await addThrough(proxy, s, 'before')).ip, '10.42.0.1');
    await putPool(agent.kv, s.pool, [{ subnet: '10.42.1.0/24' }]);
    const after = await addThrough(proxy, s, 'after');
    assert.match(after.ip ?? '', /^10\.42\.1\.\d+$/, describeRun(after.run));
    assert.deepEqual(after.sent, ['PUT /v1/txn', ...fullWay(s, after.ip!)]);
  });
  assert.deepEqual((await allocationKeys(agent.kv, s.pool)).sort(), ['10.42.0.1', '10.42.1.1'].map((ip) => `ipam/${s.pool}/${ip}`));
  const copy = JSON.parse(readFileSync(copyPath(s), 'utf8'));
  assert.equal(copy.value, JSON.stringify([{ subnet: '10.42.1.0/24' }]), 'the copy is the new pool key');
});

test('the next address taken by another host meanwhile: the claim is lost without overwriting it, and ADD takes another', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.43.0.0/24' }]);
  const theirs = { target: 'their-container', ifname: 'eth0', host: 'another-host' };
  await withProxy(async (proxy) => {
    assert.equal((await addThrough(proxy, s, 'first')).ip, '10.43.0.1');
    await agent.kv.put(`ipam/${s.pool}/10.43.0.2`, JSON.stringify(theirs));
    const next = await addThrough(proxy, s, 'second');
    assert.equal(next.ip, '10.43.0.3', describeRun(next.run));
    assert.deepEqual(next.sent, ['PUT /v1/txn', ...fullWay(s, '10.43.0.3')]);
  });
  assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/10.43.0.2`), theirs);
  assert.deepEqual(readFileSync(path.join(s.dataDir, s.pool, 'containers', 'second', 'eth0'), 'utf8'), '10.43.0.3\n');
});

test("a claim applied whose answer is lost: the full way finds the address in Consul and returns it, one key", T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.44.0.0/24' }]);
  let lose = false;
  // The proxy forwards the transaction to Consul, which applies it, and answers the plugin 500 instead.
  const rewrite = (req: { method: string; path: string }, answer: { status: number; headers: Record<string, string>; body: Buffer }) =>
    lose && req.path.startsWith('/v1/txn') ? ((lose = false), { status: 500, headers: {}, body: Buffer.from('rpc error: timeout') }) : answer;
  await withProxy(async (proxy) => {
    assert.equal((await addThrough(proxy, s, 'first')).ip, '10.44.0.1');
    lose = true;
    const retried = await addThrough(proxy, s, 'unlucky');
    assert.equal(retried.ip, '10.44.0.2', describeRun(retried.run));
    assert.deepEqual(retried.sent, ['PUT /v1/txn', `GET /v1/kv/ipam/${s.pool}`, `GET /v1/kv/ipam/${s.pool}/10.44.0.2`], 'the full way reads the noted address and finds it held');
  }, rewrite);
  assert.deepEqual((await allocationKeys(agent.kv, s.pool)).sort(), ['10.44.0.1', '10.44.0.2'].map((ip) => `ipam/${s.pool}/${ip}`));
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.44.0.2`))?.target, 'unlucky');
});

test('a copy of the pool that is damaged, planted or altered is no copy: ADD goes the full way, with a warning naming it', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.45.0.0/24' }]);
  const entry = await agent.kv.get(`ipam/${s.pool}`);
  // Consul's ranges and one more, outside the pool: with the hint at the real range's last address, the next
  // address the altered copy gives is outside the pool.
  const altered = { createIndex: entry!.createIndex, modifyIndex: entry!.modifyIndex, value: JSON.stringify([{ subnet: '10.45.0.0/24' }, { subnet: '10.99.0.0/24' }]) };
  const hint = path.join(s.dataDir, s.pool, 'last_reserved_ip');
  const outside = path.join(s.dataDir, 'elsewhere.json');
  const named = new RegExp(`ignoring host file \\S*${s.pool}/pool:`);
  const undecodable = new RegExp(`ignoring this host's copy of ipam/${s.pool}`);
  const copies: Array<[string, () => void, RegExp]> = [
    ['not JSON', () => writeFileSync(copyPath(s), '{"createIndex": 1, "modifyIndex":'), named],
    ['indexes that are not indexes', () => writeFileSync(copyPath(s), JSON.stringify({ createIndex: -1, modifyIndex: 'x', value: '[]' })), named],
    ['a value that is no pool', () => writeFileSync(copyPath(s), JSON.stringify({ ...altered, value: '{"ranges": 5}' })), undecodable],
    ['too large', () => writeFileSync(copyPath(s), JSON.stringify({ ...altered, value: ' '.repeat(70_000) })), named],
    ['a symlink', () => (writeFileSync(outside, JSON.stringify(altered)), symlinkSync(outside, copyPath(s))), named],
    [
      'other ranges at the current ModifyIndex',
      () => {
        writeFileSync(copyPath(s), JSON.stringify(altered));
        writeFileSync(hint, JSON.stringify({ pool: entry!.createIndex, ip: '10.45.0.254', free: 4 }));
      },
      /differs from Consul's at the same ModifyIndex .* ipam\/\S+\/10\.99\.0\.1, claimed from it, is released again/,
    ],
  ];
  await withProxy(async (proxy) => {
    for (const [n, [what, plant, warning]] of copies.entries()) {
      assert.ok((await addThrough(proxy, s, `warm-${n}`)).ip, 'the host is warm: a copy and a hint');
      rmSync(copyPath(s), { force: true });
      plant();
      const r = await addThrough(proxy, s, `after-${n}`);
      assert.match(r.ip ?? '', /^10\.45\.0\.\d+$/, `${what}: ${describeRun(r.run)}`);
      assert.match(r.run.stderr, warning, `${what}: a warning names the copy\n${describeRun(r.run)}`);
    }
  });
  const keys = await allocationKeys(agent.kv, s.pool);
  assert.deepEqual(keys.filter((key) => !key.startsWith(`ipam/${s.pool}/10.45.0.`)), [], 'nothing is left outside the pool: the claim from altered ranges is taken back');
  assert.equal(keys.length, 2 * copies.length);
});

test('a storm on a warm host: 20 ADDs at once from one hint, 20 distinct addresses, each key its container', T, async (t) => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.46.0.0/24' }]);
  await withProxy(async (proxy) => {
    assert.equal((await addThrough(proxy, s, 'warm-up')).ip, '10.46.0.1');
    const before = proxy.seen.length;
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => runPlugin({ command: 'ADD', containerId: `storm-${i}`, config: s.config({ servers: [proxy.url] }), timeoutMs: 45_000 })));
    assert.deepEqual(runs.filter((run) => run.code !== 0).map(describeRun), []);
    const ips = runs.map((run) => addressOf(assertSuccess(run).ips[0].address));
    assert.equal(new Set(ips).size, 20, ips.join(' '));
    for (const [i, ip] of ips.entries()) assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${ip}`))?.target, `storm-${i}`);
    const sent = proxy.seen.slice(before).filter(isKvRequest).map((r) => `${r.method} ${r.path.replace(/\?.*$/, '').replace(/^(\/v1\/kv\/ipam\/[^/]+)\/.+$/, '$1/<address>')}`);
    const kinds = Object.fromEntries([...new Set(sent)].map((kind) => [kind, sent.filter((k) => k === kind).length]));
    reportFigures('one-request', t.name, { adds: 20, requests: sent.length, kinds }, t);
    assert.ok(sent.length <= 6 * 20, `requests: ${JSON.stringify(kinds)}`);
  });
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, 21);
});

test('a host with a copy but a hint of an older release (no "free") reads a window on the copy, claims in a second request, and learns the run', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.47.0.0/24' }]);
  await withProxy(async (proxy) => {
    assert.equal((await addThrough(proxy, s, 'first')).ip, '10.47.0.1');
    const hint = path.join(s.dataDir, s.pool, 'last_reserved_ip');
    const { pool, ip } = JSON.parse(readFileSync(hint, 'utf8'));
    mkdirSync(path.dirname(hint), { recursive: true });
    writeFileSync(hint, JSON.stringify({ pool, ip }));
    const second = await addThrough(proxy, s, 'second');
    assert.equal(second.ip, '10.47.0.2');
    assert.deepEqual(second.sent, ['PUT /v1/txn', 'PUT /v1/txn'], 'a window, then the claim guarded by the copy\'s ModifyIndex');
    assert.deepEqual((await addThrough(proxy, s, 'third')).sent, ['PUT /v1/txn']);
  });
});

// ---------------------------------------------------------------------------
// DEL in one request (release-noted.ts): the note of a one-request ADD keeps its key's ModifyIndex.

async function delThrough(proxy: ConsulProxy, s: Scenario, containerId: string, ips: string[], more: { pools?: string[] } = {}) {
  const before = proxy.seen.length;
  const config = s.config({ servers: [proxy.url], ips: ips.map((ip) => ({ address: `${ip}/24` })), ipam: { host_id: 'warm-host' } });
  if (more.pools) config.prevResult.pools = more.pools.map((name) => ({ name }));
  const run = await runPlugin({ command: 'DEL', containerId, config });
  assertSuccess(run);
  return { run, sent: proxy.seen.slice(before).filter(isKvRequest).map((r) => `${r.method} ${r.path.replace(/\?.*$/, '')}`) };
}

const notePath = (s: Scenario, containerId: string) => path.join(s.dataDir, s.pool, 'containers', containerId, 'eth0');

test('DEL of an address a warm host claimed in one request is one request too: a delete on the index the note keeps', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.48.0.0/24' }]);
  await withProxy(async (proxy) => {
    await addThrough(proxy, s, 'first');
    const { ip } = await addThrough(proxy, s, 'second');
    const key = `ipam/${s.pool}/${ip}`;
    assert.equal(readFileSync(notePath(s, 'second'), 'utf8'), `${ip} ${(await agent.kv.get(key))!.modifyIndex}\n`);
    // A release drops a gone claimer's marker only when it was touched over 50 ms before (file times lag the
    // clock by up to a tick): a container lives longer than that.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const del = await delThrough(proxy, s, 'second', [ip!]);
    assert.deepEqual(del.sent, [`DELETE /v1/kv/${key}`], describeRun(del.run));
    assert.equal(await agent.kv.get(key), undefined);
    assert.ok(!existsSync(notePath(s, 'second')), 'the note is gone');
    assert.ok(!existsSync(path.join(s.dataDir, s.pool, 'claiming', ip!)), 'the marker is gone');
    // The first ADD went the full way: its note has no index, and its DEL the full way too.
    assert.deepEqual((await delThrough(proxy, s, 'first', ['10.48.0.1'])).sent, [`GET /v1/kv/ipam/${s.pool}/10.48.0.1`, `DELETE /v1/kv/ipam/${s.pool}/10.48.0.1`]);
  });
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
});

test('DEL in one request never deletes a key that changed hands: the delete is refused, and the full way leaves it alone', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.49.0.0/24' }]);
  const theirs = { target: 'their-container', ifname: 'eth0', host: 'another-host' };
  await withProxy(async (proxy) => {
    await addThrough(proxy, s, 'first');
    const { ip } = await addThrough(proxy, s, 'mine');
    const key = `ipam/${s.pool}/${ip}`;
    // Released behind this host's back (consul-ipam release, another host's GC) and given to another container.
    await agent.kv.put(key, JSON.stringify(theirs));
    const del = await delThrough(proxy, s, 'mine', [ip!]);
    assert.deepEqual(del.sent, [`DELETE /v1/kv/${key}`, `GET /v1/kv/${key}`, `GET /v1/kv/${key}`], describeRun(del.run));
    assert.deepEqual(await agent.kv.getJson(key), theirs);
  });
});

test('DEL in one request only when the note is the whole story: another listed pool, or prevResult naming another address, go the full way', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.50.0.0/24' }]);
  await withProxy(async (proxy) => {
    await addThrough(proxy, s, 'first');
    const a = await addThrough(proxy, s, 'two-pools');
    const twoPools = await delThrough(proxy, s, 'two-pools', [a.ip!], { pools: [s.pool, `${s.pool}-other`] });
    assert.equal(twoPools.sent[0]!.startsWith('GET'), true, `the full way starts with a read: ${twoPools.sent.join(', ')}`);
    assert.ok(twoPools.sent.includes(`DELETE /v1/kv/ipam/${s.pool}/${a.ip}`), twoPools.sent.join(', '));
    const b = await addThrough(proxy, s, 'renamed');
    const other = await delThrough(proxy, s, 'renamed', [b.ip!, '10.50.0.200']);
    assert.equal(other.sent[0]!.startsWith('GET'), true, other.sent.join(', '));
    assert.equal(await agent.kv.get(`ipam/${s.pool}/${b.ip}`), undefined, 'released all the same');
  });
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.50.0.1`]);
});

test('a note whose index is not one is ignored with a warning: DEL goes the full way and releases the address', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.51.0.0/24' }]);
  await withProxy(async (proxy) => {
    await addThrough(proxy, s, 'first');
    for (const [n, bad] of [' 0', ' -5', ' 12 13', ' 99999999999999999', ' x', ' '].entries()) {
      const { ip } = await addThrough(proxy, s, `noted-${n}`);
      writeFileSync(notePath(s, `noted-${n}`), `${ip}${bad}\n`);
      const del = await delThrough(proxy, s, `noted-${n}`, [ip!]);
      assert.match(del.run.stderr, new RegExp(`containers/noted-${n}/eth0: .* is not an address and the ModifyIndex of its key`), describeRun(del.run));
      assert.equal(del.sent[0]!.startsWith('GET'), true, del.sent.join(', '));
      assert.equal(await agent.kv.get(`ipam/${s.pool}/${ip}`), undefined, `${JSON.stringify(bad)}: released all the same`);
    }
  });
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.51.0.1`]);
});

test('a first listed server that never answers costs a warm ADD and DEL its connect timeout once: the full way tries it last', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.52.0.0/24' }]);
  const dead = await startBlackhole();
  try {
    await withProxy(async (proxy) => {
      await addThrough(proxy, s, 'first');
      const ipam = { host_id: 'warm-host', connect_timeout_ms: 700 };
      const add = await runPlugin({ command: 'ADD', containerId: 'second', config: s.config({ servers: [dead.url, proxy.url], ipam }) });
      const ip = addressOf(assertSuccess(add).ips[0].address);
      assert.ok(add.elapsedMs < 1400, `one connect timeout, not two: ${add.elapsedMs} ms\n${describeRun(add)}`);
      assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${ip}`))?.target, 'second');
      const del = await runPlugin({ command: 'DEL', containerId: 'second', config: s.config({ servers: [dead.url, proxy.url], ipam, ips: [{ address: `${ip}/24` }] }) });
      assertSuccess(del);
      assert.ok(del.elapsedMs < 1400, `one connect timeout, not two: ${del.elapsedMs} ms\n${describeRun(del)}`);
      assert.equal(await agent.kv.get(`ipam/${s.pool}/${ip}`), undefined);
    });
  } finally {
    await dead.close();
  }
});
