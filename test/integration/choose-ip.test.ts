// chooseIp against a real Consul, for what the executables' tests cannot steer: the random jump after a lost
// write must never turn a pool with a free address into "pool full".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, toPromise } from 'xstate';
import { chooseIpLogic } from '../../src/services/choose-ip';
import { markerFor } from '../../src/services/host-store';
import { connectConsul, gotOptions } from '../../src/services/consul-client';
import { normalizeRange } from '../../src/services/ip-math';
import { silentLog } from '../../src/services/logger';
import { useConsul } from '../support/consul';
import { tempDir } from '../support/plugin';

const agent = useConsul();

async function choose(pool: string, lost: number, random: () => number) {
  const kv = await connectConsul(agent.url, gotOptions({ servers: [agent.url], connectTimeoutMs: 1000, requestTimeoutMs: 5000 }), silentLog);
  const ranges = [normalizeRange({ subnet: '10.60.0.0/24', rangeStart: '10.60.0.1', rangeEnd: '10.60.0.40' })];
  const input = { kv, pool: { name: pool, ranges, identity: 1 }, avoid: [], lost, log: silentLog, dataDir: tempDir(), hostId: 'host-a', random };
  return toPromise(createActor(chooseIpLogic, { input }).start());
}

test('after a lost write, a jump past the only free address still finds it', async () => {
  // 40 addresses; only 10.60.0.3 is free, and the jump (random 0.99 of 32) lands past it, near the end.
  for (let i = 1; i <= 40; i++) if (i !== 3) await agent.kv.put(`ipam/jump/10.60.0.${i}`, { target: `other-${i}` });
  const choice = await choose('jump', 1, () => 0.99);
  assert.deepEqual(choice.kind === 'free' && choice.candidate.ip, '10.60.0.3');
});

test('a pool with every address taken is full, with or without a jump', async () => {
  for (let i = 1; i <= 40; i++) await agent.kv.put(`ipam/full/10.60.0.${i}`, { target: `other-${i}` });
  assert.equal((await choose('full', 0, () => 0.5)).kind, 'full');
  assert.equal((await choose('full', 1, () => 0.99)).kind, 'full');
});

test('the first try takes the first free address (plain round robin); a lost write looks further ahead', async () => {
  assert.deepEqual(await choose('empty', 0, () => 0.99).then((c) => c.kind === 'free' && c.candidate.ip), '10.60.0.1');
  // One loss: a jump of up to 32 (here 31), then a pick among the first 8 free found there.
  const jumped = await choose('empty', 1, () => 0.99);
  assert.ok(jumped.kind === 'free' && Number(jumped.candidate.ip.split('.')[3]) > 31, JSON.stringify(jumped));
  // A jump longer than the pool (two losses: up to 64, in 40 addresses) starts over from the hint instead.
  const wrapped = await choose('empty', 2, () => 0.99);
  assert.ok(wrapped.kind === 'free' && Number(wrapped.candidate.ip.split('.')[3]) <= 16, JSON.stringify(wrapped));
});

test('free addresses all being claimed by live neighbours on this host are waited for, not taken for a full pool', async () => {
  const { mkdirSync, rmSync, writeFileSync } = await import('node:fs');
  const path = await import('node:path');
  const dataDir = tempDir();
  for (let i = 1; i <= 38; i++) await agent.kv.put(`ipam/busy/10.60.0.${i}`, { target: `other-${i}` });
  // 10.60.0.39 and .40 are free, and a live neighbour (our parent stands in) is claiming both.
  const marks = path.join(dataDir, 'busy', 'claiming');
  mkdirSync(marks, { recursive: true });
  for (const ip of ['10.60.0.39', '10.60.0.40']) writeFileSync(path.join(marks, ip), markerFor(process.ppid)!);
  // The neighbour's claim of .40 is decided (it lost) 30 ms later: its mark goes, and .40 is ours.
  setTimeout(() => rmSync(path.join(marks, '10.60.0.40')), 30);
  const kv = await connectConsul(agent.url, gotOptions({ servers: [agent.url], connectTimeoutMs: 1000, requestTimeoutMs: 5000 }), silentLog);
  const ranges = [normalizeRange({ subnet: '10.60.0.0/24', rangeStart: '10.60.0.1', rangeEnd: '10.60.0.40' })];
  const input = { kv, pool: { name: 'busy', ranges, identity: 1 }, avoid: [], lost: 0, log: silentLog, dataDir, hostId: 'host-a', random: () => 0 };
  const choice = await toPromise(createActor(chooseIpLogic, { input }).start());
  assert.equal(choice.kind === 'free' && choice.candidate.ip, '10.60.0.40');
});
