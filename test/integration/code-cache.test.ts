// The V8 code cache wrapped around each CNI executable (scripts/code-cache-loader.cjs): one per command, made
// after its first run, used by the next runs, ignored when it does not fit, never required.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { builtExecutable, describeRun, runPlugin, scenario, tempDir } from '../support/plugin';

const agent = useConsul();

/** ADD then DEL, on a new host and pool, or on `host` (a scenario already used: its ADD claims in one request). */
async function addAndDel(cacheDir: string, id: string, host?: ReturnType<typeof scenario>) {
  const s = host ?? scenario([agent.url], 'cache');
  if (host === undefined) await agent.kv.put(`ipam/${s.pool}`, [{ subnet: '10.50.0.0/24' }]);
  const env = { IPAM_CODE_CACHE_DIR: cacheDir };
  const added = await runPlugin({ command: 'ADD', containerId: id, config: s.config(), env });
  assert.equal(added.code, 0, describeRun(added));
  const address = (added.json as { ips: Array<{ address: string }> }).ips[0]!.address;
  assert.match(address, /^10\.50\.0\.\d+\/24$/);
  const deleted = await runPlugin({ command: 'DEL', containerId: id, config: s.config({ ips: [{ address }] }), env });
  assert.equal(deleted.code, 0, describeRun(deleted));
  return address;
}

const caches = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.v8cache'));

test('the first ADD writes its cache, and each command its own; later runs read them and still work', async () => {
  const dir = tempDir('code-cache-');
  const host = scenario([agent.url], 'cache');
  await agent.kv.put(`ipam/${host.pool}`, [{ subnet: '10.50.0.0/24' }]);
  await addAndDel(dir, 'cache-1', host);
  // One per command, each holding only the code its command runs.
  const files = caches(dir).sort();
  assert.equal(files.length, 2, files.join(' '));
  files.forEach((file, i) => assert.match(file, new RegExp(`^ipam-da-consul-${['ADD', 'DEL'][i]}-[0-9a-f]{16}-v\\d+\\.\\d+\\.\\d+-\\w+\\.v8cache$`)));
  const first = files.map((file) => readFileSync(path.join(dir, file)));
  for (const cache of first) assert.ok(cache.length > 10_000 && cache[0] === 1, `cache of ${cache.length} bytes, by a first run`);
  // The second run of each command loads the first's cache and writes it for good, with what it compiled
  // besides: the first ADD went the full way and the second claimed in one request, so ADD's cache holds both
  // ways, and is larger than the first's (a second run compiling afresh would drop the full way's code).
  await addAndDel(dir, 'cache-2', host);
  const written = files.map((file) => readFileSync(path.join(dir, file)));
  for (const cache of written) assert.ok(cache.length > 10_000 && cache[0] === 2, `cache of ${cache.length} bytes, by a second run`);
  assert.ok(written[0]!.length > first[0]!.length, `ADD's cache by its second run (${written[0]!.length} bytes) holds the first's (${first[0]!.length})`);
  await addAndDel(dir, 'cache-2b');
  files.forEach((file, i) => assert.deepEqual(readFileSync(path.join(dir, file)), written[i], `${file}: an accepted cache is not rewritten`));
  // An earlier build's caches go when this one writes its own; this build's, other commands' included, stay.
  writeFileSync(path.join(dir, 'ipam-da-consul-ADD-0123456789abcdef-v20.0.0-x64.v8cache'), 'an old build');
  rmSync(path.join(dir, files[1]!));
  await addAndDel(dir, 'cache-3');
  assert.deepEqual(caches(dir).sort(), files);
});

test('the "about" run and VERSION keep caches of their own, far smaller than ADD\'s, and print the same from them', async () => {
  const dir = tempDir('code-cache-');
  await addAndDel(dir, 'cache-about');
  const add = caches(dir).find((file) => file.includes('-ADD-'))!;
  const runs = {
    ABOUT: () => runPlugin({ env: { IPAM_CODE_CACHE_DIR: dir } }),
    VERSION: () => runPlugin({ command: 'VERSION', config: { cniVersion: '1.0.0' }, env: { IPAM_CODE_CACHE_DIR: dir } }),
  };
  for (const [name, run] of Object.entries(runs)) {
    const first = await run(); // finds no cache of its own: writes one
    assert.equal(first.code, 0, describeRun(first));
    const file = add.replace('-ADD-', `-${name}-`);
    assert.ok(caches(dir).includes(file), `${file} among ${caches(dir).join(', ')}`);
    // Before, these runs deserialised ADD's cache, all of ADD's code, to print one line.
    const size = readFileSync(path.join(dir, file)).length;
    const addSize = readFileSync(path.join(dir, add)).length;
    assert.ok(size > 10_000 && size < addSize / 2, `${name}'s cache: ${size} bytes, ADD's ${addSize}`);
    const second = await run(); // loads it, and writes it for good
    const third = await run(); // loads it
    assert.equal(readFileSync(path.join(dir, file))[0], 2, 'written for good by the second run');
    assert.equal(second.stdout, first.stdout);
    assert.equal(third.stdout, first.stdout);
  }
});

test('consul-ipam, the operator CLI, keeps no cache, even with a CNI_COMMAND in its environment', () => {
  const dir = tempDir('code-cache-');
  for (const env of [{}, { CNI_COMMAND: 'ADD' }]) {
    const r = spawnSync(builtExecutable('consul-ipam'), ['--version'], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env, IPAM_CODE_CACHE_DIR: dir } });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^consul-ipam \d/);
  }
  assert.deepEqual(readdirSync(dir), []);
});

test('a corrupt cache is rejected by V8, the command still succeeds, and the cache is rewritten', async () => {
  const dir = tempDir('code-cache-');
  await addAndDel(dir, 'cache-4');
  const [file] = caches(dir).sort();
  // The loader's header (written by a second run) before data that is not V8's: V8 itself refuses it.
  writeFileSync(path.join(dir, file!), Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('not a code cache at all')]));
  await addAndDel(dir, 'cache-5');
  assert.ok(readFileSync(path.join(dir, file!)).length > 10_000, 'rewritten after the rejection');
});

test('IPAM_CODE_CACHE_DIR=off writes nothing; an unwritable cache dir is no error', async () => {
  const dir = tempDir('code-cache-');
  await addAndDel('off', 'cache-5');
  const file = path.join(dir, 'a-file');
  writeFileSync(file, '');
  await addAndDel(path.join(file, 'sub'), 'cache-6'); // mkdir under a regular file fails
  assert.deepEqual(readdirSync(dir), ['a-file']);
});

test("writing a cache removes the temporaries of writers killed before their rename, never a running one's", async () => {
  const dir = tempDir('code-cache-');
  const gone = spawnSync('true').pid!; // exited: its pid is free
  const stem = 'ipam-da-consul-ADD-0123456789abcdef-v20.0.0-x64.v8cache';
  writeFileSync(path.join(dir, `${stem}.${gone}.tmp`), 'half a cache');
  writeFileSync(path.join(dir, `${stem}.${process.pid}.tmp`), 'being written');
  writeFileSync(path.join(dir, 'unrelated.tmp'), '');
  await addAndDel(dir, 'cache-7');
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')).sort(), [`${stem}.${process.pid}.tmp`, 'unrelated.tmp']);
  assert.equal(caches(dir).length, 2);
});

test('an executable that ends without its bundle (overwritten in place while it starts) prints CNI error 11, no stack trace', async () => {
  const dir = tempDir('code-cache-');
  const whole = readFileSync(path.join(__dirname, '../../dist/ipam-da-consul'), 'utf8'); // the script's loader, not the binary's
  const cut = path.join(dir, 'ipam-da-consul');
  writeFileSync(cut, whole.slice(0, whole.lastIndexOf('/* bundle:\n')), { mode: 0o755 });
  const r = spawnSync(process.execPath, [cut], { encoding: 'utf8', env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', IPAM_CODE_CACHE_DIR: dir }, input: '{}' });
  assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
  const error = JSON.parse(r.stdout) as { code: number; msg: string; details: string };
  assert.equal(error.code, 11);
  assert.match(error.details, /ends without its bundle: it is being replaced or is damaged/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});
