// The pure parts of consul-ipam's pool commands: listing pools from key names, sorting allocations,
// and deciding which allocations a new set of ranges would strand.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { poolsFromKeys } from '../../src/cli/pool-list';
import { sortAllocations, checkPoolName } from '../../src/cli/pool-read';
import { misfits } from '../../src/cli/pool-set';
import { addressNote } from '../../src/cli/pool-show';
import { UsageError } from '../../src/cli/cli-errors';
import type { KvEntry } from '../../src/services/consul-client';
import { normalizeRange } from '../../src/services/ip-math';

const entry = (key: string, value: string | null, modifyIndex = 7): KvEntry => ({ key, value, createIndex: 1, modifyIndex });

test('poolsFromKeys: pools are ipam/<name> with no further "/", allocations counted by address-named keys', () => {
  const pools = poolsFromKeys(['ipam/', 'ipam/web', 'ipam/web/', 'ipam/web/10.0.0.5', 'ipam/web/bogus', 'ipam/web/10.0.0.6', 'ipam/web2/10.0.0.7', 'ipam/db', 'ipam/db/fd00::5', 'ipam/web/sub/10.0.0.8']);
  assert.deepEqual([...pools.entries()], [
    ['web', ['10.0.0.5', '10.0.0.6']],
    ['db', ['fd00::5']],
  ]);
});

describe('sortAllocations', () => {
  const sorted = sortAllocations('web', [
    entry('ipam/web/', null),
    entry('ipam/web/10.0.21.100', '{"target":"c1","ifname":"eth0","host":"h1"}', 11),
    entry('ipam/web/10.0.21.99', '{"target":"c2"}', 12),
    entry('ipam/web/bogus', '{"target":"x"}'),
    entry('ipam/web/10.0.21.102', 'not json'),
    entry('ipam/web/10.0.20.50', '{"target":"c3"}', 13),
  ]);
  test('valid allocations sorted by address, with their index', () =>
    assert.deepEqual(sorted.valid, [
      { ip: '10.0.20.50', target: 'c3', modifyIndex: 13 },
      { ip: '10.0.21.99', target: 'c2', modifyIndex: 12 },
      { ip: '10.0.21.100', target: 'c1', ifname: 'eth0', host: 'h1', modifyIndex: 11 },
    ]));
  test('invalid keys listed with the plugin\'s reason; the folder key is not one', () => {
    assert.deepEqual(sorted.invalid.map((i) => i.key), ['ipam/web/10.0.21.102', 'ipam/web/bogus']);
    assert.match(sorted.invalid[0]!.error, /not JSON/);
    assert.match(sorted.invalid[1]!.error, /not named after an IP address/);
  });
  test('an address-named key holds its address even when its value is broken', () =>
    assert.deepEqual(sorted.taken, ['10.0.20.50', '10.0.21.99', '10.0.21.100', '10.0.21.102']));
});

describe('misfits: what a new set of ranges would strand', () => {
  const allocations = sortAllocations('web', [
    entry('ipam/web/10.0.20.50', '{"target":"c3"}'),
    entry('ipam/web/10.0.21.100', '{"target":"c1"}'),
    entry('ipam/web/10.0.21.102', 'broken'),
  ]);
  test('growing or keeping the subnet strands nothing; leaving rangeStart..rangeEnd is allowed (static)', () => {
    assert.deepEqual(misfits([normalizeRange({ subnet: '10.0.20.0/22' })], allocations), []);
    assert.deepEqual(misfits([normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.200' })], allocations), []);
  });
  test('a smaller subnet strands what falls out, broken keys included', () =>
    assert.deepEqual(misfits([normalizeRange({ subnet: '10.0.21.0/25' })], allocations), [{ ip: '10.0.20.50', why: 'is outside every range', target: 'c3' }]));
  test('a gateway on a live allocation strands it', () =>
    assert.deepEqual(misfits([normalizeRange({ subnet: '10.0.20.0/23', gateway: '10.0.21.102' })], allocations), [
      { ip: '10.0.21.102', why: 'would be the gateway of 10.0.20.0/23' },
    ]));
  test('a subnet whose network or broadcast address is live strands it', () =>
    assert.deepEqual(misfits([normalizeRange({ subnet: '10.0.21.100/30' }), normalizeRange({ subnet: '10.0.20.0/24' })], allocations), [
      { ip: '10.0.21.100', why: 'would be the network or broadcast address of 10.0.21.100/30', target: 'c1' },
    ]));
});

test('addressNote tells static, reserved and stranded addresses apart', () => {
  const ranges = [normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.90', gateway: '10.0.20.1' })];
  assert.equal(addressNote(ranges, '10.0.21.100'), undefined);
  assert.equal(addressNote(ranges, '10.0.20.50'), 'static (outside rangeStart..rangeEnd)');
  assert.equal(addressNote(ranges, '10.0.20.1'), 'the gateway');
  assert.equal(addressNote(ranges, '10.0.20.0'), 'network or broadcast address');
  assert.equal(addressNote(ranges, '10.9.0.1'), 'outside every range');
});

test('checkPoolName takes what the plugin takes in prevResult.pools', () => {
  assert.equal(checkPoolName('web-1.a_b'), 'web-1.a_b');
  for (const bad of ['', 'a/b', '..', '-x', 'a b', 'x?y']) assert.throws(() => checkPoolName(bad), UsageError, bad);
});
