// The whole delegation chain, as a runtime (or the bridge plugin) runs it: the built ipam-delegated found
// in a CNI_PATH directory, running ipam-ds-static and ipam-da-consul from there against a real Consul,
// with CNI_* in the environment and the config on stdin; then KV is read to see what stayed allocated.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { builtExecutable, runCni } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const ours = ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul'];
const semver = /\bv?\d+\.\d+\.\d+\b/;


const consul = useConsul();
let cniPath: string;
let dataDir: string;
let failLog: string;
const timings: string[] = [];

before(async () => {
  for (const name of ours) {
    assert.ok(existsSync(builtExecutable(name)), `${builtExecutable(name)} is missing: run \`npm run build\` first`);
  }
  cniPath = mkdtempSync(path.join(tmpdir(), 'chain-cni-path-'));
  dataDir = mkdtempSync(path.join(tmpdir(), 'chain-data-'));
  for (const name of ours) symlinkSync(builtExecutable(name), path.join(cniPath, name));
  // A third delegate that fails every ADD after the allocator has allocated, and records what it was run
  // with, so the rollback can be seen from outside.
  failLog = path.join(dataDir, 'fail.log');
  const script = path.join(cniPath, 'ipam-dx-fail');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `printf '%s ' "$CNI_COMMAND" >> '${failLog}'`,
      `cat >> '${failLog}'`,
      `echo >> '${failLog}'`,
      'if [ "$CNI_COMMAND" = ADD ]; then',
      `  echo '{"cniVersion":"1.0.0","code":142,"msg":"refused on purpose","details":"ipam-dx-fail always fails ADD"}'`,
      '  exit 1',
      'fi',
      `echo '{"cniVersion":"1.0.0","ips":[],"routes":[],"dns":{}}'`,
    ].join('\n'),
    { mode: 0o755 },
  );
});

after(async () => {
  if (cniPath) rmSync(cniPath, { recursive: true, force: true });
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  if (timings.length) console.log(`chain timings: ${timings.join(', ')}`);
});

let pools = 0;
/** A pool of its own for each test: 10.99.<n>.10-20, gateway .1. */
async function makePool(): Promise<{ name: string; subnet: string; gateway: string }> {
  pools += 1;
  const name = `chain-${process.pid}-${pools}`;
  const subnet = `10.99.${pools}.0/24`;
  const gateway = `10.99.${pools}.1`;
  await consul.kv.put(`ipam/${name}`, [{ subnet, rangeStart: `10.99.${pools}.10`, rangeEnd: `10.99.${pools}.20`, gateway }]);
  return { name, subnet, gateway };
}

function networkConfig(options: { pools: object[]; delegates?: string[]; cniVersion?: string; prevResult?: object }) {
  return {
    cniVersion: options.cniVersion ?? '1.0.0',
    name: 'chain-net',
    type: 'bridge',
    ipam: {
      type: 'ipam-delegated',
      delegates: options.delegates ?? ['ipam-ds-static', 'ipam-da-consul'],
      pools: options.pools,
      consul_servers: [consul.url],
      data_dir: dataDir,
    },
    ...(options.prevResult ? { prevResult: options.prevResult } : {}),
  };
}

function cniEnv(containerId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/none', CNI_PATH: cniPath, ...extra };
}

const delegated = () => path.join(cniPath, 'ipam-delegated');

/** The allocation keys under a pool, with their values. */
async function allocations(pool: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of await consul.kv.keys(`ipam/${pool}/`)) out[key] = await consul.kv.getJson(key);
  return out;
}

describe('ADD, CHECK and DEL through ipam-delegated → ipam-ds-static → ipam-da-consul', () => {
  for (const cniVersion of ['0.4.0', '1.0.0', '1.1.0']) {
    test(`cniVersion ${cniVersion}`, async () => {
      const pool = await makePool();
      const id = `chain-${cniVersion.replace(/\./g, '')}`;
      const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ cniVersion, pools: [{ name: pool.name }] }), env: cniEnv(id) });
      assert.equal(add.code, 0, `ADD failed: ${add.stdout}${add.stderr}`);
      timings.push(`ADD ${add.ms} ms`);
      const result = add.json;
      assert.equal(result.cniVersion, cniVersion);
      assert.equal(result.ips.length, 1);
      const [address, prefix] = String(result.ips[0].address).split('/');
      assert.equal(prefix, '24');
      assert.match(address!, /^10\.99\.\d+\.(1\d|20)$/, 'inside rangeStart..rangeEnd');
      assert.equal(result.ips[0].gateway, pool.gateway);
      assert.equal(result.ips[0].version, cniVersion === '0.4.0' ? '4' : undefined, '"version" only at 0.4.0');
      assert.deepEqual(result.routes, [{ dst: '0.0.0.0/0', gw: pool.gateway }]);
      assert.equal(result.pools, undefined, "the allocator's output is returned, not the selector's");
      const held = await allocations(pool.name);
      assert.deepEqual(Object.keys(held), [`ipam/${pool.name}/${address}`]);
      assert.equal((held[`ipam/${pool.name}/${address}`] as { target: string }).target, id);

      const check = await runCni(delegated(), { command: 'CHECK', config: networkConfig({ cniVersion, pools: [{ name: pool.name }], prevResult: result }), env: cniEnv(id) });
      assert.equal(check.code, 0, `CHECK failed: ${check.stdout}`);
      timings.push(`CHECK ${check.ms} ms`);
      assert.equal(check.json.ips[0].address, result.ips[0].address);

      // Another container's CHECK of the same result fails, with the allocator's code passed through.
      const wrong = await runCni(delegated(), { command: 'CHECK', config: networkConfig({ cniVersion, pools: [{ name: pool.name }], prevResult: result }), env: cniEnv('someone-else') });
      assert.equal(wrong.code, 1);
      assert.equal(wrong.json.code, 108, wrong.stdout);
      assert.match(wrong.json.msg, /ipam-da-consul CHECK failed/);
      assert.equal(wrong.json.cniVersion, cniVersion);

      const del = await runCni(delegated(), { command: 'DEL', config: networkConfig({ cniVersion, pools: [{ name: pool.name }], prevResult: result }), env: cniEnv(id) });
      assert.equal(del.code, 0, `DEL failed: ${del.stdout}`);
      timings.push(`DEL ${del.ms} ms`);
      assert.deepEqual(del.json.ips, []);
      assert.deepEqual(await allocations(pool.name), {});

      const again = await runCni(delegated(), { command: 'DEL', config: networkConfig({ cniVersion, pools: [{ name: pool.name }], prevResult: result }), env: cniEnv(id) });
      assert.equal(again.code, 0, `a second DEL must succeed: ${again.stdout}`);
    });
  }

  test('a requested-ip chosen by the selector is the one allocated', async () => {
    const pool = await makePool();
    const wanted = pool.gateway.replace(/\.1$/, '.50');
    const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ pools: [{ name: pool.name, 'requested-ip': wanted }] }), env: cniEnv('static-1') });
    assert.equal(add.code, 0, add.stdout);
    assert.equal(add.json.ips[0].address, `${wanted}/24`);
    assert.deepEqual(Object.keys(await allocations(pool.name)), [`ipam/${pool.name}/${wanted}`]);
  });

  test('DEL without a prevResult (a runtime with no cache) still releases', async () => {
    const pool = await makePool();
    const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ pools: [{ name: pool.name }] }), env: cniEnv('nocache-1') });
    assert.equal(add.code, 0, add.stdout);
    const del = await runCni(delegated(), { command: 'DEL', config: networkConfig({ pools: [{ name: pool.name }] }), env: cniEnv('nocache-1') });
    assert.equal(del.code, 0, del.stdout);
    assert.deepEqual(await allocations(pool.name), {});
  });
});

describe('failures', () => {
  test('the allocator failing (a pool that does not exist): ADD fails with its code, nothing is allocated', async () => {
    const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ pools: [{ name: 'no-such-pool' }] }), env: cniEnv('nopool-1') });
    assert.equal(add.code, 1);
    assert.equal(add.json.code, 100, add.stdout);
    assert.match(add.json.msg, /^delegate ipam-da-consul ADD failed: .*no-such-pool/);
    assert.equal(add.json.cniVersion, '1.0.0');
    assert.deepEqual(await consul.kv.keys('ipam/no-such-pool/'), []);
  });

  test('a delegate failing after the allocator allocated: the rollback releases the address', async () => {
    const pool = await makePool();
    writeFileSync(failLog, '');
    const add = await runCni(delegated(), {
      command: 'ADD',
      config: networkConfig({ pools: [{ name: pool.name }], delegates: ['ipam-ds-static', 'ipam-da-consul', 'ipam-dx-fail'] }),
      env: cniEnv('rollback-1'),
    });
    assert.equal(add.code, 1);
    assert.equal(add.json.code, 142, 'the failing delegate keeps its code');
    assert.equal(add.json.msg, 'delegate ipam-dx-fail ADD failed: refused on purpose');
    assert.match(add.json.details, /ipam-dx-fail always fails ADD; rolled back with DEL/);
    assert.deepEqual(await allocations(pool.name), {}, 'nothing is left allocated');

    const runs = readFileSync(failLog, 'utf8').trim().split('\n').map((line) => {
      const space = line.indexOf(' ');
      return { command: line.slice(0, space), config: JSON.parse(line.slice(space + 1)) };
    });
    assert.deepEqual(runs.map((r) => r.command), ['ADD', 'DEL', 'DEL'], 'ADD, its immediate DEL, then its DEL as the last of the rollback');
    // Its ADD got the allocator's result as prevResult, with the address.
    assert.match(runs[0]!.config.prevResult.ips[0].address, /^10\.99\./);
    assert.deepEqual(runs[2]!.config.prevResult.ips, [], "the last rollback DEL got the allocator's DEL output");
  });

  test('a delegate missing from CNI_PATH: a clear error naming it and the path', async () => {
    const pool = await makePool();
    const add = await runCni(delegated(), {
      command: 'ADD',
      config: networkConfig({ pools: [{ name: pool.name }], delegates: ['ipam-ds-static', 'ipam-da-missing'] }),
      env: cniEnv('missing-1'),
    });
    assert.equal(add.code, 1);
    assert.equal(add.json.code, 5, add.stdout);
    assert.equal(add.json.msg, 'delegate ipam-da-missing not found in CNI_PATH');
    assert.ok(add.json.details.includes(`no executable file ipam-da-missing in ${cniPath}`), add.json.details);
    assert.deepEqual(await allocations(pool.name), {});
  });

  test('a bad delegate name is refused before anything runs', async () => {
    for (const name of ['.ipam-ds-static', 'ipam-ds-static\n', '']) {
      const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ pools: [{ name: 'x' }], delegates: [name] }), env: cniEnv('bad-1') });
      assert.equal(add.code, 1, JSON.stringify(name));
      assert.equal(add.json.code, 7, add.stdout);
      assert.match(add.json.msg, /ipam\.delegates\[0\]/);
    }
  });

  test('a delegate named with a "/" runs from that path, outside CNI_PATH, as the original runs it', async () => {
    const pool = await makePool();
    const elsewhere = mkdtempSync(path.join(tmpdir(), 'chain-by-path-'));
    try {
      for (const name of ['ipam-ds-static', 'ipam-da-consul']) symlinkSync(builtExecutable(name), path.join(elsewhere, name));
      // An absolute path, and one relative to the working directory (the runtime's; here the test's).
      const delegates = [path.join(elsewhere, 'ipam-ds-static'), `./${path.relative(process.cwd(), path.join(elsewhere, 'ipam-da-consul'))}`];
      const onlyDelegated = mkdtempSync(path.join(tmpdir(), 'chain-only-delegated-'));
      symlinkSync(delegated(), path.join(onlyDelegated, 'ipam-delegated'));
      const env = cniEnv('by-path-1', { CNI_PATH: onlyDelegated });
      const add = await runCni(path.join(onlyDelegated, 'ipam-delegated'), { command: 'ADD', config: networkConfig({ pools: [{ name: pool.name }], delegates }), env });
      assert.equal(add.code, 0, `${add.stdout}${add.stderr}`);
      const ip = String(add.json.ips[0].address).split('/')[0];
      assert.deepEqual(Object.keys(await allocations(pool.name)), [`ipam/${pool.name}/${ip}`]);
      const del = await runCni(path.join(onlyDelegated, 'ipam-delegated'), { command: 'DEL', config: networkConfig({ pools: [{ name: pool.name }], delegates, prevResult: add.json }), env });
      assert.equal(del.code, 0, `${del.stdout}${del.stderr}`);
      assert.deepEqual(await allocations(pool.name), {});
      const missing = await runCni(path.join(onlyDelegated, 'ipam-delegated'), { command: 'ADD', config: networkConfig({ pools: [{ name: pool.name }], delegates: [path.join(elsewhere, 'ipam-ds-nothing')] }), env });
      assert.equal(missing.json.code, 5, missing.stdout);
      assert.ok(missing.json.details.includes(`no executable file at ${path.join(elsewhere, 'ipam-ds-nothing')}`), missing.stdout);
      rmSync(onlyDelegated, { recursive: true, force: true });
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  test('a path to ipam-delegated itself is refused, like its name', async () => {
    const add = await runCni(delegated(), { command: 'ADD', config: networkConfig({ pools: [{ name: 'x' }], delegates: [delegated()] }), env: cniEnv('bad-3') });
    assert.equal(add.json.code, 7, add.stdout);
    assert.match(add.json.msg, /lists ipam-delegated itself/);
  });

  test('ipam-ds-static refuses invalid pools, naming the field', async () => {
    const add = await runCni(path.join(cniPath, 'ipam-ds-static'), { command: 'ADD', config: networkConfig({ pools: [{ name: 'a/b' }] }), env: cniEnv('bad-2') });
    assert.equal(add.code, 1);
    assert.equal(add.json.code, 7);
    assert.match(add.json.msg, /ipam\.pools\[0\]\.name, got "a\/b"/);
    const none = await runCni(path.join(cniPath, 'ipam-ds-static'), { command: 'DEL', config: { cniVersion: '1.0.0', ipam: {} }, env: cniEnv('bad-2') });
    assert.equal(none.code, 1);
    assert.match(none.json.msg, /ipam\.pools/);
  });
});

describe('ipam-ds-static on its own: IPAM_POOL narrows the pools on ADD only', () => {
  const listed = [{ name: 'v4' }, { name: 'v6', requested_ip: 'fd00::5', extra: 'kept' }];
  const selector = (command: string, args: string) =>
    runCni(path.join(cniPath, 'ipam-ds-static'), { command, config: networkConfig({ pools: listed }), env: cniEnv('sel-1', { CNI_ARGS: args }) });

  test('ADD with IPAM_POOL emits the named pools, in that order, as written', async () => {
    const add = await selector('ADD', 'IgnoreUnknown=1;IPAM_POOL=v6,v4');
    assert.equal(add.code, 0, add.stdout);
    assert.deepEqual(add.json, { cniVersion: '1.0.0', ips: [], routes: [], dns: {}, pools: [listed[1], listed[0]] });
  });

  test('DEL emits every listed pool whatever IPAM_POOL says; an unlisted pool on ADD is 7 naming both', async () => {
    assert.deepEqual((await selector('DEL', 'IPAM_POOL=v6')).json.pools, listed);
    const bad = await selector('ADD', 'IPAM_POOL=v9');
    assert.equal(bad.code, 1);
    assert.equal(bad.json.code, 7);
    assert.match(bad.json.details, /the config lists v4, v6/);
  });
});

describe('the two new executables on their own', () => {
  for (const name of ['ipam-delegated', 'ipam-ds-static']) {
    test(`${name}: the "about" run prints one line with a semver version and exits 0 quickly`, async () => {
      const about = await runCni(path.join(cniPath, name));
      assert.equal(about.code, 0);
      const lines = about.stdout.trim().split('\n');
      assert.equal(lines.length, 1);
      assert.match(lines[0]!, new RegExp(`^CNI ${name} plugin `));
      assert.match(lines[0]!, semver);
      assert.ok(about.ms < 3000, `Nomad allows 3 s, took ${about.ms} ms`);
      timings.push(`${name} about ${about.ms} ms`);
    });

    test(`${name}: VERSION`, async () => {
      const version = await runCni(path.join(cniPath, name), { command: 'VERSION', config: { cniVersion: '1.0.0' } });
      assert.equal(version.code, 0);
      assert.deepEqual(version.json, { cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
    });
  }

  test('ipam-ds-static returns the pools and copies prevResult.ips through, the same on ADD, DEL and CHECK', async () => {
    const prevResult = { cniVersion: '1.0.0', ips: [{ address: '10.99.200.5/24', gateway: '10.99.200.1' }] };
    for (const command of ['ADD', 'DEL', 'CHECK']) {
      const run = await runCni(path.join(cniPath, 'ipam-ds-static'), {
        command,
        config: networkConfig({ pools: [{ name: 'p', 'requested-ip': '10.99.200.5' }, { name: 'q' }], prevResult }),
        env: cniEnv('static-2'),
      });
      assert.equal(run.code, 0, run.stdout);
      assert.deepEqual(run.json, { cniVersion: '1.0.0', ips: prevResult.ips, routes: [], dns: {}, pools: [{ name: 'p', 'requested-ip': '10.99.200.5' }, { name: 'q' }] });
    }
    const fresh = await runCni(path.join(cniPath, 'ipam-ds-static'), { command: 'ADD', config: networkConfig({ pools: [{ name: 'p' }] }), env: cniEnv('static-3') });
    assert.deepEqual(fresh.json.ips, []);
  });

  test('GC and STATUS through the chain: each delegate, nothing printed on success; STATUS fails with the first delegate not ready', async () => {
    for (const command of ['GC', 'STATUS']) {
      const run = await runCni(delegated(), {
        command,
        config: { ...networkConfig({ cniVersion: '1.1.0', pools: [{ name: 'p' }], delegates: ['ipam-ds-static'] }), 'cni.dev/valid-attachments': [] },
        env: { CNI_PATH: cniPath },
      });
      assert.equal(run.code, 0, `${command}: ${run.stdout}${run.stderr}`);
      assert.equal(run.stdout, '');
    }
    // With the allocator: ready while Consul answers; its "not available" (50) passes through when not.
    const ready = await runCni(delegated(), { command: 'STATUS', config: networkConfig({ cniVersion: '1.1.0', pools: [{ name: 'p' }] }), env: { CNI_PATH: cniPath } });
    assert.equal(ready.code, 0, `STATUS: ${ready.stdout}${ready.stderr}`);
    assert.equal(ready.stdout, '');
    const unreachable = networkConfig({ cniVersion: '1.1.0', pools: [{ name: 'p' }] });
    unreachable.ipam.consul_servers = ['http://127.0.0.1:1'];
    const down = await runCni(delegated(), { command: 'STATUS', config: unreachable, env: { CNI_PATH: cniPath } });
    assert.equal(down.code, 1);
    assert.equal(down.json.code, 50, down.stdout);
    assert.match(down.json.msg, /^delegate ipam-da-consul STATUS failed/);

    const missing = await runCni(delegated(), {
      command: 'STATUS',
      config: networkConfig({ cniVersion: '1.1.0', pools: [{ name: 'p' }], delegates: ['ipam-ds-static', 'ipam-da-missing'] }),
      env: { CNI_PATH: cniPath },
    });
    assert.equal(missing.code, 1);
    assert.match(missing.json.msg, /ipam-da-missing not found/);
  });
});
