// Every error of the seed's list, and bad input of every kind, against a real Consul: the CNI error code,
// one JSON error on stdout in the config's cniVersion, a non-zero exit, no stack trace, and KV left as it was.
//
// The agent runs with limits.kv_max_value_size = 256 bytes, so that a real KV write can be refused without
// ACLs (an allocation value carrying a long host ID is larger than that); every other value here is smaller.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { useConsul } from '../support/consul';
import {
  allocationKeys,
  assertCniError,
  assertSuccess,
  closedPortUrl,
  describeRun,
  expectCniErrorWithoutWrites,
  netConfig,
  putPool,
  runPlugin,
  scenario,
  startBlackhole,
  startHungServer,
  startTripwire,
  type PluginRun,
  type RunOptions,
  type Tripwire,
} from '../support/plugin';

const agent = useConsul({ extraHcl: 'limits { kv_max_value_size = 256 }' });
let tripwire: Tripwire;
const T = { timeout: 30_000 };
/** Not the plugin's fallback (1.0.0), so an error in the fallback version instead of the config's shows. */
const V = '1.1.0';

before(async () => {
  tripwire = await startTripwire();
  await agent.ready();
  // The pool the broken configs name; written once, so the read-only cases can run side by side.
  await putPool(agent.kv, 'ok-pool', [{ subnet: '10.60.0.0/24' }]);
  await agent.kv.put('ipam/ok-pool/10.60.0.5', { target: 'c1' });
  await agent.kv.put('ipam/ok-pool/10.60.0.9', { target: 'c1' });
});

/**
 * Cases that must not write anything run side by side: each checks that the whole KV store is unchanged.
 * Eight at a time, not all seventy: on a loaded 2-core machine seventy plugin starts at once overran the
 * per-test timeout, and a bound keeps the run as fast where the machine is idle.
 */
const sideBySide = { concurrency: 8 };

after(async () => tripwire?.close());

/** A config that would work (pool "ok-pool" exists), to be broken by each case. */
function workingConfig(): ReturnType<typeof netConfig> {
  return netConfig({ servers: [agent.url], pool: 'ok-pool', cniVersion: V });
}

/**
 * Asserts the run fails with this code (in cniVersion; null: any version), writes nothing anywhere in KV and
 * sends no request to the tripwire.
 */
async function expectRejected(code: number, options: RunOptions, cniVersion: string | null = V, seeRun?: (run: PluginRun) => void) {
  const requestsBefore = tripwire.requests.length;
  const error = await expectCniErrorWithoutWrites(
    agent,
    code,
    cniVersion ?? undefined,
    async () => {
      const run = await runPlugin(options);
      seeRun?.(run);
      return run;
    },
    '',
  );
  assert.deepEqual(tripwire.requests.slice(requestsBefore), [], 'no request may be sent for bad input');
  return error;
}

// ---------------------------------------------------------------------------
// ipam.consul_servers

describe('ipam.consul_servers missing, empty or not URLs → 7', sideBySide, () => {
  const cases: Array<[string, unknown]> = [
    ['missing', undefined],
    ['empty', []],
    ['a string, not an array', 'http://127.0.0.1:8500'],
    ['not a URL', ['consul.service']],
    ['not http(s)', ['ftp://127.0.0.1:8500']],
    ['a number', [8500]],
    ['one bad entry among good ones', ['http://127.0.0.1:1', 'not a url']],
  ];
  for (const [label, servers] of cases) {
    test(`consul_servers ${label}`, T, async () => {
      const config = workingConfig();
      if (servers === undefined) delete (config.ipam as Record<string, unknown>).consul_servers;
      else (config.ipam as Record<string, unknown>).consul_servers = servers;
      const error = await expectRejected(7, { command: 'ADD', config });
      assert.match(`${error.msg} ${error.details}`, /consul_servers/, 'the error names the field');
    });
  }
});

// ---------------------------------------------------------------------------
// prevResult.pools

describe('prevResult.pools missing, empty or invalid → 7', sideBySide, () => {
  const cases: Array<[string, (config: ReturnType<typeof netConfig>) => void]> = [
    ['no prevResult at all', (c) => delete (c as Partial<typeof c>).prevResult],
    ['no pools in prevResult', (c) => delete (c.prevResult as Partial<typeof c.prevResult>).pools],
    ['pools empty', (c) => (c.prevResult.pools = [])],
    ['pools an object', (c) => ((c.prevResult as Record<string, unknown>).pools = { name: 'ok-pool' })],
    ['pool without a name', (c) => ((c.prevResult as Record<string, unknown>).pools = [{}])],
    ['pool name a number', (c) => ((c.prevResult as Record<string, unknown>).pools = [{ name: 42 }])],
    ['pool a string', (c) => ((c.prevResult as Record<string, unknown>).pools = ['ok-pool'])],
    ['requested-ip not an IP', (c) => (c.prevResult.pools = [{ name: 'ok-pool', 'requested-ip': 'banana' }])],
    ['requested_ip with a prefix', (c) => (c.prevResult.pools = [{ name: 'ok-pool', requested_ip: '10.60.0.5/24' }])],
  ];
  for (const command of ['ADD', 'DEL', 'CHECK']) {
    for (const [label, breakIt] of cases) {
      // Every case on ADD; DEL and CHECK share the decoder, so the main cases suffice there.
      if (command !== 'ADD' && !['no pools in prevResult', 'pools empty', 'pool without a name'].includes(label)) continue;
      test(`${command}: ${label}`, T, async () => {
          const config = workingConfig();
        config.ipam.consul_servers = [tripwire.url, agent.url];
        config.prevResult.ips = [{ address: '10.60.0.5/24' }];
        breakIt(config);
        const error = await expectRejected(7, { command, containerId: 'c1', config });
        assert.match(`${error.msg} ${error.details}`, /pools|prevResult|requested/, 'the error names the field');
      });
    }
  }
});

test('requested-ip and requested_ip both present and different → 7', T, async () => {
  const config = netConfig({ servers: [tripwire.url, agent.url], pool: 'ok-pool', cniVersion: V, requestedIp: '10.60.0.5', requestedIpSnake: '10.60.0.6' });
  const error = await expectRejected(7, { command: 'ADD', config });
  assert.match(`${error.msg} ${error.details}`, /10\.60\.0\.5/);
  assert.match(`${error.msg} ${error.details}`, /10\.60\.0\.6/);
});

// ---------------------------------------------------------------------------
// Hostile names

describe('hostile pool names and requested IPs → 7, no request, nothing written', sideBySide, () => {
  const hostile = ['../x', 'a/b', 'x?recurse', '%2e%2e', '', '..', '.', 'a\nb', 'tab\there', 'nul\u0000', 'esc\u001b[0m', ' lead', 'trail ', '#frag', 'ok-pool/../../v1/acl'];
  for (const name of hostile) {
    for (const command of ['ADD', 'DEL']) {
      test(`${command} with pool name ${JSON.stringify(name)}`, T, async () => {
          const config = netConfig({ servers: [tripwire.url, agent.url], pool: name, cniVersion: V, ips: [{ address: '10.60.0.9/24' }] });
        await expectRejected(7, { command, containerId: 'c1', config });
      });
    }
  }
  for (const hostId of hostile) {
    test(`ADD with ipam.host_id ${JSON.stringify(hostId)}`, T, async () => {
      const config = netConfig({ servers: [tripwire.url, agent.url], pool: 'ok-pool', cniVersion: V, ipam: { host_id: hostId } });
      await expectRejected(7, { command: 'ADD', config });
    });
  }
  const hostileIps = [...hostile, '10.60.0.5/../x', '10.60.0.5?recurse', '10.60.0.5/24', '10.60.0.5\n', ' 10.60.0.5', '10.60.0.5%2f', '010.060.000.005x'];
  for (const ip of hostileIps) {
    // The snake_case spelling goes through the same codec: a sample of cases is enough there.
    const spellings = ['../x', 'x?recurse', '%2e%2e', '', 'a\nb'].includes(ip) ? (['requestedIp', 'requestedIpSnake'] as const) : (['requestedIp'] as const);
    for (const spelling of spellings) {
      test(`ADD with ${spelling === 'requestedIp' ? 'requested-ip' : 'requested_ip'} ${JSON.stringify(ip)}`, T, async () => {
          const config = netConfig({ servers: [tripwire.url, agent.url], pool: 'ok-pool', cniVersion: V, [spelling]: ip });
        await expectRejected(7, { command: 'ADD', config });
      });
    }
  }
});

// ---------------------------------------------------------------------------
// Environment and stdin

describe('bad environment → 4', sideBySide, () => {
  const cases: Array<[string, RunOptions['env']]> = [
    ['CNI_CONTAINERID missing', { CNI_CONTAINERID: undefined }],
    ['CNI_CONTAINERID empty', { CNI_CONTAINERID: '' }],
    ['CNI_CONTAINERID ../x', { CNI_CONTAINERID: '../x' }],
    ['CNI_CONTAINERID a/b', { CNI_CONTAINERID: 'a/b' }],
    ['CNI_CONTAINERID x?recurse', { CNI_CONTAINERID: 'x?recurse' }],
    ['CNI_CONTAINERID %2e%2e', { CNI_CONTAINERID: '%2e%2e' }],
    ['CNI_CONTAINERID with a newline', { CNI_CONTAINERID: 'a\nb' }],
    ['CNI_IFNAME missing', { CNI_IFNAME: undefined }],
    ['CNI_IFNAME empty', { CNI_IFNAME: '' }],
    ['CNI_IFNAME with a slash', { CNI_IFNAME: 'eth/0' }],
    ['CNI_IFNAME 16 characters', { CNI_IFNAME: 'a'.repeat(16) }],
    ['CNI_IFNAME ..', { CNI_IFNAME: '..' }],
    ['CNI_IFNAME with a space', { CNI_IFNAME: 'eth 0' }],
    ['CNI_IFNAME with a colon', { CNI_IFNAME: 'eth:0' }],
    ['CNI_COMMAND unknown', { CNI_COMMAND: 'FOO' }],
    ['CNI_COMMAND lower case', { CNI_COMMAND: 'add' }],
  ];
  for (const [label, env] of cases) {
    // The checks do not depend on the command: every case on ADD, the first of each variable on DEL and CHECK too.
    const commands = ['CNI_CONTAINERID missing', 'CNI_IFNAME missing'].includes(label) ? ['ADD', 'DEL', 'CHECK'] : ['ADD'];
    for (const command of commands) {
      test(`${command}: ${label}`, T, async () => {
          const config = netConfig({ servers: [tripwire.url, agent.url], pool: 'ok-pool', cniVersion: V, ips: [{ address: '10.60.0.9/24' }] });
        // The error's cniVersion is checked once, below, so that one fault does not fail every case.
        const error = await expectRejected(4, { command, containerId: 'c1', config, env }, null);
        const variable = label.split(' ')[0]!;
        assert.ok(`${error.msg} ${error.details}`.includes(variable), `the error names ${variable}: ${JSON.stringify(error)}`);
      });
    }
  }
});

test("a bad-environment error is printed in the config's cniVersion", T, async () => {
  // The spec: an error's cniVersion is the config's. The runtime sent a config; the plugin must read it first.
  const config = netConfig({ servers: [tripwire.url, agent.url], pool: 'ok-pool', cniVersion: V });
  for (const env of [{ CNI_CONTAINERID: undefined }, { CNI_IFNAME: 'eth/0' }, { CNI_COMMAND: 'FOO' }]) {
    await expectRejected(4, { command: 'ADD', config, env }, V);
  }
  await expectRejected(4, { command: 'ADD', config: { ...config, cniVersion: '0.4.0' }, env: { CNI_IFNAME: '' } }, '0.4.0');
});

describe('stdin that is not a network config', sideBySide, () => {
  const undecodable: Array<[string, string]> = [
    ['empty', ''],
    ['only white space', '  \n\t'],
    ['not JSON', 'cniVersion = "1.0.0"'],
    ['truncated JSON', JSON.stringify(netConfig({ servers: ['http://127.0.0.1:1'], pool: 'ok-pool' })).slice(0, 40)],
    ['larger than any config (2 MB)', `{"cniVersion":"1.1.0","pad":"${'x'.repeat(2 * 1024 * 1024)}"}`],
  ];
  for (const [label, stdin] of undecodable) {
    test(`stdin ${label} → 6`, T, async () => {
      // No config version to answer in: any version string will do.
      await expectRejected(6, { command: 'ADD', config: stdin }, null);
    });
  }
  const invalid: Array<[string, unknown]> = [
    ['a JSON number', 42],
    ['a JSON array', []],
    ['an object without cniVersion', { ipam: { consul_servers: ['http://127.0.0.1:1'] } }],
    ['cniVersion not a string', { cniVersion: 1, ipam: { consul_servers: ['http://127.0.0.1:1'] } }],
    ['no ipam', { cniVersion: V, prevResult: { pools: [{ name: 'ok-pool' }] } }],
  ];
  for (const [label, config] of invalid) {
    test(`stdin ${label} → 7`, T, async () => {
      // A version only where the config has one.
      const version = typeof config === 'object' && config !== null && typeof (config as { cniVersion?: unknown }).cniVersion === 'string' ? V : null;
      await expectRejected(7, { command: 'ADD', config: JSON.stringify(config) }, version);
    });
  }
});

// ---------------------------------------------------------------------------
// Consul unreachable

describe('no Consul server can be reached → 11, within the timeouts', () => {
  test('every server refuses connections: fails at once, naming each server', T, async () => {
    const s = scenario([await closedPortUrl(), await closedPortUrl()]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.61.0.0/24' }]);
    const config = s.config({ cniVersion: V });
    const run = await runPlugin({ command: 'ADD', config });
    const error = assertCniError(run, 11, V);
    for (const server of config.ipam.consul_servers) assert.ok(`${error.msg} ${error.details}`.includes(server), `names ${server}: ${JSON.stringify(error)}`);
    assert.ok(run.elapsedMs < 2000, describeRun(run));
    assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
  });

  test('servers that never complete the TCP handshake: ipam.connect_timeout_ms bounds the wait', T, async () => {
    const holes = [await startBlackhole(), await startBlackhole()];
    try {
      const s = scenario(holes.map((h) => h.url));
      const run = await runPlugin({ command: 'ADD', config: s.config({ cniVersion: V, ipam: { connect_timeout_ms: 300 } }) });
      const error = assertCniError(run, 11, V);
      for (const h of holes) assert.ok(`${error.msg} ${error.details}`.includes(h.url), `names ${h.url}: ${JSON.stringify(error)}`);
      assert.ok(run.elapsedMs >= 550, `two connect timeouts of 300 ms were waited for (else the blackhole is not one)\n${describeRun(run)}`);
      assert.ok(run.elapsedMs < 2500, `returns soon after 2 × 300 ms\n${describeRun(run)}`);
    } finally {
      await Promise.all(holes.map((h) => h.close()));
    }
  });

  test('a server that never completes the TCP handshake: the default connect timeout is at most 2 s', T, async () => {
    const hole = await startBlackhole();
    try {
      const s = scenario([hole.url]);
      const run = await runPlugin({ command: 'ADD', config: s.config({ cniVersion: V }) });
      assertCniError(run, 11, V);
      assert.ok(run.elapsedMs < 3500, `default connect timeout ≤ 2 s\n${describeRun(run)}`);
    } finally {
      await hole.close();
    }
  });

  test('a server that accepts and never answers: ipam.request_timeout_ms bounds the wait', T, async () => {
    const hung = await startHungServer();
    try {
      const s = scenario([hung.url]);
      const run = await runPlugin({ command: 'ADD', config: s.config({ cniVersion: V, ipam: { request_timeout_ms: 400 } }) });
      assertCniError(run, 11, V);
      assert.ok(run.elapsedMs >= 350 && run.elapsedMs < 2500, describeRun(run));
    } finally {
      await hung.close();
    }
  });
});

// ---------------------------------------------------------------------------
// The pool

test('the pool key does not exist → 100, naming the pool; the error is copied to stderr', T, async () => {
  const s = scenario([agent.url]);
  let run: PluginRun | undefined;
  const error = await expectRejected(100, {
    command: 'ADD',
    config: s.config({ cniVersion: V }),
  }, V, (r) => (run = r));
  assert.ok(`${error.msg} ${error.details}`.includes(s.pool), JSON.stringify(error));
  // The seed: error and warn logs are always copied to stderr.
  assert.match(run!.stderr, /ERROR/, describeRun(run!));
  assert.ok(run!.stderr.includes(s.pool), describeRun(run!));
});

test('only the folder ipam/<pool>/ exists, not the pool key → 100', T, async () => {
  const s = scenario([agent.url]);
  await agent.kv.put(`ipam/${s.pool}/`, '');
  await expectRejected(100, { command: 'ADD', config: s.config({ cniVersion: V }) });
});

describe('the pool key does not hold valid IP Ranges → 101', () => {
  const cases: Array<[string, string]> = [
    ['not JSON', 'subnet=10.62.0.0/24'],
    ['empty (null value)', ''],
    ['an object, not an array', JSON.stringify({ subnet: '10.62.0.0/24' })],
    ['a string', JSON.stringify('10.62.0.0/24')],
    ['a range without subnet', JSON.stringify([{ rangeStart: '10.62.0.5' }])],
    ['subnet not CIDR', JSON.stringify([{ subnet: '10.62.0.0' }])],
    ['subnet nonsense', JSON.stringify([{ subnet: 'banana/24' }])],
    ['prefix too long', JSON.stringify([{ subnet: '10.62.0.0/33' }])],
    ['rangeStart beyond the subnet (no address of it left)', JSON.stringify([{ subnet: '10.62.0.0/24', rangeStart: '10.62.1.5' }])],
    ['rangeStart after rangeEnd', JSON.stringify([{ subnet: '10.62.0.0/24', rangeStart: '10.62.0.50', rangeEnd: '10.62.0.40' }])],
    ['rangeStart of the other family', JSON.stringify([{ subnet: '10.62.0.0/24', rangeStart: 'fd00::5' }])],
    ['gateway not an IP', JSON.stringify([{ subnet: '10.62.0.0/24', gateway: 'router' }])],
  ];
  for (const [label, value] of cases) {
    test(label, T, async () => {
      const s = scenario([agent.url]);
      await putPool(agent.kv, s.pool, value);
      const error = await expectRejected(101, { command: 'ADD', config: s.config({ cniVersion: V }) });
      assert.ok(`${error.msg} ${error.details}`.includes(`ipam/${s.pool}`), `names the key: ${JSON.stringify(error)}`);
      assert.deepEqual(await agent.kv.keys(`ipam/${s.pool}/`), []);
    });
  }
  test('CHECK reads the pool too', T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, 'not json');
    await expectRejected(101, { command: 'CHECK', config: s.config({ cniVersion: V, ips: [{ address: '10.62.0.5/24' }] }) });
  });
});

describe('an allocation read by ADD is not a valid Allocation → 102', () => {
  const cases: Array<[string, string]> = [
    ['not JSON', 'c1'],
    ['empty (null value)', ''],
    ['an array', '["c1"]'],
    ['no target', JSON.stringify({ container: 'c1' })],
    ['target empty', JSON.stringify({ target: '' })],
    ['target a number', JSON.stringify({ target: 42 })],
  ];
  test('a key in the folder not named after an address in canonical form, found when ADD lists a crowded pool', T, async () => {
    // 130 taken addresses from the start: more than the windows ADD checks one by one, so it lists the folder's keys.
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.63.1.0/24' }]);
    for (let batch = 0; batch < 2; batch++) {
      const ops = Array.from({ length: 65 }, (_, i) => ({
        KV: { Verb: 'set', Key: `ipam/${s.pool}/10.63.1.${batch * 65 + i + 1}`, Value: Buffer.from('{"target":"other"}').toString('base64') },
      }));
      const res = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops.slice(0, 64)) });
      assert.equal(res.status, 200, await res.text());
      const rest = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops.slice(64)) });
      assert.equal(rest.status, 200, await rest.text());
    }
    await agent.kv.put(`ipam/${s.pool}/not-an-address`, { target: 'other' });
    const error = await expectRejected(102, { command: 'ADD', config: s.config({ cniVersion: V }) });
    assert.ok(`${error.msg} ${error.details}`.includes(`ipam/${s.pool}/not-an-address`), `names the key: ${JSON.stringify(error)}`);
  });
  test('a broken value found when ADD lists a crowded pool, beyond the windows it reads, is 102', T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.63.3.0/24' }]);
    const value = Buffer.from('{"target":"other"}').toString('base64');
    for (let from = 1; from <= 130; from += 64) {
      const ops = Array.from({ length: Math.min(64, 131 - from) }, (_, i) => ({ KV: { Verb: 'set', Key: `ipam/${s.pool}/10.63.3.${from + i}`, Value: value } }));
      const res = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
      assert.equal(res.status, 200, await res.text());
    }
    await agent.kv.put(`ipam/${s.pool}/10.63.3.200`, '{"container":"c9"}');
    const error = await expectRejected(102, { command: 'ADD', config: s.config({ cniVersion: V }) });
    assert.ok(`${error.msg} ${error.details}`.includes(`ipam/${s.pool}/10.63.3.200`), `names the key: ${JSON.stringify(error)}`);
  });
  test('a broken key among taken candidates, with free ones beside it, is still 102 (not passed over)', T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.63.2.0/24' }]);
    await agent.kv.put(`ipam/${s.pool}/10.63.2.1`, { target: 'other' });
    await agent.kv.put(`ipam/${s.pool}/10.63.2.2`, 'garbage');
    const error = await expectRejected(102, { command: 'ADD', config: s.config({ cniVersion: V }) });
    assert.ok(`${error.msg} ${error.details}`.includes(`ipam/${s.pool}/10.63.2.2`), `names the key: ${JSON.stringify(error)}`);
  });
  for (const [label, value] of cases) {
    test(label, T, async () => {
      // A range of two addresses, both taken: ADD must read both keys to know the pool is full.
      const s = scenario([agent.url]);
      await putPool(agent.kv, s.pool, [{ subnet: '10.63.0.0/24', rangeStart: '10.63.0.10', rangeEnd: '10.63.0.11' }]);
      await agent.kv.put(`ipam/${s.pool}/10.63.0.10`, { target: 'other' });
      await agent.kv.put(`ipam/${s.pool}/10.63.0.11`, value);
      const error = await expectRejected(102, { command: 'ADD', config: s.config({ cniVersion: V }) });
      assert.ok(`${error.msg} ${error.details}`.includes(`ipam/${s.pool}/10.63.0.11`), `names the key: ${JSON.stringify(error)}`);
    });
  }
});

describe('requested-ip does not fit the pool → 103', () => {
  const cases: Array<[string, string]> = [
    ['outside every subnet', '10.99.0.5'],
    ['the network address', '10.64.0.0'],
    ['the broadcast address', '10.64.0.255'],
    ['the gateway', '10.64.0.1'],
    ['IPv6 in an IPv4 range', 'fd00:64::5'],
    ['the network address of an IPv6 range', 'fd00:65::'],
    ['the gateway of an IPv6 range', 'fd00:65::1'],
  ];
  for (const [label, ip] of cases) {
    test(label, T, async () => {
      const s = scenario([agent.url]);
      await putPool(agent.kv, s.pool, [
        { subnet: '10.64.0.0/24', rangeStart: '10.64.0.100', rangeEnd: '10.64.0.110', gateway: '10.64.0.1' },
        { subnet: 'fd00:65::/64', gateway: 'fd00:65::1' },
      ]);
      const error = await expectRejected(103, { command: 'ADD', config: s.config({ cniVersion: V, requestedIp: ip }) });
      assert.ok(`${error.msg} ${error.details}`.includes(ip), `names the address: ${JSON.stringify(error)}`);
      assert.deepEqual(await agent.kv.keys(`ipam/${s.pool}/`), []);
    });
  }
});

test('the pool is full → 104; a requested IP is still given', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.66.0.0/24', rangeStart: '10.66.0.10', rangeEnd: '10.66.0.10' }]);
  assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config({ cniVersion: V }) }));
  const error = await expectRejected(104, { command: 'ADD', containerId: 'c2', config: s.config({ cniVersion: V }) });
  assert.ok(`${error.msg} ${error.details}`.includes(s.pool), JSON.stringify(error));
  const run = await runPlugin({ command: 'ADD', containerId: 'c3', config: s.config({ cniVersion: V, requestedIp: '10.66.0.10' }) });
  assert.equal(assertSuccess(run).ips[0].address, '10.66.0.10/24');
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.66.0.10`))?.target, 'c3');
});

// ---------------------------------------------------------------------------
// KV failures

describe('Consul refuses a KV write (value over limits.kv_max_value_size) → 106, nothing written', () => {
  // A valid container ID (the spec sets no length limit) that makes {"target": ...} larger than 256 bytes.
  const longId = `c${'0123456789abcdef'.repeat(20)}`;
  test('ADD, next free address', T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.67.0.0/24' }]);
    const error = await expectRejected(106, { command: 'ADD', containerId: longId, config: s.config({ cniVersion: V }) });
    assert.match(`${error.msg} ${error.details}`, /413|too large/i, `says why: ${JSON.stringify(error)}`);
  });
  test('ADD, requested IP', T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.67.1.0/24' }]);
    await expectRejected(106, { command: 'ADD', containerId: longId, config: s.config({ cniVersion: V, requestedIp: '10.67.1.5' }) });
  });
});
