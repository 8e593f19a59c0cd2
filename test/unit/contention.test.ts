import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, jumpAhead, spreadIndex } from '../../src/services/contention';
import { transientRetryDelay } from '../../src/services/consul-client';

test('the first try takes the first free candidate (plain round robin)', () => {
  assert.equal(spreadIndex(32, 0, () => 0.99), 0);
});

test('after losses, the pick spreads over a window that doubles, within the free candidates', () => {
  assert.equal(spreadIndex(32, 1, () => 0.99), 7);
  assert.equal(spreadIndex(32, 2, () => 0.99), 15);
  assert.equal(spreadIndex(32, 3, () => 0.99), 31);
  assert.equal(spreadIndex(5, 4, () => 0.99), 4);
  assert.equal(spreadIndex(1, 4, () => 0.99), 0);
});

test('simulated storm: 100 contenders on one window all settle on distinct addresses within the retry budget', () => {
  // Each round, every contender still without an address picks among the free ones; one writer wins each address.
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let free = Array.from({ length: 400 }, (_, i) => i);
  let waiting = 100;
  let rounds = 0;
  for (let lost = 0; waiting > 0 && lost <= 10; lost++, rounds++) {
    const picks = new Map<number, number>();
    for (let c = 0; c < waiting; c++) {
      const ip = free[spreadIndex(free.length, lost, random)]!;
      picks.set(ip, (picks.get(ip) ?? 0) + 1);
    }
    waiting -= picks.size;
    free = free.filter((ip) => !picks.has(ip));
  }
  assert.equal(waiting, 0);
  assert.ok(rounds <= 10, `took ${rounds} rounds`);
});

test('backoff grows with losses, is jittered and capped', () => {
  assert.equal(backoffDelay(1, () => 0), 0);
  assert.equal(backoffDelay(1, () => 0.999), 9);
  assert.equal(backoffDelay(4, () => 0.999), 79);
  assert.equal(backoffDelay(20, () => 0.999), 249);
});

test('transient Consul failures are retried about 3 s in all, then given up', () => {
  const delays = [1, 2, 3, 4, 5, 6].map((attempt) => transientRetryDelay(attempt, () => 0.5));
  assert.deepEqual(delays, [100, 200, 400, 800, 1500, 0]);
});

test('after losses a contender jumps a random distance ahead, over a range that doubles, capped', () => {
  assert.equal(jumpAhead(0, () => 0.99), 0);
  assert.equal(jumpAhead(1, () => 0.99), 31);
  assert.equal(jumpAhead(2, () => 0.99), 63);
  assert.equal(jumpAhead(3, () => 0.5), 64);
  assert.equal(jumpAhead(30, () => 0.9999), 4095);
});
