// Pool sizes and use as `consul-ipam pool list` counts them: BigInt, IPv6 included.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressValue, compareAddresses, countsAgainstSize, poolSize, poolUsage, rangeSize } from '../../src/cli/pool-size';
import { normalizeRange, type RangeDefinition } from '../../src/services/ip-math';

describe('addressValue', () => {
  const cases: Array<[string, string, bigint]> = [
    ['IPv4 zero', '0.0.0.0', 0n],
    ['IPv4 dotted quad', '10.0.21.100', (10n << 24n) + (21n << 8n) + 100n],
    ['IPv4 top', '255.255.255.255', 4294967295n],
    ['IPv6 low', '::1', 1n],
    ['IPv6 past 2^64', 'fd00:1::ffff:ffff:ffff:ffff', (0xfd00n << 112n) + (1n << 96n) + 0xffffffffffffffffn],
    ['IPv6 top', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
  ];
  for (const [label, ip, value] of cases) test(label, () => assert.equal(addressValue(ip), value));
});

test('compareAddresses sorts as numbers, IPv4 before IPv6', () => {
  const sorted = ['fd00::10', '10.0.21.100', 'fd00::9', '10.0.21.99', '10.0.20.50', '9.255.255.255'].sort(compareAddresses);
  assert.deepEqual(sorted, ['9.255.255.255', '10.0.20.50', '10.0.21.99', '10.0.21.100', 'fd00::9', 'fd00::10']);
});

describe('rangeSize: rangeStart..rangeEnd without network, IPv4 broadcast and gateway', () => {
  const cases: Array<[string, RangeDefinition, bigint]> = [
    ['a /24 by default: .1 to .254', { subnet: '10.0.0.0/24' }, 254n],
    ['a /24 with its gateway inside the span', { subnet: '10.0.0.0/24', gateway: '10.0.0.1' }, 253n],
    ['the seed range: gateway outside the span', { subnet: '10.0.20.0/23', rangeStart: '10.0.21.100', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' }, 51n],
    ['an explicit span over network and broadcast counts neither', { subnet: '10.0.0.0/24', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.255' }, 254n],
    ['a gateway on the network address is counted once', { subnet: '10.0.0.0/24', rangeStart: '10.0.0.0', gateway: '10.0.0.0' }, 254n],
    ['a /31 point-to-point link has two usable addresses', { subnet: '10.0.0.0/31' }, 2n],
    ['a /32 has one', { subnet: '10.0.0.7/32' }, 1n],
    ['a /32 that is its own gateway has none', { subnet: '10.0.0.7/32', gateway: '10.0.0.7' }, 0n],
    ['an IPv6 /64: every address but the subnet-router anycast one', { subnet: 'fd00:1::/64' }, (1n << 64n) - 1n],
    ['an IPv6 /64 starting at its network address', { subnet: 'fd00:1::/64', rangeStart: 'fd00:1::' }, (1n << 64n) - 1n],
    ['an IPv6 /48 with a gateway', { subnet: 'fd00:1::/48', gateway: 'fd00:1::1' }, (1n << 80n) - 2n],
    ['an IPv6 /127', { subnet: 'fd00::/127' }, 2n],
    ['an IPv6 /128', { subnet: 'fd00::5/128' }, 1n],
  ];
  for (const [label, definition, size] of cases) test(label, () => assert.equal(rangeSize(normalizeRange(definition)), size));
});

describe('poolUsage', () => {
  const ranges = [
    normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.90', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' }),
    normalizeRange({ subnet: 'fd00:1::/64' }),
  ];
  test('sizes of the ranges add up', () => assert.equal(poolSize(ranges), 61n + (1n << 64n) - 1n));
  test('only addresses ADD could hand out count against the size', () => {
    assert.equal(countsAgainstSize(ranges, '10.0.21.100'), true);
    assert.equal(countsAgainstSize(ranges, '10.0.20.50'), false, 'a static address outside rangeStart..rangeEnd');
    assert.equal(countsAgainstSize(ranges, '10.0.20.1'), false, 'the gateway');
    assert.equal(countsAgainstSize(ranges, '192.168.0.1'), false, 'outside every range');
    assert.equal(countsAgainstSize(ranges, 'fd00:1::5'), true);
  });
  test('allocated counts every key, free only what the size lost', () => {
    const usage = poolUsage(ranges.slice(0, 1), ['10.0.21.100', '10.0.21.99', '10.0.20.50', '192.168.0.1']);
    assert.deepEqual(usage, { size: 61n, allocated: 4, free: 59n, usedPercent: 3.27 });
  });
  test('an IPv6 pool is far from full and its numbers stay exact', () => {
    const usage = poolUsage(ranges, ['fd00:1::1', '10.0.21.90']);
    assert.equal(usage.free, 61n + (1n << 64n) - 1n - 2n);
    assert.equal(usage.usedPercent, 0);
  });
  test('a full pool is 100%', () => {
    const small = [normalizeRange({ subnet: '10.0.0.0/30' })];
    assert.deepEqual(poolUsage(small, ['10.0.0.1', '10.0.0.2']), { size: 2n, allocated: 2, free: 0n, usedPercent: 100 });
  });
  test('a pool with no allocatable address has no percentage', () =>
    assert.equal(poolUsage([normalizeRange({ subnet: '10.0.0.7/32', gateway: '10.0.0.7' })], []).usedPercent, null));
});
