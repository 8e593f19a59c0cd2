// The files this host keeps under data_dir are input (issue 8, items 3 to 5): each one may be missing, truncated,
// garbage, huge, foreign (another family, another pool's address, someone else's JSON) or a symlink planted by
// whoever can write there. Through the built executable against a real Consul: none of them breaks a command,
// none is trusted as an address it does not spell, none makes the plugin write or delete outside data_dir. And
// the claim markers make ADDs of one host truly exclusive: 30 at once with cas_retries 0 all succeed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { addressOf, allocationKeys, assertSuccess, describeRun, putPool, runPlugin, scenario, tempDir, type Scenario } from '../support/plugin';
import { reportFigures } from '../support/reliability';

let agent: ConsulAgent;
const T = { timeout: 60_000 };

before(async () => {
  agent = await startConsul();
});

after(async () => {
  await agent?.stop();
});

function add(s: Scenario, containerId: string, more: Parameters<Scenario['config']>[0] = {}, ifname = 'eth0') {
  return runPlugin({ command: 'ADD', containerId, ifname, config: s.config(more), timeoutMs: 45_000 });
}

function del(s: Scenario, containerId: string, more: Parameters<Scenario['config']>[0] = {}, ifname = 'eth0') {
  return runPlugin({ command: 'DEL', containerId, ifname, config: s.config(more) });
}

async function addAddress(s: Scenario, containerId: string, more: Parameters<Scenario['config']>[0] = {}): Promise<string> {
  const result = assertSuccess(await add(s, containerId, more));
  return addressOf(result.ips[0].address);
}

const hintPath = (s: Scenario) => path.join(s.dataDir, s.pool, 'last_reserved_ip');

/** The pool key's CreateIndex: the identity the hint is tied to. */
async function poolIdentity(s: Scenario): Promise<number> {
  return (await agent.kv.get(`ipam/${s.pool}`))!.createIndex;
}

test('a last_reserved_ip of valid JSON holding a bad address is no hint: ADD succeeds and rewrites it', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.31.0.0/24' }]);
  const identity = await poolIdentity(s);
  const bad: unknown[] = ['not-an-ip', '10.31.0', '10.31.0.5/24', ' 10.31.0.5', '10.31.0.256', 'fd00::5', '10.99.0.5', 5, null, ['10.31.0.5'], '../../x'];
  let n = 0;
  for (const ip of bad) {
    mkdirSync(path.dirname(hintPath(s)), { recursive: true });
    writeFileSync(hintPath(s), JSON.stringify({ pool: identity, ip }));
    const run = await add(s, `c-${n++}`);
    const result = assertSuccess(run);
    const given = addressOf(result.ips[0].address);
    assert.match(given, /^10\.31\.0\.\d+$/, `${JSON.stringify(ip)}: ${describeRun(run)}`);
    assert.match(run.stderr, /last_reserved_ip/, `a warning names the file: ${JSON.stringify(ip)}\n${describeRun(run)}`);
    assert.deepEqual(JSON.parse(readFileSync(hintPath(s), 'utf8')), { pool: identity, ip: given }, `the hint is rewritten after ${JSON.stringify(ip)}`);
  }
  assert.equal((await allocationKeys(agent.kv, s.pool)).length, bad.length);
});

test('one host races itself no more: 30 ADDs at once on one host with cas_retries 0 all succeed, 30 distinct addresses', T, async (t) => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.32.0.0/24', gateway: '10.32.0.1' }]);
  const containers = Array.from({ length: 30 }, (_, i) => `one-host-${i}`);
  const runs = await Promise.all(containers.map((id) => add(s, id, { ipam: { cas_retries: 0, host_id: 'one-host' } })));
  const failed = runs.filter((run) => run.code !== 0);
  reportFigures('host-files', 'one host, 30 ADDs, cas_retries 0', { adds: runs.length, succeeded: runs.length - failed.length }, t);
  assert.deepEqual(failed.map(describeRun), [], `every ADD succeeds`);
  const addresses = runs.map((run) => addressOf(assertSuccess(run).ips[0].address));
  assert.equal(new Set(addresses).size, 30, addresses.join(' '));
  for (const [i, address] of addresses.entries()) {
    assert.deepEqual(await agent.kv.getJson(`ipam/${s.pool}/${address}`), { target: containers[i], ifname: 'eth0', host: 'one-host' });
  }
  assert.deepEqual(readdirSync(path.join(s.dataDir, s.pool, 'claiming')), [], 'no marker is left behind');
});

/** Files outside data_dir that no command may change: their content, read back after the commands. */
function canaries(): { dir: string; file: string; check(): void } {
  const dir = tempDir('ipam-da-consul-canary-');
  const file = path.join(dir, 'canary');
  writeFileSync(file, 'precious\n');
  mkdirSync(path.join(dir, 'sub'));
  writeFileSync(path.join(dir, 'sub', 'eth0'), 'precious\n');
  writeFileSync(path.join(dir, 'last_reserved_ip'), 'precious\n');
  const listing = () => JSON.stringify([readdirSync(dir).sort(), readdirSync(path.join(dir, 'sub')).sort()]);
  const before = listing();
  return {
    dir,
    file,
    check() {
      assert.equal(listing(), before, `files appeared or vanished in ${dir}`);
      for (const f of [file, path.join(dir, 'sub', 'eth0'), path.join(dir, 'last_reserved_ip')]) assert.equal(readFileSync(f, 'utf8'), 'precious\n', f);
    },
  };
}

test('symlinks planted under data_dir: ADD, CHECK and DEL succeed, and nothing outside data_dir is written or deleted', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.33.0.0/24' }]);
  const outside = canaries();
  const poolDir = path.join(s.dataDir, s.pool);
  // Every level of the store a symlink out, in turn: the pool folder, then the containers, a container's and the claiming folder, then each file.
  const layouts: Array<[string, () => void]> = [
    ['the pool folder', () => symlinkSync(outside.dir, poolDir)],
    ['the containers and claiming folders', () => (mkdirSync(poolDir), symlinkSync(outside.dir, path.join(poolDir, 'containers')), symlinkSync(outside.dir, path.join(poolDir, 'claiming')))],
    ['a container folder', () => (mkdirSync(path.join(poolDir, 'containers'), { recursive: true }), symlinkSync(path.join(outside.dir, 'sub'), path.join(poolDir, 'containers', 'c-2')))],
    ['the files themselves', () => {
      mkdirSync(path.join(poolDir, 'containers', 'c-3'), { recursive: true });
      symlinkSync(outside.file, path.join(poolDir, 'last_reserved_ip'));
      symlinkSync(path.join(outside.dir, 'sub', 'eth0'), path.join(poolDir, 'containers', 'c-3', 'eth0'));
    }],
  ];
  for (const [i, [label, plant]] of layouts.entries()) {
    await import('node:fs').then((fs) => fs.rmSync(poolDir, { recursive: true, force: true }));
    plant();
    const id = `c-${i}`;
    const added = await add(s, id);
    const address = addressOf(assertSuccess(added).ips[0].address);
    const ips = [{ address: `${address}/24` }];
    assertSuccess(await runPlugin({ command: 'CHECK', containerId: id, config: s.config({ ips }) }));
    const deleted = await del(s, id);
    assertSuccess(deleted);
    assert.equal(await agent.kv.get(`ipam/${s.pool}/${address}`), undefined, `${label}: DEL released ${address} (found by the pool search when the note cannot be read)\n${describeRun(deleted)}`);
    outside.check();
  }
});

test('huge, FIFO and garbage host files cost a warning, never a hang or a failure', T, async () => {
  const s = scenario([agent.url]);
  await putPool(agent.kv, s.pool, [{ subnet: '10.34.0.0/24' }]);
  const poolDir = path.join(s.dataDir, s.pool);
  mkdirSync(path.join(poolDir, 'containers', 'c1'), { recursive: true });
  mkdirSync(path.join(poolDir, 'claiming'), { recursive: true });
  const { execFileSync } = await import('node:child_process');
  execFileSync('truncate', ['-s', '1G', path.join(poolDir, 'last_reserved_ip')]);
  execFileSync('mkfifo', [path.join(poolDir, 'containers', 'c1', 'eth0')]);
  for (let i = 1; i <= 5; i++) writeFileSync(path.join(poolDir, 'claiming', `10.34.0.${i}`), i % 2 ? '\u0000garbage' : '4194303 1 not-a-boot');
  const run = await add(s, 'c1');
  assert.equal(addressOf(assertSuccess(run).ips[0].address), '10.34.0.1', 'stale garbage markers are taken over, the huge hint ignored');
  assert.ok(run.elapsedMs < 20_000, describeRun(run));
  assert.match(run.stderr, /last_reserved_ip: it is larger than/);
  assert.match(run.stderr, /containers\/c1\/eth0: it is not a regular file/);
  assert.ok(lstatSync(path.join(poolDir, 'last_reserved_ip')).size < 100, 'the huge hint is replaced');
  assert.equal(readFileSync(path.join(poolDir, 'containers', 'c1', 'eth0'), 'utf8'), '10.34.0.1\n', 'the FIFO is replaced by the note');
  assertSuccess(await del(s, 'c1'));
  assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
  assert.equal(existsSync(path.join(poolDir, 'containers', 'c1')), false);
});
