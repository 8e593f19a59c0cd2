import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CniError, ErrorCode } from '../../src/cni/errors';
import { canonicalIp } from '../../src/cni/codecs';
import { belongsTo, oldAllocationKey, parseAllocation, parsePoolDefinition, readPoolDefinition } from '../../src/services/kv-layout';
import type { AddressRange } from '../../src/services/ip-math';

const failsWith = (code: number, message: RegExp) => (error: unknown) => error instanceof CniError && error.code === code && message.test(error.message);

test('the seed\'s pool value parses', () => {
  const [range] = parsePoolDefinition('pool-name', '[{"subnet":"10.0.20.0/23","rangeStart":"10.0.21.100","rangeEnd":"10.0.21.150","gateway":"10.0.20.1"}]');
  assert.deepEqual(range, { subnet: '10.0.20.0/23', prefix: 23, family: 4, start: '10.0.21.100', end: '10.0.21.150', gateway: '10.0.20.1' });
});

const badPools: Array<[string, string | null, RegExp]> = [
  ['not JSON', 'subnet=10.0.0.0/8', /ipam\/p is not JSON/],
  ['a null value (a folder key)', null, /not JSON/],
  ['an object, not an array', '{"subnet":"10.0.0.0/24"}', /ipam\/p does not hold valid IP Ranges/],
  ['an empty array', '[]', /valid IP Ranges/],
  ['a range without subnet', '[{"gateway":"10.0.0.1"}]', /missing ipam\/p\[0\]\.subnet/],
  ['a subnet with host bits', '[{"subnet":"10.0.0.1/24"}]', /did you mean 10\.0\.0\.0\/24/],
  ['rangeStart outside the subnet', '[{"subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}]', /ipam\/p\[0\]: rangeStart..rangeEnd 10\.0\.1\.1-/],
  ['overlapping ranges', '[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.128/25"}]', /\[0\] and ipam\/p\[1\] overlap/],
];
for (const [label, value, message] of badPools) {
  test(`a pool key holding ${label} is code 101 for the strict writer`, () => assert.throws(() => parsePoolDefinition('p', value), failsWith(ErrorCode.InvalidPool, message)));
}

// What the original serves, the plugin serves too (readPoolDefinition), each oddity noted once.
const servedPools: Array<[string, string, Array<Partial<AddressRange>>, RegExp[]]> = [
  ['no ranges at all', '[]', [], [/holds no IP Ranges/]],
  ['a subnet with host bits (masked)', '[{"subnet":"10.0.0.1/24"}]', [{ subnet: '10.0.0.0/24', start: '10.0.0.1', end: '10.0.0.254' }], [/ipam\/p\[0\]: subnet 10\.0\.0\.1\/24 has host bits set/]],
  ['an IPv6 subnet with host bits', '[{"subnet":"fd00:62::1/64"}]', [{ subnet: 'fd00:62::/64', start: 'fd00:62::1' }], [/host bits/]],
  [
    'bounds beyond the subnet (cut to it)',
    '[{"subnet":"10.0.0.0/24","rangeStart":"9.255.255.0","rangeEnd":"10.0.3.0"}]',
    [{ start: '10.0.0.1', end: '10.0.0.254' }],
    [/rangeStart 9\.255\.255\.0 is not an address of subnet/, /rangeEnd 10\.0\.3\.0 is not an address/],
  ],
  ['a gateway outside the subnet (returned as given)', '[{"subnet":"10.0.0.0/24","gateway":"10.0.9.1"}]', [{ gateway: '10.0.9.1' }], [/gateway 10\.0\.9\.1 is not an address/]],
  ['overlapping ranges', '[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.128/25"}]', [{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.128/25' }], [/ipam\/p\[0\] and ipam\/p\[1\] overlap/]],
];
for (const [label, value, expected, notes] of servedPools) {
  test(`a pool key holding ${label} is served, the oddity noted`, () => {
    const { ranges, oddities } = readPoolDefinition('p', value);
    assert.equal(ranges.length, expected.length);
    expected.forEach((fields, i) => {
      for (const [field, want] of Object.entries(fields)) assert.equal(ranges[i]![field as keyof AddressRange], want, `${field} of range ${i}`);
    });
    assert.equal(oddities.length, notes.length, oddities.join('\n'));
    notes.forEach((note, i) => assert.match(oddities[i]!, note));
  });
}

test('a pool key the original could not read either stays code 101', () => {
  for (const value of ['[{"subnet":"10.0.0.0/24","rangeStart":"10.0.1.1"}]', '[{"subnet":"10.0.0.0/24","rangeEnd":"fd00::1"}]', '{"subnet":"10.0.0.0/24"}']) {
    assert.throws(() => readPoolDefinition('p', value), failsWith(ErrorCode.InvalidPool, /ipam\/p/));
  }
});

test('an allocation written by the original (target only) parses and matches any interface', () => {
  const { ip, allocation } = parseAllocation('p', 'ipam/p/10.0.0.5', '{"target":"c1"}');
  assert.equal(ip, '10.0.0.5');
  assert.equal(belongsTo(allocation, 'c1', 'eth1'), true);
  assert.equal(belongsTo(allocation, 'c2', 'eth1'), false);
});

test('an allocation with ifname matches only that interface', () => {
  const { allocation } = parseAllocation('p', 'ipam/p/fd00::5', '{"target":"c1","ifname":"eth0","host":"h"}');
  assert.equal(belongsTo(allocation, 'c1', 'eth0'), true);
  assert.equal(belongsTo(allocation, 'c1', 'eth1'), false);
});

test('an allocation records its network when it has one; older ones have none', () => {
  assert.equal(parseAllocation('p', 'ipam/p/10.0.0.5', '{"target":"c1","ifname":"eth0","host":"h","network":"net-a"}').allocation.network, 'net-a');
  assert.equal('network' in parseAllocation('p', 'ipam/p/10.0.0.5', '{"target":"c1","ifname":"eth0","host":"h"}').allocation, false);
});

test('a key naming an address in another spelling holds that address: parsed, marked not canonical', () => {
  for (const key of ['ipam/p/FD00::5', 'ipam/p/fd00:0::5', 'ipam/p/fd00:1:2:3:4:5::1']) {
    const { ip, canonical } = parseAllocation('p', key, '{"target":"c1"}');
    assert.equal(canonicalIp(ip), ip, key);
    assert.equal(canonical, false, key);
  }
  assert.equal(parseAllocation('p', 'ipam/p/fd00:1:2:3:4:5::1', '{"target":"c1"}').ip, 'fd00:1:2:3:4:5:0:1');
  assert.equal(parseAllocation('p', 'ipam/p/fd00:1:2:3:4:5:0:1', '{"target":"c1"}').canonical, true);
});

test('oldAllocationKey: the key a release before RFC 5952 keys wrote, only for an address spelled otherwise then', () => {
  assert.equal(oldAllocationKey('p', 'fd00:1:2:3:4:5:0:1'), 'ipam/p/fd00:1:2:3:4:5::1');
  assert.equal(oldAllocationKey('p', 'fd00:9::1'), undefined);
  assert.equal(oldAllocationKey('p', '10.0.0.1'), undefined);
});

const badAllocations: Array<[string, string, string | null, RegExp]> = [
  ['a key not named after an address', 'ipam/p/hello', '{"target":"c1"}', /not named after an IP address/],
  ['a value that is not JSON', 'ipam/p/10.0.0.5', 'c1', /not JSON/],
  ['a value without target', 'ipam/p/10.0.0.5', '{"container":"c1"}', /missing target/],
  ['an empty target', 'ipam/p/10.0.0.5', '{"target":""}', /container ID .* at target, got ""/],
  // Read back, then a path under data_dir: decoded with CNI_CONTAINERID's and CNI_IFNAME's rules.
  ['a target that climbs out of data_dir', 'ipam/p/10.0.0.5', '{"target":"../../../escape","ifname":"f","host":"h"}', /at target, got "\.\.\/\.\.\/\.\.\/escape"/],
  ['a target with a slash', 'ipam/p/10.0.0.5', '{"target":"a/b"}', /at target/],
  ['an ifname ".."', 'ipam/p/10.0.0.5', '{"target":"c1","ifname":".."}', /interface name .* at ifname, got "\.\."/],
  ['an ifname with a slash', 'ipam/p/10.0.0.5', '{"target":"c1","ifname":"../x"}', /at ifname/],
  ['a network that is not a network name', 'ipam/p/10.0.0.5', '{"target":"c1","network":"../n"}', /network name .* at network, got "\.\.\/n"/],
];
for (const [label, key, value, message] of badAllocations) {
  test(`${label} is an invalid Allocation (102)`, () => assert.throws(() => parseAllocation('p', key, value), failsWith(ErrorCode.InvalidAllocation, message)));
}
