// CHECK, VERSION and the "about" run (no CNI_COMMAND: how Nomad fingerprints its CNI bin dir), against a
// real Consul and the built executable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { useConsul } from '../support/consul';
import {
  assertCniError,
  assertSuccess,
  closedPortUrl,
  describeRun,
  childPath,
  commandLine,
  executables,
  expectCniErrorWithoutWrites,
  packageVersion,
  putPool,
  runPlugin,
  scenario,
  type Scenario,
} from '../support/plugin';

const agent = useConsul();
const T = { timeout: 30_000 };
const supportedVersions = ['0.4.0', '1.0.0', '1.1.0'];

type More = Parameters<Scenario['config']>[0];

const check = (s: Scenario, containerId: string, more: More = {}, ifname = 'eth0') =>
  runPlugin({ command: 'CHECK', containerId, ifname, config: s.config(more) });

// ---------------------------------------------------------------------------
// CHECK

for (const cniVersion of supportedVersions) {
  test(`CHECK (cniVersion ${cniVersion}) succeeds for the container's own address and prints the verified result`, T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.40.0.0/24', gateway: '10.40.0.1' }]);
    const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config({ cniVersion }) }));
    const run = await check(s, 'c1', { cniVersion, ips: added.ips });
    assert.deepEqual(assertSuccess(run), added, 'CHECK prints the addresses it verified, as ADD printed them');
  });
}

test('CHECK ignores addresses of prevResult that are not in the pool (another plugin gave them)', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.41.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  const run = await check(s, 'c1', { ips: [...added.ips, { address: '192.168.99.5/24', gateway: '192.168.99.1' }] });
  assert.deepEqual(assertSuccess(run), added);
});

test('CHECK fails with 108 when the address is held by another container, and writes nothing', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.42.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
  assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c2', config: s.config({ requestedIp: '10.42.0.1' }) }));
  const error = await expectCniErrorWithoutWrites(agent, 108, '1.0.0', () => check(s, 'c1', { ips: added.ips }));
  assert.match(`${error.msg} ${error.details}`, /10\.42\.0\.1/, 'the error names the address');
  assert.match(`${error.msg} ${error.details}`, /c2/, 'and who holds it');
});

test('CHECK fails with 108 when the address is not allocated at all', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.43.0.0/24' }]);
  await expectCniErrorWithoutWrites(agent, 108, '0.4.0', () =>
    check(s, 'c1', { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.43.0.7/24' }] }),
  );
});

test('CHECK fails with 108 when the address belongs to the same container on another interface', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.44.0.0/24' }]);
  const added = assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', ifname: 'eth1', config: s.config() }));
  await expectCniErrorWithoutWrites(agent, 108, '1.0.0', () => check(s, 'c1', { ips: added.ips }, 'eth0'));
  assertSuccess(await check(s, 'c1', { ips: added.ips }, 'eth1'));
});

test('CHECK on a missing pool fails with 100; with no server reachable, with 11', T, async () => {
  const s = scenario([agent.url]);
  await expectCniErrorWithoutWrites(agent, 100, '1.0.0', () => check(s, 'c1', { ips: [{ address: '10.45.0.1/24' }] }));
  await putPool(agent.kv, s.pool, [{ subnet: '10.45.0.0/24' }]);
  await expectCniErrorWithoutWrites(agent, 11, '1.0.0', async () =>
    check(s, 'c1', { servers: [await closedPortUrl()], ips: [{ address: '10.45.0.1/24' }] }),
  );
});

// ---------------------------------------------------------------------------
// VERSION

for (const cniVersion of supportedVersions) {
  test(`VERSION answers in the asked version ${cniVersion} with the supported versions`, T, async () => {
    const run = await runPlugin({ command: 'VERSION', config: { cniVersion } });
    assert.equal(run.code, 0, describeRun(run));
    assert.deepEqual(JSON.parse(run.stdout), { cniVersion, supportedVersions });
    assert.equal(run.stdout.trim().split('\n').length, 1);
  });
}

test('VERSION asked in a later 1.x (1.2.0) answers in it and lists it: the support line is =0.4.0 || ^1.0.0', T, async () => {
  const run = await runPlugin({ command: 'VERSION', config: { cniVersion: '1.2.0' } });
  assert.equal(run.code, 0, describeRun(run));
  assert.deepEqual(run.json, { cniVersion: '1.2.0', supportedVersions: [...supportedVersions, '1.2.0'] });
});

test('ADD, CHECK and DEL in cniVersion 1.2.0 are served, each answered in 1.2.0', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.47.0.0/24', gateway: '10.47.0.1' }]);
  const add = await runPlugin({ command: 'ADD', containerId: 'c12', config: s.config({ cniVersion: '1.2.0' }) });
  assert.equal(add.code, 0, describeRun(add));
  assert.deepEqual(add.json, { cniVersion: '1.2.0', ips: [{ address: '10.47.0.2/24', gateway: '10.47.0.1' }], routes: [{ dst: '0.0.0.0/0', gw: '10.47.0.1' }], dns: {} });
  const check = await runPlugin({ command: 'CHECK', containerId: 'c12', config: s.config({ cniVersion: '1.2.0', ips: add.json.ips }) });
  assert.equal(check.code, 0, describeRun(check));
  assert.equal(check.json.cniVersion, '1.2.0');
  const del = await runPlugin({ command: 'DEL', containerId: 'c12', config: s.config({ cniVersion: '1.2.0', ips: add.json.ips }) });
  assert.deepEqual(del.json, { cniVersion: '1.2.0', ips: [], routes: [], dns: {} }, describeRun(del));
  assert.deepEqual(await agent.kv.keys(`ipam/${s.pool}/`), []);
});

test('VERSION needs no CNI_CONTAINERID, CNI_IFNAME or CNI_NETNS', T, async () => {
  const run = await runPlugin({ command: 'VERSION', config: { cniVersion: '1.1.0' }, env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined } });
  assert.equal(run.code, 0, describeRun(run));
  assert.deepEqual(run.json, { cniVersion: '1.1.0', supportedVersions });
});

for (const cniVersion of ['0.3.1', '0.1.0', '2.0.0', '1.0', '1.2', '1.2.0-rc1']) {
  test(`VERSION with unsupported cniVersion ${cniVersion} fails with code 1`, T, async () => {
    const error = assertCniError(await runPlugin({ command: 'VERSION', config: { cniVersion } }), 1, cniVersion);
    for (const v of supportedVersions) assert.ok(`${error.msg} ${error.details}`.includes(v), `the error lists ${v}: ${JSON.stringify(error)}`);
  });
}

test('VERSION with stdin that is not JSON fails with code 6', T, async () => {
  assertCniError(await runPlugin({ command: 'VERSION', config: 'cniVersion: 1.0.0' }), 6);
});

for (const command of ['ADD', 'DEL', 'CHECK']) {
  test(`${command} with unsupported cniVersion 0.3.1 fails with code 1 and writes nothing`, T, async () => {
    const s = scenario([agent.url]);
    await putPool(agent.kv, s.pool, [{ subnet: '10.46.0.0/24' }]);
    await agent.kv.put(`ipam/${s.pool}/10.46.0.1`, { target: 'c1' });
    await expectCniErrorWithoutWrites(agent, 1, '0.3.1', () =>
      runPlugin({ command, containerId: 'c1', config: s.config({ cniVersion: '0.3.1', ips: [{ address: '10.46.0.1/24' }] }) }),
    );
  });
}

// ---------------------------------------------------------------------------
// The "about" run

const semverLine = /\bv?\d+\.\d+\.\d+\b/;

test('about run: no CNI_COMMAND and nothing on stdin exits 0 within 3 s with a line naming a semver version', T, async () => {
  const run = await runPlugin({ timeoutMs: 3000 });
  assert.equal(run.code, 0, describeRun(run));
  assert.ok(run.elapsedMs < 3000, `Nomad's fingerprint limit is 3 s\n${describeRun(run)}`);
  const lines = run.stdout.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, 1, describeRun(run));
  assert.match(lines[0]!, semverLine);
  assert.ok(lines[0]!.includes('ipam-da-consul') && lines[0]!.includes(packageVersion), `names the plugin and its version: ${lines[0]}`);
  assert.equal(run.stderr, '');
});

test('about run: exits within 3 s even when stdin is left open, as an exec without stdin redirection leaves it', T, async () => {
  for (const file of [executables.standard, executables.verbose]) {
    const started = Date.now();
    const [command, args] = commandLine(file);
    const child = spawn(command, args, { env: { PATH: childPath }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(timer);
    child.stdin.destroy();
    assert.equal(code, 0, `${file} exited ${code} after ${Date.now() - started} ms (killed at 3 s?)\n${stdout}`);
    assert.match(stdout, semverLine);
  }
});
