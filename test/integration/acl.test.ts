// Consul ACLs (issue 4, "Access control"): a Consul 1.8.7 agent with ACLs on and default_policy "deny".
// A token allowed to write ipam/ (given as ipam.consul_token or ipam.consul_token_file) serves every command;
// no token, an unknown token or a read-only one fails clearly with "permission denied" (107) — never "pool
// not found" (100), never a DEL or GC that exits 0 while the allocation stays (Consul filters denied keys out
// of ?recurse and ?keys listings silently) — and the token appears in no output and no log line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import {
  addressOf,
  allocationKeys,
  assertSuccess,
  describeRun,
  putPool,
  runPlugin,
  scenario,
  tempDir,
  type PluginRun,
  type RunOptions,
  type Scenario,
} from '../support/plugin';
import { assertCleanError, assertNoKvWrite, createToken, kvState, reportFigures } from '../support/reliability';

const T = { timeout: 60_000 };
const masterToken = randomUUID();
const agent = useConsul({ aclMasterToken: masterToken });
let writeToken: string;
let readToken: string;
let otherPoolToken: string;
const wrongToken = randomUUID();
const figures = { runs: 0, deniedRuns: 0, allocationsChecked: 0 };

before(async () => {
  await agent.ready();
  writeToken = await createToken(agent.url, masterToken, 'ipam-write', 'key_prefix "ipam/" { policy = "write" }');
  readToken = await createToken(agent.url, masterToken, 'ipam-read', 'key_prefix "ipam/" { policy = "read" }');
  otherPoolToken = await createToken(agent.url, masterToken, 'ipam-other-pool', 'key_prefix "ipam/other-pool" { policy = "write" }');
});

type More = Parameters<Scenario['config']>[0];
type Auth = { consul_token?: string; consul_token_file?: string };

/** Writes a token to a file as an operator would (with a trailing newline); returns the path. */
function tokenFile(token: string): string {
  const file = path.join(tempDir('ipam-da-consul-token-'), 'token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}

async function run(options: RunOptions): Promise<PluginRun> {
  figures.runs++;
  return runPlugin(options);
}

const gcEnv = { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined };

/** A GC config for this scenario: the pools named in prevResult (or none: GC then releases nothing). */
function gcConfig(s: Scenario, auth: Auth, valid: Array<{ containerID: string; ifname: string }>, namePools = true, hostId = 'host-a') {
  const config = s.config({ cniVersion: '1.1.0', ipam: { ...auth, host_id: hostId } }) as Record<string, unknown>;
  config['cni.dev/valid-attachments'] = valid;
  if (!namePools) delete config.prevResult;
  return config;
}

/** Makes a pool (as master) with one allocation of c-held, written by ADD with the write token. */
async function poolWithAllocation(label: string): Promise<{ s: Scenario; key: string; ip: string }> {
  const s = scenario([agent.url], label);
  await putPool(agent.kv, s.pool, [{ subnet: '10.60.0.0/24', gateway: '10.60.0.1' }]);
  const added = assertSuccess(await run({ command: 'ADD', containerId: 'c-held', config: s.config({ ipam: { consul_token: writeToken, host_id: 'host-a' } }) }));
  const ip = addressOf(added.ips[0].address);
  return { s, key: `ipam/${s.pool}/${ip}`, ip };
}

/** Asserts the run is a permission-denied error (107) that says so, and that says nothing about a missing pool. */
function assertDenied(run: PluginRun, what: string): void {
  const error = assertCleanError(run, what);
  figures.deniedRuns++;
  assert.equal(error.code, 107, `${what}: expected 107 (permission denied)\n${describeRun(run)}`);
  assert.match(`${error.msg} ${error.details ?? ''}`, /permission denied|ACL not found/i, `${what}: the error must say why\n${describeRun(run)}`);
  assert.doesNotMatch(error.msg, /does not exist|not found: there is no key/i, `${what}: must never look like "pool not found"\n${describeRun(run)}`);
}

for (const via of ['consul_token', 'consul_token_file'] as const) {
  test(`a token allowed to write ipam/ (via ipam.${via}) serves ADD, CHECK, DEL and GC`, T, async () => {
    const auth: Auth = via === 'consul_token' ? { consul_token: writeToken } : { consul_token_file: tokenFile(writeToken) };
    const s = scenario([agent.url], `acl-${via.replace(/_/g, '-')}`);
    await putPool(agent.kv, s.pool, [{ subnet: '10.61.0.0/24', gateway: '10.61.0.1' }]);
    // A host of its own, so that no other test's allocation could be this host's.
    const hostId = `host-${via.replace(/_/g, '-')}`;
    const ipam = { ...auth, host_id: hostId };

    const added = assertSuccess(await run({ command: 'ADD', containerId: 'c1', config: s.config({ ipam }) }));
    assert.equal(added.ips[0].address, '10.61.0.2/24');
    const key = `ipam/${s.pool}/10.61.0.2`;
    assert.deepEqual(await agent.kv.getJson(key), { target: 'c1', ifname: 'eth0', host: hostId, network: 'test-net' });
    figures.allocationsChecked++;

    assertSuccess(await run({ command: 'CHECK', containerId: 'c1', config: s.config({ ipam, ips: added.ips }) }));

    // DEL without prevResult.ips, from a host that has no note of c1: the ACL-safe search of the pool.
    const deleted = assertSuccess(await run({ command: 'DEL', containerId: 'c1', config: s.config({ ipam, dataDir: tempDir() }) }));
    assert.deepEqual(deleted.ips, []);
    assert.equal(await agent.kv.get(key), undefined, 'DEL must release the allocation');

    // GC: c2 is not in the valid list, c3 is.
    assertSuccess(await run({ command: 'ADD', containerId: 'c2', config: s.config({ ipam }) }));
    assertSuccess(await run({ command: 'ADD', containerId: 'c3', config: s.config({ ipam }) }));
    const gc = await run({ command: 'GC', env: gcEnv, config: gcConfig(s, auth, [{ containerID: 'c3', ifname: 'eth0' }], true, hostId) });
    assert.equal(gc.code, 0, describeRun(gc));
    assert.equal(gc.stdout, '', describeRun(gc));
    const left = await allocationKeys(agent.kv, s.pool);
    assert.equal(left.length, 1, `GC must leave only c3's allocation: ${left.join(', ')}`);
    assert.equal((await agent.kv.getJson<{ target: string }>(left[0]!))?.target, 'c3');
    figures.allocationsChecked += 3;

    // GC naming no pool never sweeps ipam/: c3 stays although the list is empty.
    const gcNone = await run({ command: 'GC', env: gcEnv, config: gcConfig(s, auth, [], false, hostId) });
    assert.equal(gcNone.code, 0, describeRun(gcNone));
    assert.deepEqual(await allocationKeys(agent.kv, s.pool), left, 'GC naming no pool must release nothing');
  });
}

for (const [label, auth] of [
  ['no token', () => ({})],
  ['an unknown token', () => ({ consul_token: wrongToken })],
  ['an unknown token in ipam.consul_token_file', () => ({ consul_token_file: tokenFile(wrongToken) })],
  ['a token for another pool only', () => ({ consul_token: otherPoolToken })],
] as Array<[string, () => Auth]>) {
  test(`${label}: every command fails with 107 "permission denied", writes nothing and never releases`, T, async (t) => {
    const resolved = auth();
    const { s, key, ip } = await poolWithAllocation('acl-denied');
    const ipam = { ...resolved, host_id: 'host-a' };
    const before = await kvState(agent.url, masterToken);
    const prevIps = [{ address: `${ip}/24`, gateway: '10.60.0.1' }];

    const cases: Array<[string, RunOptions]> = [
      ['ADD', { command: 'ADD', containerId: 'c-new', config: s.config({ ipam }) }],
      ['ADD with requested-ip', { command: 'ADD', containerId: 'c-static', config: s.config({ ipam, requestedIp: '10.60.0.77' }) }],
      ['CHECK', { command: 'CHECK', containerId: 'c-held', config: s.config({ ipam, ips: prevIps }) }],
      ['DEL with prevResult.ips', { command: 'DEL', containerId: 'c-held', config: s.config({ ipam, ips: prevIps }) }],
      // DEL without prevResult.ips from a host with no note: it must search the pool, where Consul hides what it denies.
      ['DEL searching the pool', { command: 'DEL', containerId: 'c-held', config: s.config({ ipam, dataDir: tempDir() }) }],
      // GC naming the pool, whose ACL-filtered listing would come back empty.
      ['GC naming the pool', { command: 'GC', env: gcEnv, config: gcConfig(s, resolved, []) }],
    ];
    for (const [what, options] of cases) {
      await t.test(what, async () => assertDenied(await run(options), what));
    }

    assert.deepEqual(await agent.kv.getJson(key), { target: 'c-held', ifname: 'eth0', host: 'host-a', network: 'test-net' }, 'the allocation must still be there');
    figures.allocationsChecked++;
    assertNoKvWrite(before, await kvState(agent.url, masterToken), label);
  });
}

test('a read-only token: CHECK works; ADD, DEL and GC fail with 107 and change nothing', T, async (t) => {
  const { s, key, ip } = await poolWithAllocation('acl-read');
  const ipam = { consul_token: readToken, host_id: 'host-a' };
  const prevIps = [{ address: `${ip}/24`, gateway: '10.60.0.1' }];
  const before = await kvState(agent.url, masterToken);

  const checked = assertSuccess(await run({ command: 'CHECK', containerId: 'c-held', config: s.config({ ipam, ips: prevIps }) }));
  assert.equal(checked.ips[0].address, `${ip}/24`);
  const cases: Array<[string, RunOptions]> = [
    ['ADD', { command: 'ADD', containerId: 'c-new', config: s.config({ ipam }) }],
    ['DEL with prevResult.ips', { command: 'DEL', containerId: 'c-held', config: s.config({ ipam, ips: prevIps }) }],
    ['DEL searching the pool', { command: 'DEL', containerId: 'c-held', config: s.config({ ipam, dataDir: tempDir() }) }],
    ['GC naming the pool', { command: 'GC', env: gcEnv, config: gcConfig(s, { consul_token: readToken }, []) }],
  ];
  for (const [what, options] of cases) {
    await t.test(what, async () => assertDenied(await run(options), what));
  }

  assert.deepEqual(await agent.kv.getJson(key), { target: 'c-held', ifname: 'eth0', host: 'host-a', network: 'test-net' });
  figures.allocationsChecked++;
  assertNoKvWrite(before, await kvState(agent.url, masterToken), 'read-only token');
});

test('the token never appears on stdout, on stderr or in the verbose log file', T, async (t) => {
  const { s, ip } = await poolWithAllocation('acl-secret');
  const logDir = tempDir('ipam-da-consul-log-');
  const logFile = path.join(logDir, 'ipam-da-consul.log');
  const env = { IPAM_DA_CONSUL_LOG_FILE: logFile };
  const prevIps = [{ address: `${ip}/24` }];
  const secrets = [writeToken, wrongToken, readToken];
  const runs: PluginRun[] = [];
  for (const auth of [
    { consul_token: writeToken },
    { consul_token_file: tokenFile(writeToken) },
    { consul_token: wrongToken },
    { consul_token_file: tokenFile(wrongToken) },
    { consul_token: readToken },
  ] as Auth[]) {
    const ipam = { ...auth, host_id: 'host-a' };
    for (const command of ['ADD', 'CHECK', 'DEL'] as const) {
      runs.push(await run({ command, containerId: 'c-log', flavour: 'verbose', env, config: s.config({ ipam, ...(command === 'CHECK' ? { ips: prevIps } : {}) }) }));
    }
    runs.push(await run({ command: 'DEL', containerId: 'c-log', flavour: 'verbose', env, config: s.config({ ipam, dataDir: tempDir() }) }));
    runs.push(await run({ command: 'GC', flavour: 'verbose', env: { ...gcEnv, ...env }, config: gcConfig(s, auth, [{ containerID: 'c-held', ifname: 'eth0' }]) }));
    runs.push(await run({ command: 'STATUS', flavour: 'verbose', env: { ...gcEnv, ...env }, config: gcConfig(s, auth, []) }));
  }
  const log = readFileSync(logFile, 'utf8');
  assert.ok(log.length > 0 && /consul GET/.test(log), `the verbose log must record the Consul requests:\n${log.slice(0, 500)}`);
  for (const secret of secrets) {
    for (const r of runs) {
      assert.ok(!r.stdout.includes(secret), `a token is on stdout\n${describeRun(r)}`);
      assert.ok(!r.stderr.includes(secret), `a token is on stderr\n${describeRun(r)}`);
    }
    assert.ok(!log.includes(secret), 'a token is in the verbose log file');
  }
  reportFigures('acl', t.name, { runsScanned: runs.length, logBytesScanned: log.length }, t);
});

test('a token that cannot be sent as a header (a line break inside) is a config error naming the field, never 11 "try again"', T, async (t) => {
  const { s, key } = await poolWithAllocation('acl-newline');
  const before = await kvState(agent.url, masterToken);
  for (const [label, auth, field] of [
    ['ipam.consul_token with a trailing line break', { consul_token: `${writeToken}\n` }, 'ipam.consul_token'],
    ['ipam.consul_token with a line break inside', { consul_token: `${writeToken}\nsecond-line` }, 'ipam.consul_token'],
    ['ipam.consul_token_file of two lines', { consul_token_file: tokenFile(`${writeToken}\n# rotated 2024-01-01`) }, 'ipam.consul_token_file'],
  ] as Array<[string, Auth, string]>) {
    await t.test(label, async () => {
      const r = await run({ command: 'DEL', containerId: 'c-other', config: s.config({ ipam: { ...auth, host_id: 'host-a' } }) });
      assert.ok(!r.stdout.includes(writeToken) && !r.stderr.includes(writeToken), `the token must not be printed\n${describeRun(r)}`);
      // Trimming surrounding white space (as the file's is) and working is fine; otherwise the config is invalid.
      if (r.code === 0) return;
      const error = assertCleanError(r, label);
      assert.ok([5, 7].includes(error.code), `expected 7 (invalid config) or 5, got ${error.code}: retrying cannot fix a malformed token\n${describeRun(r)}`);
      assert.ok(`${error.msg} ${error.details ?? ''}`.includes(field), `the error must name ${field}\n${describeRun(r)}`);
    });
  }
  assert.ok(await agent.kv.get(key));
  assertNoKvWrite(before, await kvState(agent.url, masterToken), 'malformed tokens');
});

test('an unreadable ipam.consul_token_file fails with 5 naming the file, before any request', T, async () => {
  const { s, key } = await poolWithAllocation('acl-file');
  const missing = path.join(tempDir(), 'no-such-token');
  const before = await kvState(agent.url, masterToken);
  for (const command of ['ADD', 'DEL', 'CHECK'] as const) {
    const r = await run({ command, containerId: 'c-held', config: s.config({ ipam: { consul_token_file: missing } }) });
    const error = assertCleanError(r, command);
    assert.equal(error.code, 5, describeRun(r));
    assert.ok(`${error.msg} ${error.details ?? ''}`.includes(missing), describeRun(r));
  }
  assert.ok(await agent.kv.get(key));
  assertNoKvWrite(before, await kvState(agent.url, masterToken), 'unreadable token file');
});

after(() => reportFigures('acl', 'totals', figures));
