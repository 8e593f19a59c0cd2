// The pure parts of consul-ipam check and release --from-report: every problem kind found in one pool, which
// kinds are released, the report read back as untrusted input, durations, and the Prometheus text.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPool, NodeNames } from '../../src/cli/check-problems';
import { isReleasable, problemKinds, readReport, type CheckReport, type ProblemKind } from '../../src/cli/check-report';
import { OperationFailure, UsageError } from '../../src/cli/cli-errors';
import { describeDuration, parseDuration } from '../../src/cli/duration';
import { labelValue, renderPrometheus } from '../../src/cli/prometheus';
import type { KvEntry } from '../../src/services/consul-client';
import { normalizeRange } from '../../src/services/ip-math';

const entry = (key: string, value: unknown, modifyIndex = 7): KvEntry => ({
  key,
  value: typeof value === 'string' || value === null ? value : JSON.stringify(value),
  createIndex: 1,
  modifyIndex,
});
const ranges = [normalizeRange({ subnet: '10.0.20.0/23', rangeStart: '10.0.21.90', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' })];
const nodes = new NodeNames(['node-a', 'Node-B']);
const kindsOf = (pool: ReturnType<typeof checkPool>): Record<string, ProblemKind[]> =>
  Object.fromEntries(pool.problems.map((p) => [p.key, p.problems.map((q) => q.kind)]));

describe('checkPool', () => {
  const checked = checkPool(
    {
      name: 'web',
      ranges,
      entries: [
        entry('ipam/web/', null),
        entry('ipam/web/10.0.21.90', { target: 'c1', ifname: 'eth0', host: 'node-a' }, 10),
        entry('ipam/web/10.0.21.91', { target: 'c2', ifname: 'eth0', host: 'node-gone' }, 11),
        entry('ipam/web/10.0.21.92', { target: 'c3', ifname: 'eth0', host: 'node-b' }, 12), // case differs from the node
        entry('ipam/web/10.0.21.93', { target: 'c3', ifname: 'eth0', host: 'node-b' }, 30), // written last: kept
        entry('ipam/web/10.0.21.94', { target: 'c3', ifname: 'eth0', host: 'node-b' }, 20),
        entry('ipam/web/10.0.21.95', { target: 'c3', ifname: 'eth1', host: 'node-b' }, 21), // another interface
        entry('ipam/web/10.0.21.96', { target: 'c4' }, 22), // another implementation's: no host, no ifname
        entry('ipam/web/10.0.21.97', { target: 'c4' }, 23),
        entry('ipam/web/10.0.21.98', 'not json'),
        entry('ipam/web/10.0.22.5', { target: 'c5', ifname: 'eth0', host: 'node-a' }), // outside every range
        entry('ipam/web/10.0.20.1', { target: 'c6', ifname: 'eth0', host: 'node-a' }), // the gateway
        entry('ipam/web/10.0.20.50', { target: 'c7', ifname: 'eth0', host: 'node-a' }), // static: fine
        entry('ipam/web/fd00:0:0:0:0:0:0:1', { target: 'c8' }), // an address, not in canonical text
        entry('ipam/web/notes', 'hello'),
      ],
    },
    nodes,
  );

  test('each key with its problems; the fine ones are not listed', () =>
    assert.deepEqual(kindsOf(checked), {
      'ipam/web/fd00:0:0:0:0:0:0:1': ['non-canonical-key'],
      'ipam/web/10.0.20.1': ['outside-ranges'],
      'ipam/web/10.0.21.91': ['dead-host'],
      'ipam/web/10.0.21.92': ['duplicate'],
      'ipam/web/10.0.21.94': ['duplicate'],
      'ipam/web/10.0.21.98': ['invalid-value'],
      'ipam/web/10.0.22.5': ['outside-ranges'],
      'ipam/web/notes': ['invalid-key'],
    }));

  test('a problem key carries its value and the ModifyIndex a cas delete must match', () => {
    const dead = checked.problems.find((p) => p.key === 'ipam/web/10.0.21.91')!;
    assert.deepEqual(dead, {
      key: 'ipam/web/10.0.21.91',
      value: '{"target":"c2","ifname":"eth0","host":"node-gone"}',
      modifyIndex: 11,
      ip: '10.0.21.91',
      target: 'c2',
      ifname: 'eth0',
      host: 'node-gone',
      problems: [{ kind: 'dead-host', detail: 'host node-gone is not a node of the Consul cluster' }],
      release: true,
    });
    assert.equal(checked.problems.find((p) => p.key === 'ipam/web/10.0.21.98')!.value, 'not json');
  });

  test('duplicates: the address written last (highest ModifyIndex) is kept and named', () => {
    const detail = checked.problems.find((p) => p.key === 'ipam/web/10.0.21.92')!.problems[0]!.detail;
    assert.match(detail, /c3 eth0 on node-b holds 3 addresses; 10\.0\.21\.93 is kept \(written last, ModifyIndex 30\)/);
  });

  test('hosts match node names without regard to case', () => assert.ok(!('ipam/web/10.0.21.93' in kindsOf(checked))));

  test('what cannot be judged is said: allocations without a host', () =>
    assert.deepEqual(checked.notes, ['2 allocations record no host (written by another implementation): their host cannot be checked']));

  // The non-canonical key holds fd00::1, outside these IPv4 ranges: allocated, but no address of the size.
  test('usage counts the address keys, the non-canonical one among them (the plugin treats its address as taken)', () =>
    assert.deepEqual([checked.size, checked.allocated, checked.free], ['61', 13, '52']));

  test('the non-canonical key names its canonical key; the outside one says where it lies', () => {
    assert.match(checked.problems.find((p) => p.key === 'ipam/web/fd00:0:0:0:0:0:0:1')?.problems[0]?.detail ?? '', /names fd00::1 in another spelling than its canonical key ipam\/web\/fd00::1; the plugin treats the address as taken .* move it with consul-ipam rekey$/);
    assert.match(checked.problems.find((p) => p.key === 'ipam/web/10.0.22.5')!.problems[0]!.detail, /outside every range/);
    assert.match(checked.problems.find((p) => p.key === 'ipam/web/10.0.20.1')!.problems[0]!.detail, /the gateway/);
  });

  test('a dead host\'s duplicate has both problems, one key', () => {
    const pool = checkPool(
      {
        name: 'p',
        ranges,
        entries: [
          entry('ipam/p/10.0.21.90', { target: 'c1', ifname: 'eth0', host: 'node-a' }),
          entry('ipam/p/10.0.21.91', { target: 'c2', ifname: 'eth0', host: 'gone' }, 5),
          entry('ipam/p/10.0.21.92', { target: 'c2', ifname: 'eth0', host: 'gone' }, 6),
        ],
      },
      nodes,
    );
    assert.deepEqual(kindsOf(pool), { 'ipam/p/10.0.21.91': ['dead-host', 'duplicate'], 'ipam/p/10.0.21.92': ['dead-host'] });
  });

  test('when no host of the pool is a node, none is flagged and a note says why', () => {
    const pool = checkPool(
      {
        name: 'p',
        ranges,
        entries: [entry('ipam/p/10.0.21.90', { target: 'c1', ifname: 'eth0', host: 'h1.example' }), entry('ipam/p/10.0.21.91', { target: 'c2', ifname: 'eth0', host: 'h2.example' })],
      },
      nodes,
    );
    assert.deepEqual(pool.problems, []);
    assert.match(pool.notes[0]!, /^no host reported dead: none of the 2 hosts recorded in pool p \(h1\.example, h2\.example\) is a node of the Consul cluster \(the catalog lists 2 nodes: Node-B, node-a\), so host_id is not the Consul node name here/);
    const empty = checkPool({ name: 'p', ranges, entries: [entry('ipam/p/10.0.21.90', { target: 'c1', host: 'h1' })] }, new NodeNames([]));
    assert.deepEqual(empty.problems, []);
    assert.match(empty.notes[0]!, /the catalog lists 0 nodes\), .*node:read/);
  });

  test('a pool key the plugin refuses: no usage, no outside-ranges, the rest still checked', () => {
    const pool = checkPool({ name: 'p', error: 'pool key ipam/p is not JSON', entries: [entry('ipam/p/10.9.9.9', { target: 'c1', ifname: 'eth0', host: 'gone' }), entry('ipam/p/10.0.21.90', { target: 'c0', ifname: 'eth0', host: 'node-a' })] }, nodes);
    assert.deepEqual([pool.error, pool.size, pool.free, pool.allocated], ['pool key ipam/p is not JSON', undefined, undefined, 2]);
    assert.deepEqual(kindsOf(pool), { 'ipam/p/10.9.9.9': ['dead-host'] });
  });
});

describe('which kinds are released', () => {
  test('dead-host, duplicate and invalid-value are; outside-ranges, non-canonical-key and invalid-key are not', () => {
    const released = (Object.keys(problemKinds) as ProblemKind[]).filter((kind) => isReleasable([{ kind, detail: '' }])).sort();
    assert.deepEqual(released, ['dead-host', 'duplicate', 'invalid-value']);
  });
  test('one releasable kind is enough', () =>
    assert.ok(isReleasable([{ kind: 'outside-ranges', detail: '' }, { kind: 'dead-host', detail: '' }])));
});

describe('readReport', () => {
  const report = (allocations: object[], name = 'web'): string =>
    JSON.stringify({ report: 'consul-ipam check', version: 1, createdAt: '2025-01-31T12:00:00.000Z', servers: ['http://127.0.0.1:8500'], server: 'http://127.0.0.1:8500', nodes: [], pools: [{ name, notes: [], allocated: 1, problems: allocations }] } satisfies Omit<CheckReport, 'pools'> & { pools: object[] });
  const dead = { key: 'ipam/web/10.0.21.91', value: '{"target":"c2"}', modifyIndex: 11, host: 'gone', problems: [{ kind: 'dead-host', detail: 'x' }], release: true };
  const refused = (text: string, message: RegExp) =>
    assert.throws(() => readReport('r.json', text), (error: unknown) => error instanceof OperationFailure && error.reason === 'invalid-data' && message.test(error.message));

  test('a report check wrote is read back with each key\'s pool', () => {
    const read = readReport('r.json', report([dead]));
    assert.equal(read.createdAt, '2025-01-31T12:00:00.000Z');
    assert.deepEqual(read.allocations.map((a) => [a.pool, a.key, a.modifyIndex, a.release]), [['web', 'ipam/web/10.0.21.91', 11, true]]);
  });
  test('release is recomputed from the kinds, whatever the file says', () => {
    const read = readReport('r.json', report([{ ...dead, problems: [{ kind: 'outside-ranges', detail: 'x' }], release: true }]));
    assert.equal(read.allocations[0]!.release, false);
  });
  test('a releasable key that is not an allocation key of its pool refuses the whole report', () => {
    for (const key of ['ipam/web', 'ipam/db/10.0.21.91', 'ipam/web/../db/10.0.0.1', 'ipam/web/10.0.21.91/x', 'ipam/web/010.0.21.91']) {
      refused(report([{ ...dead, key }]), /is not an allocation key of pool web/);
    }
  });
  test('other files are refused naming what is wrong', () => {
    refused('{', /not JSON/);
    refused('{"report":"something else"}', /r\.json is not a report of consul-ipam check/);
    refused(report([{ ...dead, modifyIndex: 0 }]), /ModifyIndex/);
    refused(report([{ ...dead, problems: [{ kind: 'gone-fishing', detail: '' }] }]), /problem kind/);
    refused(report([dead], '../x'), /report\.pools\[0\]\.name/);
    refused(report([dead]).replace('2025-01-31T12:00:00.000Z', 'yesterday'), /ISO 8601 time/);
  });
});

describe('durations', () => {
  const cases: Array<[string, number]> = [['0s', 0], ['10m', 600_000], ['90s', 90_000], ['1h30m', 5_400_000], ['250ms', 250], ['1.5h', 5_400_000]];
  for (const [text, ms] of cases) test(`${text} is ${ms} ms`, () => assert.equal(parseDuration('--grace', text), ms));
  for (const text of ['', '10', 'm', '10 m', '-5m', '10d', '5m3']) {
    test(`${JSON.stringify(text)} is refused, naming the option`, () =>
      assert.throws(() => parseDuration('--grace', text), (e: unknown) => e instanceof UsageError && e.message.startsWith(`--grace ${JSON.stringify(text)} is not a duration`)));
  }
  test('ages for people', () => assert.deepEqual([0, 45_900, 3_723_000].map(describeDuration), ['0s', '45s', '1h 2m 3s']));
});

describe('renderPrometheus', () => {
  test('HELP and TYPE for each metric, one sample per pool, exact integers; an invalid pool has no size', () => {
    const text = renderPrometheus([
      { name: 'v6', allocated: 1, size: 18446744073709551617n, free: 18446744073709551616n },
      { name: 'broken', allocated: 2 },
    ]);
    const lines = text.split('\n');
    assert.deepEqual(lines.filter((l) => !l.startsWith('#')), [
      'consul_ipam_pool_size_addresses{pool="v6"} 18446744073709551617',
      'consul_ipam_pool_allocated_addresses{pool="v6"} 1',
      'consul_ipam_pool_allocated_addresses{pool="broken"} 2',
      'consul_ipam_pool_free_addresses{pool="v6"} 18446744073709551616',
      'consul_ipam_pool_valid{pool="v6"} 1',
      'consul_ipam_pool_valid{pool="broken"} 0',
    ]);
    for (const metric of ['size', 'allocated', 'free'].map((m) => `consul_ipam_pool_${m}_addresses`).concat('consul_ipam_pool_valid')) {
      const help = lines.findIndex((l) => l.startsWith(`# HELP ${metric} `));
      assert.ok(help >= 0, metric);
      assert.equal(lines[help + 1], `# TYPE ${metric} gauge`);
    }
  });
  test('label values are escaped', () => assert.equal(labelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd'));
});
