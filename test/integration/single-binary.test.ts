// The single executable (scripts/build-sea.mjs) as an operator installs it: one file and links, on a host
// without Node. Built here for both architectures from the pinned Node (fetched once into .cache/node/).
// The x64 binary reruns a defined subset of the integration suites in place of the scripts, with no node on
// the PATH it gets and nothing else in its environment; the arm64 binary is smoke-tested under qemu-user
// (installed by scripts/install-qemu.sh; skipped, saying why, when that needs root and this is not root).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { packageVersion, pathWithoutNode, runCni, tempDir } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const binaryDir = (arch: string): string => path.join(root, `dist-bin/linux-${arch}`);
const plugins = ['ipam-da-consul', 'ipam-delegated', 'ipam-ds-static'];
const names = [...plugins, 'consul-ipam', ...plugins.map((p) => `${p}-verbose`)];
const documents = ['LICENSE-APACHE', 'LICENSE-MIT', 'README.md'];
const isRoot = process.getuid?.() === 0;
const embeddedNode = JSON.parse(readFileSync(path.join(root, 'scripts/embedded-node.json'), 'utf8')) as { version: string };

/**
 * The environment without what an enclosing `npm test` exports (npm_config_*, npm_lifecycle_*, ...), nor
 * NODE_TEST_CONTEXT, which would make a nested `node --test` report to this runner instead of on its stdout.
 */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !/^npm_/i.test(k) && k !== 'NODE_TEST_CONTEXT')) as Record<string, string>;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end without blocking the event loop (the Consul agents of this process keep being served). */
function execute(command: string, args: string[], options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env: options.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

const show = (what: string, run: Run): string => `${what} exited ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;

/** The about line of a name, or consul-ipam's --version, as the name's own program prints it. */
function expectedAbout(name: string): RegExp {
  if (name === 'consul-ipam') return new RegExp(`^consul-ipam ${packageVersion.replace(/\./g, '\\.')}\n$`);
  return new RegExp(`^CNI ${name.replace(/-verbose$/, '')} plugin v${packageVersion.replace(/\./g, '\\.')}\\b.*\n$`);
}

before(async () => {
  // What `npm run release` runs between `npm run build` and packing: both architectures.
  const built = await execute(process.execPath, ['scripts/build-sea.mjs'], { timeoutMs: 300_000 });
  assert.equal(built.code, 0, show('scripts/build-sea.mjs', built));
});

describe('the x64 single executable', () => {
  const dir = binaryDir('x64');

  test('is built reproducibly: a second build gives the same bytes', { timeout: 300_000 }, async () => {
    const again = tempDir('sea-again-');
    const built = await execute(process.execPath, ['scripts/build-sea.mjs', '--arch', 'x64', '--out', again], { timeoutMs: 300_000 });
    assert.equal(built.code, 0, show('scripts/build-sea.mjs', built));
    assert.ok(readFileSync(path.join(again, 'linux-x64/ipam-da-consul')).equals(readFileSync(path.join(dir, 'ipam-da-consul'))), 'the two builds differ');
  });

  test('is one file; every other name is a link to it', () => {
    assert.ok(lstatSync(path.join(dir, 'ipam-da-consul')).isFile());
    for (const name of names.filter((n) => n !== 'ipam-da-consul')) {
      assert.ok(lstatSync(path.join(dir, name)).isSymbolicLink(), `${name} is a link`);
      assert.equal(readlinkSync(path.join(dir, name)), 'ipam-da-consul', `${name} points at the file beside it`);
    }
  });

  test('runs in an empty environment, with no PATH to find a node on', async () => {
    for (const name of names) {
      const run = await execute(path.join(dir, name), name === 'consul-ipam' ? ['--version'] : [], { env: {} });
      assert.equal(run.code, 0, show(name, run));
      assert.match(run.stdout, expectedAbout(name), `${name} runs as its own program`);
      assert.equal(run.stderr, '', `${name}: nothing on stderr (no experimental-feature warning)`);
    }
  });

  test('runs as the program it is named after, through links of links (a CNI_PATH entry linking to the install)', async () => {
    const bin = tempDir('sea-links-');
    for (const name of names) spawnSync('ln', ['-s', path.join(dir, name), path.join(bin, name)]);
    for (const name of names) {
      const run = await execute(path.join(bin, name), name === 'consul-ipam' ? ['--version'] : [], { env: {} });
      assert.match(run.stdout, expectedAbout(name), show(name, run));
    }
  });

  test('under a name that is none of its programs: exit 2 and the names it answers to, nothing on stdout', async () => {
    const bin = tempDir('sea-other-name-');
    spawnSync('ln', ['-s', path.join(dir, 'ipam-da-consul'), path.join(bin, 'ipam-da-consul-linux-x64')]);
    const cacheDir = tempDir('sea-other-name-cache-');
    const run = await execute(path.join(bin, 'ipam-da-consul-linux-x64'), [], { env: { IPAM_CODE_CACHE_DIR: cacheDir } });
    assert.equal(run.code, 2, show('ipam-da-consul-linux-x64', run));
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^ipam-da-consul-linux-x64: this executable runs as the program it is named after; run it through a link named ipam-da-consul, ipam-delegated, ipam-ds-static, consul-ipam, ipam-da-consul-verbose, ipam-delegated-verbose, ipam-ds-static-verbose\n$/);
    assert.deepEqual(readdirSync(cacheDir), [], 'no code cache for a run that only names the links');
  });

  test('consul-ipam keeps no code cache, with or without CNI_COMMAND in its environment; a plugin\'s about run keeps its own', async () => {
    const cacheDir = tempDir('sea-cli-cache-');
    for (const env of [{}, { CNI_COMMAND: 'ADD' }] as Record<string, string>[]) {
      const run = await execute(path.join(dir, 'consul-ipam'), ['--version'], { env: { ...env, IPAM_CODE_CACHE_DIR: cacheDir } });
      assert.match(run.stdout, expectedAbout('consul-ipam'), show('consul-ipam', run));
    }
    assert.deepEqual(readdirSync(cacheDir), []);
    const about = await execute(path.join(dir, 'ipam-delegated'), [], { env: { IPAM_CODE_CACHE_DIR: cacheDir } });
    assert.match(about.stdout, expectedAbout('ipam-delegated'), show('ipam-delegated', about));
    assert.match(readdirSync(cacheDir).join(), /^sea-ipam-delegated-ABOUT-[0-9a-f]{16}-v[\d.]+-x64\.v8cache$/);
  });

  // A subset of the suites that ran against dist/, rerun against the binary (test/support/plugin.ts reads
  // IPAM_TEST_BINARY_DIR): every CNI command (ADD, CHECK, DEL, VERSION, GC, STATUS and the about run) of the
  // allocator in both flavours, the whole delegation chain of the three plugins, the libcni scenarios (bridge
  // → ipam-delegated → … as Nomad runs them; root only, as there), and consul-ipam (with and without Consul,
  // over HTTPS). Left out, as the same code under another name: the scripts' code-cache files, the storms,
  // and consul-ipam's ACL and concurrent-operator cases.
  const suites: Array<{ files: string[]; namePattern?: string; rootOnly?: boolean }> = [
    { files: ['chain', 'check-version', 'gc-status'] },
    { files: ['consul-ipam'], namePattern: '^consul-ipam (without Consul|against Consul|over HTTPS)$' },
    { files: ['libcni'], rootOnly: true },
  ];
  test('passes the integration suites of the CNI executables and consul-ipam in place of the scripts', { timeout: 600_000 }, async (t) => {
    // What the suites give the executables instead of this PATH (test/support/plugin.ts).
    const which = spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: pathWithoutNode() }, encoding: 'utf8' });
    assert.notEqual(which.status, 0, `node is on the PATH the binary would get: ${which.stdout}`);
    assert.equal(spawnSync('sh', ['-c', 'command -v cat'], { env: { PATH: pathWithoutNode() } }).status, 0, 'everything else is');
    const runs = await Promise.all(
      suites.map(({ files, namePattern }) =>
        execute(
          process.execPath,
          ['--import', 'tsx', '--test', '--test-reporter=tap', ...(namePattern ? [`--test-name-pattern=${namePattern}`] : []), ...files.map((f) => `test/integration/${f}.test.ts`)],
          { env: { ...cleanEnv(), IPAM_TEST_BINARY_DIR: dir }, timeoutMs: 600_000 },
        ),
      ),
    );
    runs.forEach((run, i) => {
      const what = suites[i]!.files.join(', ');
      const count = (label: string): number => Number(new RegExp(`^# ${label} (\\d+)$`, 'm').exec(run.stdout)?.[1] ?? NaN);
      const failures = run.stdout.split('\n').filter((line) => /^\s*not ok /.test(line) && !/# SKIP/.test(line));
      assert.equal(run.code, 0, `${what} against the binary: ${failures.join('\n')}\n${run.stdout.slice(-6000)}\n${run.stderr.slice(-2000)}`);
      assert.equal(count('fail'), 0, `${what}: failures`);
      if (suites[i]!.rootOnly && !isRoot) {
        t.diagnostic(`${what}: skipped, needs root`);
        return;
      }
      assert.ok(count('pass') >= 9, `${what}: only ${count('pass')} tests passed`);
      t.diagnostic(`${what}: ${count('pass')} passed against the binary`);
    });
  });

  test("the -verbose names are the verbose flavour: they log at debug level; the plain names don't", async () => {
    const agent = await startConsul();
    try {
      const dataDir = tempDir('sea-verbose-data-');
      await agent.kv.put('ipam/sea-verbose', [{ subnet: '10.77.0.0/24' }]);
      const config = { cniVersion: '1.0.0', name: 'n', ipam: { type: 'ipam-delegated', consul_servers: [agent.url], data_dir: dataDir }, prevResult: { ips: [], pools: [{ name: 'sea-verbose' }] } };
      const logs = tempDir('sea-verbose-logs-');
      for (const [name, id] of [['ipam-da-consul-verbose', 'v1'], ['ipam-da-consul', 'p1']] as const) {
        const log = path.join(logs, `${name}.log`);
        const run = await runCni(path.join(dir, name), { command: 'ADD', config, env: { CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_PATH: dir, IPAM_DA_CONSUL_LOG_FILE: log } });
        assert.equal(run.code, 0, `${name}: ${run.stdout}${run.stderr}`);
        if (name.endsWith('-verbose')) assert.match(readFileSync(log, 'utf8'), /DEBUG.* consul PUT /, 'the verbose flavour logs every Consul request');
        else assert.equal(existsSync(log), false, 'the standard flavour writes no log');
      }
    } finally {
      await agent.stop();
    }
  });

  test('keeps a code cache per program and host, as the scripts do, named for the program it ran as', async () => {
    const agent = await startConsul();
    try {
      const cacheDir = tempDir('sea-code-cache-');
      await agent.kv.put('ipam/sea-cache', [{ subnet: '10.78.0.0/24' }]);
      const config = { cniVersion: '1.0.0', name: 'n', ipam: { type: 'ipam-delegated', delegates: ['ipam-ds-static', 'ipam-da-consul'], pools: [{ name: 'sea-cache' }], consul_servers: [agent.url], data_dir: tempDir('sea-cache-data-') } };
      const env = { CNI_CONTAINERID: 'cache-1', CNI_IFNAME: 'eth0', CNI_PATH: dir, IPAM_CODE_CACHE_DIR: cacheDir };
      const first = await runCni(path.join(dir, 'ipam-delegated'), { command: 'ADD', config, env });
      assert.equal(first.code, 0, first.stdout + first.stderr);
      const caches = () => readdirSync(cacheDir).sort();
      const id = `[0-9a-f]{16}-v${embeddedNode.version.replace(/\./g, '\\.')}-x64\\.v8cache`;
      const names = ['ipam-da-consul', 'ipam-delegated', 'ipam-ds-static'];
      assert.equal(caches().length, 3, `one cache per program of the chain: ${caches().join(', ')}`);
      names.forEach((name, i) => assert.match(caches()[i]!, new RegExp(`^sea-${name}-ADD-${id}$`)));
      const del = await runCni(path.join(dir, 'ipam-delegated'), { command: 'DEL', config: { ...config, prevResult: first.json }, env });
      assert.equal(del.code, 0, del.stdout + del.stderr);
      // And one per command: the DEL wrote its own beside ADD's.
      const all = caches();
      assert.equal(all.length, 6, all.join(', '));
      // Each written once more by its command's second run, which adds what it compiled; then only read.
      const second = await runCni(path.join(dir, 'ipam-delegated'), { command: 'ADD', config, env: { ...env, CNI_CONTAINERID: 'cache-2' } });
      assert.equal(second.code, 0, second.stdout + second.stderr);
      const secondDel = await runCni(path.join(dir, 'ipam-delegated'), { command: 'DEL', config: { ...config, prevResult: second.json }, env: { ...env, CNI_CONTAINERID: 'cache-2' } });
      assert.equal(secondDel.code, 0, secondDel.stdout + secondDel.stderr);
      const written = all.map((f) => readFileSync(path.join(cacheDir, f)));
      written.forEach((cache, i) => assert.equal(cache[0], 2, `${all[i]}: written by a second run`));
      const again = await runCni(path.join(dir, 'ipam-delegated'), { command: 'ADD', config, env: { ...env, CNI_CONTAINERID: 'cache-3' } });
      assert.equal(again.code, 0, again.stdout + again.stderr);
      all.forEach((f, i) => assert.ok(readFileSync(path.join(cacheDir, f)).equals(written[i]!), `${f}: accepted, so not rewritten`));
    } finally {
      await agent.stop();
    }
  });
});

describe('npm run release: the single executable of each architecture', () => {
  const out = tempDir('sea-release-');
  const tarball = (arch: string): string => `ipam-da-consul-v${packageVersion}-linux-${arch}.tar.gz`;

  test('one tarball per architecture beside the scripts\' two, all in SHA256SUMS', { timeout: 300_000 }, async () => {
    const run = await execute(process.execPath, ['scripts/release.mjs', '--out', out], { timeoutMs: 300_000 });
    assert.equal(run.code, 0, show('scripts/release.mjs', run));
    const flavours = ['standard', 'verbose', 'x64', 'arm64'];
    assert.deepEqual(readdirSync(out).sort(), ['SHA256SUMS', ...flavours.map(tarball)].sort());
    const sums = readFileSync(path.join(out, 'SHA256SUMS'), 'utf8');
    for (const flavour of flavours) {
      const sha256 = createHash('sha256').update(readFileSync(path.join(out, tarball(flavour)))).digest('hex');
      assert.ok(sums.includes(`${sha256}  ${tarball(flavour)}\n`), `SHA256SUMS lacks ${tarball(flavour)}`);
    }
    assert.equal(spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: out }).status, 0);
  });

  for (const arch of ['x64', 'arm64']) {
    test(`the ${arch} tarball: the binary, a link per other name, README and both licenses, owner 0, mtime 0`, () => {
      const listing = spawnSync('tar', ['--list', '--verbose', '--numeric-owner', '--full-time', '-zf', path.join(out, tarball(arch))], { encoding: 'utf8' });
      assert.equal(listing.status, 0, listing.stderr);
      const entries = listing.stdout.trim().split('\n').map((line) => line.split(/\s+/));
      // mode owner size date time name [-> target]
      assert.deepEqual(entries.map((e) => e[5]), [...documents, ...names].sort());
      for (const [mode, owner, , date, , name, arrow, target] of entries) {
        assert.equal(owner, '0/0', `owner of ${name}`);
        assert.equal(date, '1970-01-01', `mtime of ${name}`);
        if (name === 'ipam-da-consul') assert.equal(mode, '-rwxr-xr-x');
        else if (documents.includes(name!)) assert.equal(mode, '-rw-r--r--', `mode of ${name}`);
        else assert.deepEqual([mode![0], arrow, target], ['l', '->', 'ipam-da-consul'], `${name} is a link to ipam-da-consul`);
      }
    });
  }

  test('the x64 tarball unpacks over a bin dir holding the scripts and replaces them: each name runs its program', () => {
    const bin = tempDir('sea-bin-');
    for (const name of plugins) writeFileSync(path.join(bin, name), '#!/usr/bin/env node\n', { mode: 0o755 }); // an earlier install of the scripts
    assert.equal(spawnSync('tar', ['-xzf', path.join(out, tarball('x64')), '-C', bin]).status, 0);
    assert.ok(readFileSync(path.join(bin, 'ipam-da-consul')).equals(readFileSync(path.join(binaryDir('x64'), 'ipam-da-consul'))));
    for (const name of names) {
      const run = spawnSync(path.join(bin, name), name === 'consul-ipam' ? ['--version'] : [], { env: {}, encoding: 'utf8' });
      assert.match(run.stdout, expectedAbout(name), `${name}: ${run.stdout}${run.stderr}`);
    }
  });
});

describe('the arm64 single executable, under qemu-user', () => {
  const sysroot = '/usr/aarch64-linux-gnu';
  let qemu: string | undefined;
  let skipped: string | undefined;
  let agent: ConsulAgent | undefined;

  before(async () => {
    const install = await execute(path.join(root, 'scripts/install-qemu.sh'), [], { timeoutMs: 300_000 });
    if (install.code === 2) skipped = install.stderr.trim(); // not root, and not installed
    else {
      assert.equal(install.code, 0, show('scripts/install-qemu.sh', install));
      qemu = install.stdout.trim();
      agent = await startConsul();
    }
  });
  after(async () => agent?.stop());

  /** Runs a name of the arm64 binary under qemu, as argv[0] the name; only CNI_* and the cache dir in its environment. */
  const arm64 = (name: string, env: Record<string, string> = {}, input = '', args: string[] = []): Promise<Run> =>
    execute(qemu!, ['-L', sysroot, path.join(binaryDir('arm64'), name), ...args], { env, input, timeoutMs: 120_000 });

  test('about line, VERSION, ADD, CHECK, DEL against a real Consul', { timeout: 300_000 }, async (t) => {
    if (skipped) {
      t.skip(skipped);
      return;
    }
    const file = readFileSync(path.join(binaryDir('arm64'), 'ipam-da-consul'));
    assert.equal(file.readUInt16LE(18), 0xb7, 'an aarch64 ELF (e_machine EM_AARCH64)');
    for (const name of ['ipam-da-consul', 'ipam-delegated-verbose', 'consul-ipam']) {
      const about = await arm64(name, {}, '', name === 'consul-ipam' ? ['--version'] : []);
      assert.match(about.stdout, expectedAbout(name), show(name, about));
    }
    const version = await arm64('ipam-da-consul', { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
    assert.equal(version.code, 0, show('VERSION', version));
    assert.deepEqual(JSON.parse(version.stdout).supportedVersions, ['0.4.0', '1.0.0', '1.1.0']);

    await agent!.kv.put('ipam/arm64', [{ subnet: '10.79.0.0/24', gateway: '10.79.0.1' }]);
    const cacheDir = tempDir('sea-arm64-cache-');
    const config = (prevIps: object[] = []) =>
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'n',
        // qemu makes each start take seconds; the timeouts are of the network, not of emulation.
        ipam: { type: 'ipam-delegated', consul_servers: [agent!.url], data_dir: tempDir('sea-arm64-data-'), request_timeout_ms: 60_000 },
        prevResult: { cniVersion: '1.0.0', ips: prevIps, pools: [{ name: 'arm64' }] },
      });
    const env = (command: string) => ({ CNI_COMMAND: command, CNI_CONTAINERID: 'arm64-1', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/x', CNI_PATH: binaryDir('arm64'), IPAM_CODE_CACHE_DIR: cacheDir });
    const add = await arm64('ipam-da-consul', env('ADD'), config());
    assert.equal(add.code, 0, show('ADD', add));
    const result = JSON.parse(add.stdout) as { ips: Array<{ address: string; gateway?: string }> };
    assert.match(result.ips[0]!.address, /^10\.79\.0\.\d+\/24$/);
    const ip = result.ips[0]!.address.split('/')[0]!;
    assert.equal(((await agent!.kv.getJson(`ipam/arm64/${ip}`)) as { target: string }).target, 'arm64-1');
    assert.match(readdirSync(cacheDir).join(), /^sea-ipam-da-consul-ADD-[0-9a-f]{16}-v[\d.]+-arm64\.v8cache$/, 'its own code cache, of its arch');

    const check = await arm64('ipam-da-consul', env('CHECK'), config(result.ips));
    assert.equal(check.code, 0, show('CHECK', check));
    const del = await arm64('ipam-da-consul', env('DEL'), config(result.ips));
    assert.equal(del.code, 0, show('DEL', del));
    assert.deepEqual((await agent!.kv.keys('ipam/arm64/')).filter((k) => k !== 'ipam/arm64/'), [], 'DEL released the address');
  });
});
