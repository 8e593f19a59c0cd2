// A CHECK that verifies nothing fails (issue 8, item 7): with no address of the pool in prevResult.ips there
// is nothing of this pool to verify, so CHECK exits with 108 instead of 0. Through the built ipam-da-consul
// alone, and through the chain as a runtime runs it (ipam-delegated runs CHECK on every delegate), where a
// normal container's CHECK still passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { assertSuccess, expectCniErrorWithoutWrites, putPool, runCni, runPlugin, scenario, snapshotKv, tempDir } from '../support/plugin';

const T = { timeout: 60_000 };
const root = path.resolve(__dirname, '../..');
const agent = useConsul();

for (const [label, ips, details] of [
  ['empty', [], /prevResult\.ips is empty/],
  ['holding only addresses of other pools', [{ address: '192.168.50.5/24', gateway: '192.168.50.1' }, { address: 'fd00:50::5/64' }], /192\.168\.50\.5\/24, fd00:50::5\/64/],
] as const) {
  test(`CHECK with prevResult.ips ${label} fails with 108: nothing of this pool to verify`, T, async () => {
    const s = scenario([agent.url], 'check-nothing');
    await putPool(agent.kv, s.pool, [{ subnet: '10.47.0.0/24' }]);
    // The container does hold an address: CHECK must still not pass on a result that does not name it.
    assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() }));
    const error = await expectCniErrorWithoutWrites(agent, 108, '1.0.0', () => runPlugin({ command: 'CHECK', containerId: 'c1', config: s.config({ ips: [...ips] }) }));
    assert.match(error.msg, new RegExp(`prevResult\\.ips holds no address of pool ${s.pool}: there is nothing of this pool to verify`));
    assert.match(error.details ?? '', details);
  });
}

test('through ipam-delegated → ipam-ds-static → ipam-da-consul: CHECK of the cached ADD result passes; of a result without the address, fails with 108', T, async () => {
  const cniPath = tempDir('check-nothing-cni-path-');
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) {
    assert.ok(existsSync(path.join(root, 'dist', name)), `dist/${name} is missing: run \`npm run build\` first`);
    symlinkSync(path.join(root, 'dist', name), path.join(cniPath, name));
  }
  const s = scenario([agent.url], 'check-chain');
  await putPool(agent.kv, s.pool, [{ subnet: '10.48.0.0/24', gateway: '10.48.0.1' }]);
  const config = (prevResult?: object) => ({
    cniVersion: '1.0.0',
    name: 'check-net',
    type: 'bridge',
    ipam: { type: 'ipam-delegated', delegates: ['ipam-ds-static', 'ipam-da-consul'], pools: [{ name: s.pool }], consul_servers: [agent.url], data_dir: s.dataDir },
    ...(prevResult ? { prevResult } : {}),
  });
  const env = { CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/none', CNI_PATH: cniPath };
  const delegated = path.join(cniPath, 'ipam-delegated');

  const add = await runCni(delegated, { command: 'ADD', config: config(), env });
  assert.equal(add.code, 0, `ADD failed: ${add.stdout}${add.stderr}`);
  const check = await runCni(delegated, { command: 'CHECK', config: config(add.json), env });
  assert.equal(check.code, 0, `CHECK of the container's own result failed: ${check.stdout}${check.stderr}`);

  const before = await snapshotKv(agent);
  const empty = await runCni(delegated, { command: 'CHECK', config: config({ ...add.json, ips: [] }), env });
  assert.equal(empty.code, 1, `CHECK without the address passed: ${empty.stdout}`);
  assert.equal(empty.json?.code, 108, empty.stdout);
  assert.match(empty.json.msg, /ipam-da-consul CHECK failed: .*nothing of this pool to verify/);
  assert.deepEqual(await snapshotKv(agent), before, 'CHECK wrote nothing');
});
