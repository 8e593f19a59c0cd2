// A mixed fleet: one pool used alternately by the original chain and by ours, IPv4 and IPv6. The original is
// simulated by doing exactly what its allocator does over Consul's HTTP API (passcod/cni-plugins,
// ipam-da-consul/src/main.rs): ADD lists the pool folder (?recurse), walks each range's subnet from its network
// address within rangeStart..rangeEnd, takes the first address without a key, and writes {"target"} with cas=0
// under the key Rust's Ipv6Addr prints; DEL lists the folder and deletes every key whose target is the
// container in one transaction of delete-cas. Ours are the built executables. The run must end with no
// address on two containers and nothing leaked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useConsul } from '../support/consul';
import { assertSuccess, putPool, runPlugin, scenario, type Scenario } from '../support/plugin';

const agent = useConsul();

interface Entry {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
}

async function listFolder(pool: string): Promise<Entry[]> {
  const res = await fetch(`${agent.url}/v1/kv/ipam/${pool}/?recurse`);
  return res.status === 404 ? [] : ((await res.json()) as Entry[]);
}

const target = (e: Entry): string => (JSON.parse(Buffer.from(e.Value ?? '', 'base64').toString('utf8')) as { target: string }).target;

/** Address arithmetic independent of ours: BigInt, and WHATWG URL's IPv6 serialiser (RFC 5952's rules) for the key. */
function toBig(ip: string): bigint {
  if (!ip.includes(':')) return ip.split('.').reduce((n, o) => n * 256n + BigInt(o), 0n);
  const full = new URL(`http://[${ip}]`).hostname.slice(1, -1);
  const [head, tail] = full.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((n, g) => n * 65536n + BigInt(parseInt(g, 16)), 0n);
}
function fromBig(n: bigint, v6: boolean): string {
  if (!v6) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((s) => ((n >> s) & 0xffffn).toString(16));
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

/** The original's ADD, over the HTTP API. */
async function originalAdd(pool: string, containerId: string): Promise<string> {
  const res = await fetch(`${agent.url}/v1/kv/ipam/${pool}?raw`);
  const ranges = (await res.json()) as Array<{ subnet: string; rangeStart?: string; rangeEnd?: string }>;
  const known = new Set((await listFolder(pool)).map((e) => e.Key));
  for (const range of ranges) {
    const [net, prefixText] = range.subnet.split('/') as [string, string];
    const v6 = net.includes(':');
    const bits = BigInt(v6 ? 128 : 32);
    const size = 1n << (bits - BigInt(prefixText));
    const first = (toBig(net) / size) * size;
    for (let n = first; n < first + size; n++) {
      if (range.rangeStart && n < toBig(range.rangeStart)) continue;
      if (range.rangeEnd && n > toBig(range.rangeEnd)) continue;
      const ip = fromBig(n, v6);
      if (known.has(`ipam/${pool}/${ip}`)) continue;
      const put = await fetch(`${agent.url}/v1/kv/ipam/${pool}/${ip}?cas=0`, { method: 'PUT', body: JSON.stringify({ target: containerId }) });
      assert.equal(await put.json(), true, `the original's cas=0 write of ${ip}`);
      return ip;
    }
  }
  throw new Error(`the original found ${pool} full`);
}

/** The original's DEL: every key whose target is the container, in one transaction of delete-cas. */
async function originalDel(pool: string, containerId: string): Promise<void> {
  const ops = (await listFolder(pool)).filter((e) => e.Value !== null && target(e) === containerId).map((e) => ({ KV: { Verb: 'delete-cas', Key: e.Key, Index: e.ModifyIndex } }));
  if (ops.length === 0) return;
  const res = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
  assert.equal(res.status, 200, await res.text());
}

/** A small deterministic generator, so a failure replays. */
function random(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

async function mixedFleet(s: Scenario, rangeSize: number, seed: number): Promise<void> {
  const next = random(seed);
  const live = new Map<string, { ip: string; by: 'original' | 'ours'; result?: unknown }>();
  let counter = 0;
  const checkNoDuplicates = async (when: string) => {
    // By address, not by key text: two spellings of one address would be two keys for one address.
    const folder = await listFolder(s.pool);
    const byIp = new Map(folder.map((e) => [toBig(e.Key.split('/')[2]!), target(e)]));
    assert.equal(byIp.size, folder.length, `${when}: one key per address: ${folder.map((e) => e.Key).join(', ')}`);
    for (const [id, { ip }] of live) assert.equal(byIp.get(toBig(ip)), id, `${when}: ${ip} is held by ${id} alone (KV says ${byIp.get(toBig(ip))})`);
    assert.equal(folder.length, live.size, `${when}: one key per live container: ${folder.map((e) => e.Key).join(', ')}`);
    for (const e of folder) assert.equal(e.Key.split('/')[2], fromBig(toBig(e.Key.split('/')[2]!), e.Key.includes(':')), `${when}: ${e.Key} is in RFC 5952 text`);
  };
  const done = new Set<string>();
  for (let step = 0; step < 14; step++) {
    const add = live.size === 0 || (live.size < rangeSize - 1 && next() < 0.6);
    const ours = next() < 0.5;
    if (add) {
      const id = `fleet-${seed}-${counter++}`;
      if (ours) {
        const result = assertSuccess(await runPlugin({ command: 'ADD', containerId: id, config: s.config() }));
        live.set(id, { ip: String(result.ips[0].address).split('/')[0]!, by: 'ours', result });
      } else {
        live.set(id, { ip: await originalAdd(s.pool, id), by: 'original' });
      }
    } else {
      const ids = [...live.keys()];
      const id = ids[Math.floor(next() * ids.length)]!;
      const held = live.get(id)!;
      if (ours) {
        // As a runtime does: the cached ADD result when ours made it; an original's container may come without one.
        const ips = held.result ? (held.result as { ips: unknown[] }).ips : next() < 0.5 ? [] : [{ address: `${held.ip}/${held.ip.includes(':') ? 125 : 28}` }];
        assertSuccess(await runPlugin({ command: 'DEL', containerId: id, config: s.config({ ips: ips as never }) }));
      } else {
        await originalDel(s.pool, id);
      }
      live.delete(id);
    }
    done.add(`${add ? 'ADD' : 'DEL'} by ${ours ? 'ours' : 'the original'}`);
    await checkNoDuplicates(`step ${step} (${add ? 'ADD' : 'DEL'} by ${ours ? 'ours' : 'the original'})`);
  }
  assert.deepEqual([...done].sort(), ['ADD by ours', 'ADD by the original', 'DEL by ours', 'DEL by the original'], 'each implementation both added and deleted');
  // Everyone leaves, alternately through each implementation: nothing may stay behind.
  let turn = 0;
  for (const [id, held] of [...live]) {
    if (turn++ % 2 === 0) assertSuccess(await runPlugin({ command: 'DEL', containerId: id, config: s.config({ ips: held.result ? ((held.result as { ips: never[] }).ips) : [] }) }));
    else await originalDel(s.pool, id);
    live.delete(id);
  }
  assert.deepEqual(await listFolder(s.pool), [], 'nothing leaked');
}

test('IPv4: the original and ours share one pool, no address on two containers, nothing leaked', { timeout: 120_000 }, async () => {
  const s = scenario([agent.url], 'fleet4');
  await putPool(agent.kv, s.pool, [{ subnet: '10.210.0.0/28', rangeStart: '10.210.0.2', rangeEnd: '10.210.0.9', gateway: '10.210.0.1' }]);
  await mixedFleet(s, 8, 4);
});

test('IPv6, keys with single zero groups: the original and ours share one pool, no address on two containers, nothing leaked', { timeout: 120_000 }, async () => {
  const s = scenario([agent.url], 'fleet6');
  // Every address here has single zero groups (fd00:210:0:1:2:3:0:n), where ip6addr's spelling and RFC 5952's differ.
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:210:0:1:2:3:0:0/125', rangeStart: 'fd00:210:0:1:2:3:0:1', rangeEnd: 'fd00:210:0:1:2:3:0:6' }]);
  await mixedFleet(s, 6, 6);
});
