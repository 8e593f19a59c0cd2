import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { forgetHeld, markClaiming, recall, rememberHeld, rememberLastReserved, unmarkClaiming } from '../../src/services/host-store';

const dataDir = () => mkdtempSync(path.join(tmpdir(), 'host-store-'));

test('the hint is tied to the pool identity: a re-created pool starts afresh', async () => {
  const dir = dataDir();
  await rememberLastReserved(dir, 'p', 41, '10.0.0.7');
  assert.deepEqual(await recall(dir, 'p', 41, 'c1', 'eth0'), { lastReserved: '10.0.0.7' });
  assert.deepEqual(await recall(dir, 'p', 42, 'c1', 'eth0'), {});
  rmSync(dir, { recursive: true });
});

test('the address held by a container and interface is remembered until forgotten', async () => {
  const dir = dataDir();
  await rememberHeld(dir, 'p', 'c1', 'eth0', '10.0.0.9');
  assert.equal((await recall(dir, 'p', 1, 'c1', 'eth0')).held, '10.0.0.9');
  assert.equal((await recall(dir, 'p', 1, 'c1', 'eth1')).held, undefined);
  await forgetHeld(dir, 'p', 'c1', 'eth0');
  assert.equal((await recall(dir, 'p', 1, 'c1', 'eth0')).held, undefined);
  rmSync(dir, { recursive: true });
});

test('a garbled hint file is no hint', async () => {
  const dir = dataDir();
  await rememberLastReserved(dir, 'p', 1, '10.0.0.7');
  writeFileSync(path.join(dir, 'p', 'last_reserved_ip'), '{not json');
  assert.deepEqual(await recall(dir, 'p', 1, 'c1', 'eth0'), {});
  rmSync(dir, { recursive: true });
});

test('an address marked by a live process of this host cannot be marked again until unmarked', async () => {
  const dir = dataDir();
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5'), true);
  // Another live process (our parent stands in for it) holds 10.0.0.6.
  writeFileSync(path.join(dir, 'p', 'claiming', '10.0.0.6'), String(process.ppid));
  assert.equal(await markClaiming(dir, 'p', '10.0.0.6'), false);
  await unmarkClaiming(dir, 'p', '10.0.0.6');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.6'), true);
  rmSync(dir, { recursive: true });
});

test('a marker left by a process that died is taken over', async () => {
  const dir = dataDir();
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5'), true);
  writeFileSync(path.join(dir, 'p', 'claiming', '10.0.0.5'), '2147483646'); // no such process
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5'), true);
  rmSync(dir, { recursive: true });
});

test('a data dir that cannot be written never blocks a claim', async () => {
  const dir = dataDir();
  const file = path.join(dir, 'not-a-dir');
  writeFileSync(file, '');
  assert.equal(await markClaiming(file, 'p', '10.0.0.5'), true);
  rmSync(dir, { recursive: true });
});
