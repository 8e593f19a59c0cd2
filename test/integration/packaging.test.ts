// The package as an operator receives it: the release tarballs (what is inside, with which modes, always the
// same bytes, and that an extracted plugin runs), the npm package (what `npm pack` ships, and that its bins run
// after `npm install -g`), and `npm run demo` (it passes, shows the address, and leaves nothing behind, also
// when interrupted). Runs after `npm run build`, as `npm test` does; nothing here rebuilds dist/.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

const root = path.resolve(__dirname, '../..');
const { version, license } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string; license: string };
const isRoot = process.getuid?.() === 0;

const plugins = ['ipam-da-consul', 'ipam-delegated', 'ipam-ds-static'];
const executables = ['consul-ipam', ...plugins];
const documents = ['LICENSE-APACHE', 'LICENSE-MIT', 'README.md'];
/** Where each tarball's files come from, by name. */
const sources: Record<'standard' | 'verbose', Record<string, string>> = {
  standard: Object.fromEntries([...executables.map((n) => [n, `dist/${n}`]), ...documents.map((n) => [n, n])]),
  // Each verbose plugin under its own name and under the original's `<plugin>-verbose`.
  verbose: Object.fromEntries([
    ['consul-ipam', 'dist/consul-ipam'],
    ...plugins.map((n) => [n, `dist/verbose/${n}`]),
    ...plugins.map((n) => [`${n}-verbose`, `dist/${n}-verbose`]),
    ...documents.map((n) => [n, n]),
  ]),
};

for (const file of new Set([...Object.values(sources.standard), ...Object.values(sources.verbose)])) {
  if (!existsSync(path.join(root, file))) throw new Error(`${file} is missing: run \`npm run build\` before the integration tests`);
}

const temporary: string[] = [];
after(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** The environment without what an enclosing `npm test` exports (npm_config_*, npm_lifecycle_*, ...). */
function cleanEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !/^npm_/i.test(k))) as Record<string, string>;
}

function sh(command: string, args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}) {
  const r = spawnSync(command, args, { cwd: options.cwd ?? root, env: options.env ?? cleanEnv(), encoding: 'utf8', timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${command} ${args.join(' ')} exited with ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Runs an installed executable the way Nomad fingerprints a CNI bin dir: no arguments, no CNI_* at all. */
function about(file: string, args: string[] = []): string {
  const r = spawnSync(file, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `${file} ${args.join(' ')} exited with ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}: ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

function expectAbout(file: string): void {
  const name = path.basename(file).replace(/-verbose$/, ''); // the verbose flavour names itself as the plugin does
  if (name === 'consul-ipam') assert.equal(about(file, ['--version']), `consul-ipam ${version}`);
  else assert.match(about(file), new RegExp(`^CNI ${name} plugin v${version.replace(/\./g, '\\.')}\\b`));
}

// ---------------------------------------------------------------------------
// Release tarballs

interface TarEntry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  type: string;
  data: Buffer;
}

/** Reads a .tar.gz header by header (ustar/GNU layout), checking the gzip header carries no name and no time. */
function readTarGz(file: string): TarEntry[] {
  const gz = readFileSync(file);
  assert.equal(gz.readUInt16BE(0), 0x1f8b, `${file} is not gzip`);
  assert.equal(gz[3]! & 0x08, 0, `${file}: gzip stored a file name (gzip -n was not used)`);
  assert.equal(gz.readUInt32LE(4), 0, `${file}: gzip stored a time stamp (gzip -n was not used)`);
  const tar = gunzipSync(gz);
  const text = (at: number, length: number): string => tar.subarray(at, at + length).toString('latin1').replace(/\0.*$/s, '');
  const octal = (at: number, length: number): number => parseInt(text(at, length).trim() || '0', 8);
  const entries: TarEntry[] = [];
  for (let at = 0; at + 512 <= tar.length; ) {
    if (tar.subarray(at, at + 512).every((b) => b === 0)) break; // the end-of-archive blocks
    const size = octal(at + 124, 12);
    entries.push({
      name: text(at, 100),
      mode: octal(at + 100, 8),
      uid: octal(at + 108, 8),
      gid: octal(at + 116, 8),
      mtime: octal(at + 136, 12),
      type: text(at + 156, 1) || '0',
      uname: text(at + 265, 32),
      gname: text(at + 297, 32),
      data: tar.subarray(at + 512, at + 512 + size),
    });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

const tarballName = (flavour: string): string => `ipam-da-consul-v${version}-linux-${flavour}.tar.gz`;

/** The scripts' tarballs only: the single executables' are built and tested in single-binary.test.ts. */
function release(out: string): string {
  return sh(process.execPath, [path.join(root, 'scripts/release.mjs'), '--out', out, '--scripts-only']).stdout;
}

describe('npm run release', () => {
  const out = tempDir('release-a-');
  let printed = '';

  test('writes one tarball per flavour and SHA256SUMS, printing each sha256', () => {
    printed = release(out);
    assert.deepEqual(readdirSync(out).sort(), ['SHA256SUMS', tarballName('standard'), tarballName('verbose')]);
    const sums = readFileSync(path.join(out, 'SHA256SUMS'), 'utf8');
    for (const flavour of ['standard', 'verbose']) {
      const sha256 = createHash('sha256').update(readFileSync(path.join(out, tarballName(flavour)))).digest('hex');
      assert.ok(sums.includes(`${sha256}  ${tarballName(flavour)}\n`), `SHA256SUMS lacks ${tarballName(flavour)}'s sum ${sha256}:\n${sums}`);
      assert.ok(printed.includes(sha256), `release did not print ${tarballName(flavour)}'s sha256 ${sha256}:\n${printed}`);
    }
    assert.equal(sums.trim().split('\n').length, 2);
    // The format sha256sum -c reads.
    sh('sha256sum', ['-c', 'SHA256SUMS'], { cwd: out });
  });

  for (const flavour of ['standard', 'verbose'] as const) {
    test(`the ${flavour} tarball holds exactly its files, 0755 on executables, owner 0, mtime 0, no directory`, () => {
      const entries = readTarGz(path.join(out, tarballName(flavour)));
      const expected = Object.keys(sources[flavour]).sort();
      assert.deepEqual(entries.map((e) => e.name), expected, 'top-level files only, in sorted order');
      for (const e of entries) {
        assert.equal(e.type, '0', `${e.name} is a regular file`);
        assert.equal(e.mode.toString(8), documents.includes(e.name) ? '644' : '755', `mode of ${e.name}`);
        assert.deepEqual([e.uid, e.gid, e.uname, e.gname, e.mtime], [0, 0, '', '', 0], `owner and mtime of ${e.name}`);
        assert.ok(e.data.equals(readFileSync(path.join(root, sources[flavour][e.name]!))), `${e.name} is ${sources[flavour][e.name]} byte for byte`);
      }
    });

    test(`the ${flavour} tarball extracts into a bin dir, and each executable prints its about line`, () => {
      const bin = tempDir(`cni-bin-${flavour}-`);
      sh('tar', ['-xzf', path.join(out, tarballName(flavour)), '-C', bin]);
      assert.deepEqual(readdirSync(bin).sort(), Object.keys(sources[flavour]).sort());
      for (const name of Object.keys(sources[flavour]).filter((n) => !documents.includes(n))) expectAbout(path.join(bin, name));
    });
  }

  test('is deterministic: a second run writes the same bytes', () => {
    const again = tempDir('release-b-');
    release(again);
    for (const file of ['SHA256SUMS', tarballName('standard'), tarballName('verbose')]) {
      assert.ok(readFileSync(path.join(again, file)).equals(readFileSync(path.join(out, file))), `${file} differs between two runs`);
    }
  });
});

// ---------------------------------------------------------------------------
// npm package

describe('npm pack', () => {
  test('ships the bins, the dist executables of both flavours, README and both licenses, and nothing else', () => {
    // --ignore-scripts: prepack would rebuild dist/ under the other test files.
    const r = sh('npm', ['pack', '--dry-run', '--json', '--ignore-scripts']);
    const [pack] = JSON.parse(r.stdout) as Array<{ files: Array<{ path: string; mode: number }> }>;
    const files = new Map(pack!.files.map((f) => [f.path, f.mode]));
    const expected = [
      ...executables.map((n) => `bin/${n}`),
      ...executables.map((n) => `dist/${n}`),
      ...plugins.map((n) => `dist/verbose/${n}`),
      ...plugins.map((n) => `dist/${n}-verbose`),
      ...documents,
      'package.json',
    ].sort();
    assert.deepEqual([...files.keys()].sort(), expected);
    for (const [file, mode] of files) {
      if (file.startsWith('bin/') || file.startsWith('dist/')) assert.equal((mode & 0o777).toString(8), '755', `mode of ${file}`);
    }
    assert.equal(license, 'Apache-2.0 OR MIT');
  });

  test('its bins work after npm install -g', { timeout: 180_000 }, () => {
    const work = tempDir('npm-global-');
    sh('npm', ['pack', '--ignore-scripts', '--pack-destination', work]);
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    assert.equal(tgz, `ipam-da-consul-${version}.tgz`);
    const prefix = path.join(work, 'prefix');
    sh('npm', ['install', '-g', '--prefix', prefix, path.join(work, tgz!), '--no-audit', '--no-fund', '--prefer-offline']);
    assert.deepEqual(readdirSync(path.join(prefix, 'bin')).sort(), [...executables].sort());
    for (const name of executables) expectAbout(path.join(prefix, 'bin', name));
  });
});

// ---------------------------------------------------------------------------
// npm run demo

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs scripts/demo.ts (dist/ is built already); `interruptAt`: send SIGINT once stdout shows this. */
function runDemo(args: string[] = [], interruptAt?: RegExp): Promise<DemoRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { cwd: root, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (interruptAt && !interrupted && interruptAt.test(stdout)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** What the demo says it made; each must be gone once it has exited. */
async function assertNothingLeft(run: DemoRun): Promise<void> {
  const consulUrl = /dev agent at (http:\/\/127\.0\.0\.1:\d+)/.exec(run.stdout)?.[1];
  assert.ok(consulUrl, `the demo printed no Consul URL:\n${run.stdout}`);
  const answer = await fetch(`${consulUrl}/v1/status/leader`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => `HTTP ${r.status}`,
    () => undefined,
  );
  assert.equal(answer, undefined, `Consul at ${consulUrl} still answers after the demo`);

  const work = /temporary folder (\S+?)(?:, |\.$)/m.exec(run.stdout)?.[1];
  assert.ok(work, `the demo named no temporary folder in its clean-up line:\n${run.stdout}`);
  assert.equal(existsSync(work), false, `${work} is still there`);

  const bridgeLine = /network namespace (\S+), bridge (\S+)/.exec(run.stdout);
  if (bridgeLine) {
    const [, netns, bridge] = bridgeLine;
    assert.ok(!spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[0] === netns), `namespace ${netns} is still there`);
    assert.notEqual(spawnSync('ip', ['link', 'show', bridge!]).status, 0, `bridge ${bridge} is still there`);
  }
}

describe('npm run demo', () => {
  for (const args of [[], ['--chain-only']]) {
    const viaBridge = isRoot && args.length === 0;
    const what = viaBridge ? 'through bridge in a namespace (root): exits 0, shows the address in KV and on eth0' : `the chain alone${args.length ? ' (--chain-only)' : ' (not root)'}: exits 0, shows the address in KV`;
    test(`${what}, and cleans up`, { timeout: 60_000 }, async () => {
      const run = await runDemo(args);
      assert.equal(run.code, 0, `demo exited with ${run.code ?? run.signal} after ${run.ms} ms:\n${run.stdout}\n${run.stderr}`);
      const address = /^Allocated (10\.98\.0\.\d+)\/24 to demo-container\.$/m.exec(run.stdout)?.[1];
      assert.ok(address, `the demo printed no allocated address:\n${run.stdout}`);
      // KV as consul-ipam showed it after ADD, and after DEL.
      assert.match(run.stdout, new RegExp(`== ADD[\\s\\S]*pool show demo\\n[\\s\\S]*^\\s+${address.replace(/\./g, '\\.')}\\s+demo-container\\s+eth0`, 'm'));
      assert.match(run.stdout, /== DEL[\s\S]*pool show demo\n\s+pool demo: 11 addresses, 0 allocated, 11 free[\s\S]*allocations: none/);
      if (viaBridge) {
        assert.match(run.stdout, /Runtime side: \/usr\/lib\/cni\/bridge/);
        assert.match(run.stdout, new RegExp(`\\$ ip -n \\S+ addr show eth0\\n[\\s\\S]*inet ${address.replace(/\./g, '\\.')}/24 `));
      } else {
        assert.match(run.stdout, /Runtime side: none, ipam-delegated runs alone/);
      }
      assert.match(run.stdout, /docs\/state-diagrams\/README\.md/);
      assert.match(run.stdout, /^All steps passed/m);
      assert.equal(run.stderr, '', 'nothing on stderr');
      assert.ok(run.ms < 20_000, `the demo took ${run.ms} ms`);
      await assertNothingLeft(run);
    });
  }

  test('Ctrl-C in the middle: exits 130 and still removes namespace, bridge, Consul and temporary folder', { timeout: 60_000 }, async () => {
    const run = await runDemo([], /^== CHECK$/m);
    assert.equal(run.code, 130, `demo exited with ${run.code ?? run.signal}:\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /Interrupted \(SIGINT\): cleaning up\./);
    assert.doesNotMatch(run.stdout, /All steps passed/);
    assert.match(run.stdout, /^Cleaned up: .*Consul\.$/m);
    await assertNothingLeft(run);
  });
});
