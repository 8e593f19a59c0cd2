import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressValue, candidatesAfter, isReserved, normalizeRange, rangeAllocating, rangeHolding, rangesOverlap } from '../../src/services/ip-math';
import fc from 'fast-check';
import * as ip6addr from 'ip6addr';
import { canonicalIp, formatIpv6, oldSpelling } from '../../src/cni/codecs';

const take = (n: number, ranges: Parameters<typeof candidatesAfter>[0], after?: string) => {
  const out: string[] = [];
  for (const { ip } of candidatesAfter(ranges, after)) {
    if (out.length === n) break;
    out.push(ip);
  }
  return out;
};

describe('canonicalIp', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['IPv4 stays as it is', '10.0.21.5', '10.0.21.5'],
    ['IPv6 is lower case with the longest zero run elided', 'FD00:0001:0:0:0:0:0:05', 'fd00:1::5'],
    ['a single zero group is never elided (the original\'s key)', 'fd00:1:2:3:4:5::1', 'fd00:1:2:3:4:5:0:1'],
    ['IPv4-mapped IPv6 prints as ::ffff:a.b.c.d, as Rust prints it', '::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['IPv4-mapped written in hex', '::ffff:a00:1', '::ffff:10.0.0.1'],
    ['the unspecified address', '0:0:0:0:0:0:0:0', '::'],
    ['loopback', '0:0:0:0:0:0:0:1', '::1'],
    ['a prefix is not an address', '10.0.0.1/24', undefined],
    ['an octet over 255 is not an address', '10.0.0.300', undefined],
    ['surrounding spaces are refused', ' 10.0.0.1', undefined],
    ['path characters are refused', '../10.0.0.1', undefined],
    ['empty is refused', '', undefined],
  ];
  for (const [label, input, expected] of cases) test(label, () => assert.equal(canonicalIp(input), expected));

  // RFC 5952 section 4 (and 5), each example with the text the RFC recommends.
  const rfc5952: Array<[string, string, string]> = [
    ['4.1 leading zeros are suppressed', '2001:0db8::0001', '2001:db8::1'],
    ['4.1 a group of zeros is one 0', '2001:db8:0000:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['4.2.1 :: shortens as much as possible', '2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    ['4.2.1 :: takes the whole run', '2001:db8::0:1', '2001:db8::1'],
    ['4.2.2 :: never stands for one 16-bit 0 field', '2001:db8::1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['4.2.3 the longest run is shortened', '2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['4.2.3 of equal runs, the first is shortened', '2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['4.3 lower case', '2001:DB8::AAAA:1', '2001:db8::aaaa:1'],
    ['5 IPv4-mapped addresses keep the dotted quad', '0:0:0:0:0:ffff:c000:0201', '::ffff:192.0.2.1'],
    ['the facts file: the original\'s key for a single zero group', 'fd00:1:2:3:4:5:0:1', 'fd00:1:2:3:4:5:0:1'],
    ['the facts file: one zero group after the prefix', '2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
  ];
  for (const [label, input, expected] of rfc5952) test(`RFC 5952 ${label}`, () => assert.equal(canonicalIp(input), expected));
});

describe('formatIpv6', () => {
  test('is what every spelling of one address canonicalises to', () => {
    assert.equal(formatIpv6([0xfd00, 1, 2, 3, 4, 5, 0, 1]), 'fd00:1:2:3:4:5:0:1');
    assert.equal(formatIpv6([0, 0, 1, 0, 0, 0, 0, 0]), '0:0:1::');
    assert.equal(formatIpv6([1, 0, 0, 2, 0, 0, 0, 3]), '1:0:0:2::3');
  });
});

describe('oldSpelling', () => {
  // Which addresses have a second spelling: the one releases before RFC 5952 keys wrote (ip6addr's zeroElide).
  const cases: Array<[string, string, string | undefined]> = [
    ['one zero group: the facts file\'s example', 'fd00:1:2:3:4:5:0:1', 'fd00:1:2:3:4:5::1'],
    ['one zero group after the prefix (RFC 5952 4.2.2)', '2001:db8:0:1:1:1:1:1', '2001:db8::1:1:1:1:1'],
    ['a zero first group', '0:1:2:3:4:5:6:7', '::1:2:3:4:5:6:7'],
    ['a zero last group', '1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7::'],
    ['several single zero groups: the first is shortened', '11:0:33:0:55:66:77:88', '11::33:0:55:66:77:88'],
    ['a run of two zero groups: one spelling', 'fd00:1:2:3:4::1', undefined],
    ['a run and a single zero group: one spelling', '2001:0:0:1::1', undefined],
    ['no zero group: one spelling', '1:2:3:4:5:6:7:8', undefined],
    ['the unspecified address', '::', undefined],
    ['IPv4-mapped', '::ffff:10.0.0.1', undefined],
    ['IPv4', '10.0.0.1', undefined],
  ];
  for (const [label, ip, expected] of cases) test(label, () => assert.equal(oldSpelling(ip), expected));

  // The oracle is ip6addr itself, as those releases called it: every pattern of zero and non-zero groups.
  test('is ip6addr zeroElide\'s text wherever that differs from RFC 5952, for all 256 patterns of zero groups', () => {
    let differing = 0;
    for (let pattern = 0; pattern < 256; pattern++) {
      const groups = Array.from({ length: 8 }, (_, i) => ((pattern >> (7 - i)) & 1 ? 0 : 0x11 * (i + 1)));
      const canonical = formatIpv6(groups);
      const elided = ip6addr.parse(canonical).toString({ format: 'v6', zeroElide: true });
      if (elided !== canonical) differing++;
      assert.equal(oldSpelling(canonical), elided === canonical ? undefined : elided, canonical);
      if (elided !== canonical) assert.equal(canonicalIp(elided), canonical, `${elided} parses back to ${canonical}`);
    }
    assert.equal(differing, 54, 'the patterns with zero groups, none next to another');
  });
});

describe('normalizeRange', () => {
  test('defaults: first and last usable address of an IPv4 subnet', () => {
    const range = normalizeRange({ subnet: '10.0.20.0/23' });
    assert.deepEqual([range.start, range.end, range.prefix, range.family], ['10.0.20.1', '10.0.21.254', 23, 4]);
  });
  test('defaults for IPv6 start after the network address and run to the last', () => {
    const range = normalizeRange({ subnet: 'fd00:1::/48' });
    assert.deepEqual([range.start, range.end, range.family], ['fd00:1::1', 'fd00:1:0:ffff:ffff:ffff:ffff:ffff', 6]);
  });
  test('explicit bounds and gateway are kept', () => {
    const range = normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.100', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' });
    assert.deepEqual([range.start, range.end, range.gateway], ['10.0.21.100', '10.0.21.150', '10.0.20.1']);
  });
  const bad: Array<[string, Parameters<typeof normalizeRange>[0], RegExp]> = [
    ['rangeStart outside the subnet', { subnet: '10.0.20.0/24', rangeStart: '10.0.21.1' }, /rangeStart 10\.0\.21\.1 is not an address of subnet/],
    ['rangeEnd of the other family', { subnet: '10.0.20.0/24', rangeEnd: 'fd00::1' }, /rangeEnd/],
    ['start after end', { subnet: '10.0.20.0/24', rangeStart: '10.0.20.9', rangeEnd: '10.0.20.2' }, /comes after/],
    ['gateway outside the subnet', { subnet: '10.0.20.0/24', gateway: '10.0.0.1' }, /gateway/],
  ];
  for (const [label, definition, message] of bad) test(`refuses ${label}`, () => assert.throws(() => normalizeRange(definition), message));
});

describe('reserved addresses', () => {
  const range = normalizeRange({ subnet: '10.0.20.0/24', gateway: '10.0.20.1', rangeStart: '10.0.20.0', rangeEnd: '10.0.20.255' });
  const cases: Array<[string, string, boolean]> = [
    ['the network address', '10.0.20.0', true],
    ['the broadcast address', '10.0.20.255', true],
    ['the gateway', '10.0.20.1', true],
    ['an ordinary address', '10.0.20.2', false],
  ];
  for (const [label, ip, expected] of cases) test(label, () => assert.equal(isReserved(range, ip), expected));
  test('a /31 has no network or broadcast address (RFC 3021)', () => {
    const p2p = normalizeRange({ subnet: '10.0.0.0/31' });
    assert.equal(isReserved(p2p, '10.0.0.0'), false);
    assert.equal(isReserved(p2p, '10.0.0.1'), false);
  });
  test('IPv6 has no broadcast address', () => assert.equal(isReserved(normalizeRange({ subnet: 'fd00::/120' }), 'fd00::ff'), false));
});

describe('candidatesAfter (round robin)', () => {
  const small = normalizeRange({ subnet: '10.0.0.0/29', gateway: '10.0.0.1' });
  test('from the start without a hint, skipping the gateway', () => assert.deepEqual(take(9, [small]), ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6']));
  test('after the hint, wrapping to the start, ending with the hint', () =>
    assert.deepEqual(take(9, [small], '10.0.0.4'), ['10.0.0.5', '10.0.0.6', '10.0.0.2', '10.0.0.3', '10.0.0.4']));
  test('a hint outside every range is ignored', () => assert.deepEqual(take(2, [small], '192.168.0.1'), ['10.0.0.2', '10.0.0.3']));
  test('several ranges in order, wrapping through the first', () => {
    const a = normalizeRange({ subnet: '10.0.1.0/24', rangeStart: '10.0.1.10', rangeEnd: '10.0.1.11' });
    const b = normalizeRange({ subnet: '10.0.2.0/24', rangeStart: '10.0.2.10', rangeEnd: '10.0.2.11' });
    assert.deepEqual(take(9, [a, b], '10.0.1.11'), ['10.0.2.10', '10.0.2.11', '10.0.1.10', '10.0.1.11']);
  });
  test('a /48 is walked lazily, in canonical IPv6 text', () => {
    const big = normalizeRange({ subnet: 'fd00:1::/48' });
    assert.deepEqual(take(3, [big], 'fd00:1::ffff'), ['fd00:1::1:0', 'fd00:1::1:1', 'fd00:1::1:2']);
  });
  test('wraps at the end of an IPv6 range', () => {
    const tail = normalizeRange({ subnet: 'fd00::/64', rangeStart: 'fd00::fffe', rangeEnd: 'fd00::ffff' });
    assert.deepEqual(take(5, [tail], 'fd00::ffff'), ['fd00::fffe', 'fd00::ffff']);
  });
});

describe('pool membership', () => {
  const range = normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.100', rangeEnd: '10.0.21.150' });
  test('a static IP may lie outside rangeStart..rangeEnd but inside the subnet', () => {
    assert.equal(rangeHolding([range], '10.0.20.5'), range);
    assert.equal(rangeAllocating([range], '10.0.20.5'), undefined);
  });
  test('outside the subnet is outside the pool', () => assert.equal(rangeHolding([range], '10.0.22.5'), undefined));
  test('overlap is found, neighbours are not overlapping', () => {
    const a = normalizeRange({ subnet: '10.0.0.0/24' });
    assert.equal(rangesOverlap(a, normalizeRange({ subnet: '10.0.0.0/25' })), true);
    assert.equal(rangesOverlap(a, normalizeRange({ subnet: '10.0.1.0/24' })), false);
  });
});

describe('candidatesAfter over overlapping ranges (served as the original serves them)', () => {
  const ranges = [
    normalizeRange({ subnet: '10.0.0.0/29' }, []),
    normalizeRange({ subnet: '10.0.0.0/28', rangeStart: '10.0.0.3', rangeEnd: '10.0.0.9' }, []),
    normalizeRange({ subnet: '10.0.0.4/30' }, []),
  ];
  test('each address is yielded once, by the first range that allocates it', () => {
    const all = take(100, ranges);
    assert.deepEqual(all, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.7', '10.0.0.8', '10.0.0.9']);
    assert.equal(new Set(all).size, all.length);
  });
  test('a full cycle from any hint covers each address once', () => {
    for (const after of ['10.0.0.2', '10.0.0.6', '10.0.0.8']) {
      const cycle = take(100, ranges, after);
      assert.equal(cycle.length, 9, `after ${after}: ${cycle.join(' ')}`);
      assert.equal(new Set(cycle).size, 9, `after ${after}: ${cycle.join(' ')}`);
      assert.equal(cycle.at(-1), after);
    }
  });
});

// IPv4 is walked, placed and checked by value, without ip6addr (ipv4Value in ip-math.ts): each answer must be
// what ip6addr's own arithmetic gives, for addresses inside, at the edges of and outside random subnets.
describe('IPv4 by value agrees with ip6addr', () => {
  const quad = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((octets) => octets.join('.'));
  test('addressValue and rangeHolding, random addresses and subnets', () => {
    fc.assert(
      fc.property(quad, quad, fc.integer({ min: 1, max: 32 }), (ip, base, prefix) => {
        const cidr = ip6addr.createCIDR(`${base}/${prefix}`);
        const range = normalizeRange({ subnet: `${cidr.address().toString()}/${prefix}` });
        const expected = ip6addr.parse(ip).toString({ format: 'v4' }).split('.').reduce((value, octet) => value * 256n + BigInt(octet), 0n);
        assert.equal(addressValue(ip), expected);
        assert.equal(rangeHolding([range], ip) !== undefined, cidr.contains(ip));
        // The subnet's own edges and the addresses just outside them, which a random address seldom hits.
        const [network, top] = [cidr.address(), prefix === 32 ? cidr.address() : cidr.broadcast()!];
        for (const [addr, inside] of [[network, true], [top, true], [network.offset(-1), false], [top.offset(1), false]] as const) {
          if (addr !== null) assert.equal(rangeHolding([range], addr.toString()) !== undefined, inside, `${addr.toString()} in ${range.subnet}`);
        }
      }),
      { numRuns: 2000, seed: 20261202 },
    );
  });
  test('candidatesAfter walks what ip6addr offsets walk, wrapping past the end', () => {
    fc.assert(
      fc.property(quad, fc.integer({ min: 24, max: 30 }), fc.nat(255), (base, prefix, at) => {
        const cidr = ip6addr.createCIDR(`${base}/${prefix}`);
        const range = normalizeRange({ subnet: `${cidr.address().toString()}/${prefix}` });
        const all: string[] = [];
        for (let addr: ip6addr.Addr | null = ip6addr.parse(range.start); addr !== null && addr.compare(range.end) <= 0; addr = addr.offset(1)) {
          if (!isReserved(range, addr.toString())) all.push(addr.toString());
        }
        const after = all[at % all.length]!;
        const i = all.indexOf(after);
        assert.deepEqual([...candidatesAfter([range], after)].map(({ ip }) => ip), [...all.slice(i + 1), ...all.slice(0, i + 1)]);
      }),
      { numRuns: 300, seed: 20261202 },
    );
  });
  test('non-canonical IPv4 text still goes through ip6addr', () => {
    const range = normalizeRange({ subnet: '10.0.0.0/8' });
    assert.equal(addressValue('010.0.0.1'), addressValue('10.0.0.1')); // read as decimal, as ip6addr does
    assert.equal(rangeHolding([range], '::ffff:10.0.0.1'), undefined); // the text's family: IPv6
  });
});
