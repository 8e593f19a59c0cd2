// chooseIp against a real Consul, for what the executables' tests cannot steer: the random jump after a lost
// write must never turn a pool with a free address into "pool full".
import { test } from 'node:test';
import { mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
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

/** Leaves on `ip` what a crash can: garbage in place of a marker, an hour old. Its path. */
function staleOn(dataDir: string, pool: string, ip: string): string {
  const marks = path.join(dataDir, pool, 'claiming');
  mkdirSync(marks, { recursive: true });
  writeFileSync(path.join(marks, ip), '\u0000garbage');
  const anHourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(path.join(marks, ip), anHourAgo, anHourAgo);
  return path.join(marks, ip);
}

/** A pool of 10.61.0.1 to .100 (too small for homes: every host starts at .1), read through a client that counts its requests. */
async function storming(pool: string) {
  const kv = await connectConsul(agent.url, gotOptions({ servers: [agent.url], connectTimeoutMs: 1000, requestTimeoutMs: 5000 }), silentLog);
  const ranges = [normalizeRange({ subnet: '10.61.0.0/24', rangeStart: '10.61.0.1', rangeEnd: '10.61.0.100' })];
  const entry = await agent.kv.get(`ipam/${pool}`);
  const copy = { createIndex: entry!.createIndex, modifyIndex: entry!.modifyIndex, value: entry!.value! };
  const dataDir = tempDir();
  const input = { kv, pool: { name: pool, ranges, identity: copy.createIndex, copy }, avoid: [], lost: 0, log: silentLog, dataDir, hostId: 'host-a' };
  return { kv, dataDir, input, choose: (more: object = {}) => toPromise(createActor(chooseIpLogic, { input: { ...input, ...more } }).start()) };
}

test('a storm on one host: the window looks past what running neighbours mark, and its first address is marked before the read', async () => {
  await agent.kv.put('ipam/neighbours', [{ subnet: '10.61.0.0/24', rangeStart: '10.61.0.1', rangeEnd: '10.61.0.100' }]);
  const s = await storming('neighbours');
  // 32 running neighbours (our parent stands in) are claiming .1 to .32, read moments ago and not yet written:
  // a window of its own. Read, it would show all 32 free, and be of no use.
  const marks = path.join(s.dataDir, 'neighbours', 'claiming');
  mkdirSync(marks, { recursive: true });
  const held = Array.from({ length: 32 }, (_, i) => `10.61.0.${i + 1}`);
  for (const ip of held) writeFileSync(path.join(marks, ip), markerFor(process.ppid)!);
  const markedAtRead: string[][] = [];
  const kv = Object.create(s.kv, { txn: { value: (ops: Parameters<typeof s.kv.txn>[0]) => (markedAtRead.push(readdirSync(marks)), s.kv.txn(ops)) } });
  const before = s.kv.requests;
  const choice = await s.choose({ kv });
  assert.equal(choice.kind === 'free' && choice.candidate.ip, '10.61.0.33');
  assert.equal(s.kv.requests - before, 1, 'one window read, from .33');
  assert.deepEqual(markedAtRead.map((names) => names.filter((name) => !held.includes(name))), [['10.61.0.33']], '.33 was marked when the read was sent');
  assert.equal(readdirSync(marks).length, 33, 'ours is marked; nothing else');
});

test('a marker in place is judged only when no free candidate is without one: passed over while others are free, taken over when stale and last', async () => {
  // A marker left an hour ago by a process that is gone (garbage, as a crash can leave it) on .1, which is free.
  await agent.kv.put('ipam/passed', [{ subnet: '10.61.0.0/24', rangeStart: '10.61.0.1', rangeEnd: '10.61.0.100' }]);
  const s = await storming('passed');
  const marker = staleOn(s.dataDir, 'passed', '10.61.0.1');
  const choice = await s.choose();
  assert.equal(choice.kind === 'free' && choice.candidate.ip, '10.61.0.2', 'the unmarked .2 is taken, .1 passed over');
  assert.equal(readFileSync(marker, 'utf8'), '\u0000garbage', 'the stale marker is left as it was');
  // The same marker on the only free address of a pool: judged stale, taken over.
  for (let i = 2; i <= 40; i++) await agent.kv.put(`ipam/last-free/10.60.0.${i}`, { target: `other-${i}` });
  const kv = await connectConsul(agent.url, gotOptions({ servers: [agent.url], connectTimeoutMs: 1000, requestTimeoutMs: 5000 }), silentLog);
  const ranges = [normalizeRange({ subnet: '10.60.0.0/24', rangeStart: '10.60.0.1', rangeEnd: '10.60.0.40' })];
  const dataDir = tempDir();
  const lastMarker = staleOn(dataDir, 'last-free', '10.60.0.1');
  const input = { kv, pool: { name: 'last-free', ranges, identity: 1 }, avoid: [], lost: 0, log: silentLog, dataDir, hostId: 'host-a' };
  const last = await toPromise(createActor(chooseIpLogic, { input }).start());
  assert.equal(last.kind === 'free' && last.candidate.ip, '10.60.0.1');
  assert.equal(readFileSync(lastMarker, 'utf8'), markerFor(process.pid), 'taken over: the marker is this process\'s');
});

test("a window read tells this host's other ADDs what it found free: the next claims without a read", async () => {
  await agent.kv.put('ipam/told', [{ subnet: '10.61.0.0/24', rangeStart: '10.61.0.1', rangeEnd: '10.61.0.100' }]);
  await agent.kv.put('ipam/told/10.61.0.20', { target: 'elsewhere' });
  const s = await storming('told');
  const first = await s.choose();
  assert.equal(first.kind === 'free' && first.candidate.ip, '10.61.0.1');
  // Before this first one has claimed anything, the hint says: from .1, 19 addresses free (.20 is taken).
  const hint = JSON.parse(readFileSync(path.join(s.dataDir, 'told', 'last_reserved_ip'), 'utf8'));
  assert.deepEqual({ ip: hint.ip, free: hint.free }, { ip: '10.61.0.100', free: 19 }, 'the address before the window (the walk wraps), and the run');
  assert.equal(JSON.parse(readFileSync(path.join(s.dataDir, 'told', 'pool'), 'utf8')).modifyIndex, s.input.pool.copy.modifyIndex, 'the copy beside it');
  // A neighbour starting now, with that hint: .1 is marked by the first (a running process: our parent stands
  // in for it, as this one would find its own marker its own), so .2, and no request at all.
  writeFileSync(path.join(s.dataDir, 'told', 'claiming', '10.61.0.1'), markerFor(process.ppid)!);
  const before = s.kv.requests;
  const second = await s.choose({ after: hint.ip, knownFree: hint.free });
  assert.equal(second.kind === 'free' && second.candidate.ip, '10.61.0.2');
  assert.equal(second.kind === 'free' && second.freeAfter, 17, '.3 to .19 still known free');
  assert.equal(s.kv.requests - before, 0);
});

test('the run the hint records free is claimed from by link(2) alone: a marker on it is passed over untouched, and a run all marked is left to a window read', async () => {
  await agent.kv.put('ipam/run-marked', [{ subnet: '10.61.0.0/24', rangeStart: '10.61.0.1', rangeEnd: '10.61.0.100' }]);
  const s = await storming('run-marked');
  // .1: garbage left an hour ago by a gone process; .2: a running neighbour's (our parent stands in).
  const stale = staleOn(s.dataDir, 'run-marked', '10.61.0.1');
  writeFileSync(path.join(s.dataDir, 'run-marked', 'claiming', '10.61.0.2'), markerFor(process.ppid)!);
  const known = { after: '10.61.0.100', knownFree: 3 };
  let before = s.kv.requests;
  const third = await s.choose(known);
  assert.equal(third.kind === 'free' && third.candidate.ip, '10.61.0.3', 'the run is .1 to .3: the one unmarked address');
  assert.equal(s.kv.requests - before, 0, 'claimed without a read');
  assert.equal(readFileSync(stale, 'utf8'), '\u0000garbage', 'with no read, a marker on the run is never taken over');
  // Every address of the run marked now (.3 by that claim): nothing is taken without a read; the window is read.
  before = s.kv.requests;
  const next = await s.choose(known);
  assert.equal(s.kv.requests - before, 1, 'one window read');
  assert.equal(next.kind === 'free' && next.candidate.ip, '10.61.0.4', 'the first unmarked address of the window');
  assert.equal(readFileSync(stale, 'utf8'), '\u0000garbage', 'the stale marker is still only passed over while others are free');
});
