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
