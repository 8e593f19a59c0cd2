// The pure pieces of a hint-less host's search: its home in the pool, positions in a pool without walking
// it, and the plan of probes sent when the first window is taken.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { homeMinimumSpan, homePosition, hostHash } from '../../src/services/contention';
import { addressAt, candidatesFrom, normalizeRange, poolSpan, positionOf, rangePositions } from '../../src/services/ip-math';
import { canonicalIp } from '../../src/cni/codecs';
import { defaultProbePlan, probePlan } from '../../src/services/probe-plan';

describe('homePosition', () => {
  test('FNV-1a is the base: the 64-bit FNV-1a of "" is its offset basis, finalised', () => {
    // SplitMix64's finaliser of 0xcbf29ce484222325, computed by hand from its three steps.
    let h = 0xcbf29ce484222325n;
    const m = (1n << 64n) - 1n;
    h = ((h ^ (h >> 30n)) * 0xbf58476d1ce4e5b9n) & m;
    h = ((h ^ (h >> 27n)) * 0x94d049bb133111ebn) & m;
    assert.equal(hostHash(''), h ^ (h >> 31n));
  });

  const cases: Array<[string, string, bigint]> = [
    ['a pool below the minimum starts at rangeStart', 'node-1', homeMinimumSpan - 1n],
    ['a /16', 'node-1', 65534n],
    ['a /48 (past 2^64 positions)', 'node-1', 2n ** 80n - 1n],
    ['a non-ASCII host_id', 'hôte-ü', 65534n],
  ];
  for (const [label, hostId, span] of cases) {
    test(`${label}: within the pool, the same on every call`, () => {
      const home = homePosition(hostId, span);
      assert.ok(home >= 0n && home < span, `${home} of ${span}`);
      assert.equal(home, homePosition(hostId, span));
      if (span < homeMinimumSpan) assert.equal(home, 0n);
    });
  }

  test('a /48 home is not confined to the first 2^64 positions', () => {
    const homes = Array.from({ length: 20 }, (_, i) => homePosition(`node-${i}`, 2n ** 80n));
    assert.ok(homes.some((home) => home >= 2n ** 79n), homes.join(', '));
  });

  test('100 host names that differ only in their last characters spread over a /16: no region holds more than its share', () => {
    const span = 65534n;
    const homes = Array.from({ length: 100 }, (_, i) => Number(homePosition(`node-${i}`, span)));
    // 16 regions of 4096: 6.25 hosts expected in each; FNV without the finaliser puts all 100 in one.
    const regions = new Array<number>(16).fill(0);
    for (const home of homes) regions[Math.floor(home / 4096)]!++;
    assert.ok(Math.max(...regions) <= 15, `hosts per region: ${regions.join(' ')}`);
    assert.equal(new Set(homes).size, 100);
  });
});

describe('positions in a pool', () => {
  const v4 = [normalizeRange({ subnet: '10.1.0.0/16', gateway: '10.1.255.254' }), normalizeRange({ subnet: '10.2.0.0/30' })];
  const v6 = [normalizeRange({ subnet: 'fd00:48::/48' })];

  test('the span counts rangeStart..rangeEnd of every range, reserved addresses included', () => {
    assert.equal(poolSpan(v4), 65534n + 2n);
    assert.equal(poolSpan(v6), 2n ** 80n - 1n);
  });

  const cases: Array<[string, typeof v4, bigint, string]> = [
    ['the first position is rangeStart', v4, 0n, '10.1.0.1'],
    ['one in the middle', v4, 300n, '10.1.1.45'],
    ['the last of the first range (a gateway: a position, never a candidate)', v4, 65533n, '10.1.255.254'],
    ['the first of the second range', v4, 65534n, '10.2.0.1'],
    ['past the end wraps to the start', v4, 65536n, '10.1.0.1'],
    ['-1 is the last', v4, -1n, '10.2.0.2'],
    ['2^79 into a /48, without walking to it', v6, 2n ** 79n - 1n, 'fd00:48:0:8000::'],
    // The project's canonical text (canonicalIp), whatever it is, so that one address is one key.
    ['the last of a /48', v6, 2n ** 80n - 2n, canonicalIp('fd00:48:0:ffff:ffff:ffff:ffff:ffff')!],
  ];
  for (const [label, ranges, position, ip] of cases) {
    test(`${label}: ${position} ↔ ${ip}`, () => {
      assert.equal(addressAt(ranges, position), ip);
      const expected = ((position % poolSpan(ranges)) + poolSpan(ranges)) % poolSpan(ranges);
      assert.equal(positionOf(ranges, ip), expected);
    });
  }

  test('rangePositions: the first position and the span of the range holding a position', () => {
    assert.deepEqual(rangePositions(v4, 0n), { first: 0n, span: 65534n });
    assert.deepEqual(rangePositions(v4, 65533n), { first: 0n, span: 65534n });
    assert.deepEqual(rangePositions(v4, 65535n), { first: 65534n, span: 2n });
    assert.deepEqual(rangePositions(v4, 65536n), { first: 0n, span: 65534n });
    assert.equal(rangePositions([], 0n), undefined);
  });

  test('an address outside rangeStart..rangeEnd has no position', () => {
    assert.equal(positionOf(v4, '10.3.0.1'), undefined);
    assert.equal(positionOf(v4, '10.1.0.0'), undefined);
  });

  test('candidatesFrom starts at the position, skips reserved addresses and wraps through a full cycle', () => {
    const ips = (position: bigint, n: number) => [...take(candidatesFrom(v4, position), n)].map((c) => c.ip);
    assert.deepEqual(ips(65532n, 4), ['10.1.255.253', '10.2.0.1', '10.2.0.2', '10.1.0.1']);
    const small = [normalizeRange({ subnet: '10.5.0.0/29', gateway: '10.5.0.1' })];
    assert.deepEqual([...candidatesFrom(small, 3n)].map((c) => c.ip), ['10.5.0.4', '10.5.0.5', '10.5.0.6', '10.5.0.2', '10.5.0.3']);
    assert.deepEqual([...take(candidatesFrom(v6, 2n ** 79n), 2)].map((c) => c.ip), ['fd00:48:0:8000::1', 'fd00:48:0:8000::2']);
  });
});

function* take<T>(items: Iterable<T>, n: number): Generator<T> {
  if (n <= 0) return;
  for (const item of items) {
    yield item;
    if (--n === 0) return;
  }
}

describe('probePlan', () => {
  const distances = (span: bigint) => probePlan(span).map((round) => round.map((p) => Number(p.distance)));

  test('a range too small for homes is walked in order: no probe, the listing follows the first window', () => {
    assert.deepEqual(probePlan(homeMinimumSpan - 1n), []);
    assert.deepEqual(probePlan(10n), []);
    assert.equal(probePlan(homeMinimumSpan).length, 3);
  });

  test('a /16: doubling distances up to the span, then the pool spread evenly; 3 transactions of 8 probes of 8', () => {
    const plan = distances(65534n);
    assert.deepEqual(plan[0], [32, 64, 128, 256, 512, 1024, 2048, 4096]);
    // ½ (32767), ¼ (16383) and ⅛ (8191) overlap doublings: left out; then ¾, ⅜, ⅝, ⅞, 3/16 …
    assert.deepEqual(plan[1], [8192, 16384, 32768, 49150, 24575, 40958, 57342, 12287]);
    assert.equal(plan.length, 3);
    for (const round of probePlan(65534n)) {
      assert.ok(round.length * defaultProbePlan.probeLength <= defaultProbePlan.opsPerTransaction);
      for (const probe of round) assert.equal(probe.length, 8);
    }
  });

  test('probes never overlap each other or the first window, and stay inside the pool', () => {
    for (const span of [1024n, 1500n, 2046n, 65534n, 2n ** 80n]) {
      const probes = probePlan(span).flat();
      for (const [i, a] of probes.entries()) {
        assert.ok(a.distance >= 32n && a.distance < span, `${span}: ${a.distance}`);
        for (const b of probes.slice(i + 1)) assert.ok(a.distance + 8n <= b.distance || b.distance + 8n <= a.distance, `${span}: ${a.distance} and ${b.distance}`);
      }
    }
  });

  test('a run of 50,000 allocations from the start is crossed within two transactions, wherever in it the host starts', () => {
    const span = 65534n;
    const plan = probePlan(span);
    for (const start of [0n, 1_000n, 25_000n, 49_000n, 49_990n]) {
      const round = plan.findIndex((probes) => probes.some((p) => start + p.distance >= 50_000n && start + p.distance < span));
      assert.ok(round >= 0 && round <= 1, `start ${start}: round ${round}`);
    }
  });

  test('a /48 gallops (its spread would be 2^79 away): 24 doubling distances, from 32 to 32·2^23', () => {
    const probes = probePlan(2n ** 80n).flat();
    assert.equal(probes.length, 24);
    assert.deepEqual(probes.map((p) => p.distance), Array.from({ length: 24 }, (_, i) => 32n * 2n ** BigInt(i)));
  });
});
