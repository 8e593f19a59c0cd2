import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { build } from 'esbuild';
import path from 'node:path';
import { forgetClaimed, forgetHeld, keepClaimed, markClaiming, maxFileBytes, maxPoolCopyBytes, recall, recallHeld, recallPool, rememberHeld, rememberLastReserved, rememberPool, unmarkClaiming } from '../../src/services/host-store';
import { normalizeRange } from '../../src/services/ip-math';

const dataDir = () => mkdtempSync(path.join(tmpdir(), 'host-store-'));
const pool = (identity = 1) => ({ name: 'p', identity, ranges: [normalizeRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.2', rangeEnd: '10.0.0.100' })] });

/** A logger that keeps its warnings. */
function warnings() {
  const seen: string[] = [];
  return { seen, warn: (message: string) => void seen.push(message) };
}

/** This process as a marker names it, read the way the store does. */
function ownMarker(pid = process.pid): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  return `${pid} ${start} ${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n`;
}

test('the hint is tied to the pool identity: a re-created pool starts afresh', async () => {
  const dir = dataDir();
  const log = warnings();
  await rememberLastReserved(dir, 'p', 41, '10.0.0.7');
  assert.deepEqual(await recall(dir, pool(41), 'c1', 'eth0', log), { lastReserved: '10.0.0.7' });
  assert.deepEqual(await recall(dir, pool(42), 'c1', 'eth0', log), {});
  assert.deepEqual(log.seen, [], 'an outdated hint is normal, not a problem');
  rmSync(dir, { recursive: true });
});

test('the hint keeps how many addresses after it were found free; a count that is not one is no hint', async () => {
  const dir = dataDir();
  const log = warnings();
  await rememberLastReserved(dir, 'p', 1, '10.0.0.7', 12);
  assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), { lastReserved: '10.0.0.7', freeAfter: 12 });
  await rememberLastReserved(dir, 'p', 1, '10.0.0.8', 0);
  assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), { lastReserved: '10.0.0.8' }, 'none known free: no count');
  for (const free of [-1, 1.5, '3', 1_000_000, null]) {
    writeFileSync(path.join(dir, 'p', 'last_reserved_ip'), JSON.stringify({ pool: 1, ip: '10.0.0.9', free }));
    assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), {}, `free: ${JSON.stringify(free)}`);
  }
  assert.equal(log.seen.length, 5);
  assert.match(log.seen[0]!, /last_reserved_ip: its "free" -1 is not a count/);
  rmSync(dir, { recursive: true });
});

test('the copy of the pool key is read back only as it was written: indexes, then the text, within 64 KiB', async () => {
  const dir = dataDir();
  const log = warnings();
  assert.equal(await recallPool(dir, 'p', log), undefined, 'none yet: not a problem');
  const copy = { createIndex: 5, modifyIndex: 9, value: '[{"subnet":"10.0.0.0/24"}]' };
  await rememberPool(dir, 'p', copy);
  assert.deepEqual(await recallPool(dir, 'p', log), copy);
  const file = path.join(dir, 'p', 'pool');
  const bad: Array<[string, string]> = [
    ['{"createIndex":5,"modifyIndex":9', 'not JSON'],
    ['[5, 9, "[]"]', 'not a JSON object'],
    [JSON.stringify({ createIndex: 0, modifyIndex: 9, value: '[]' }), 'not the indexes'],
    [JSON.stringify({ createIndex: 9, modifyIndex: 5, value: '[]' }), 'not the indexes'],
    [JSON.stringify({ createIndex: 5, modifyIndex: 9, value: [] }), 'not the text of a pool key'],
    [JSON.stringify({ ...copy, value: 'x'.repeat(maxPoolCopyBytes) }), `larger than ${maxPoolCopyBytes} bytes`],
  ];
  for (const [text, problem] of bad) {
    writeFileSync(file, text);
    assert.equal(await recallPool(dir, 'p', log), undefined, text.slice(0, 60));
    assert.match(log.seen[log.seen.length - 1]!, new RegExp(`ignoring host file ${file}: .*${problem}`));
  }
  rmSync(file);
  symlinkSync(path.join(dir, 'elsewhere'), file);
  assert.equal(await recallPool(dir, 'p', log), undefined);
  assert.match(log.seen[log.seen.length - 1]!, /symlink/);
  rmSync(dir, { recursive: true });
});

test('the address held by a container and interface is remembered until forgotten', async () => {
  const dir = dataDir();
  const log = warnings();
  await rememberHeld(dir, 'p', 'c1', 'eth0', '10.0.0.9');
  assert.equal((await recall(dir, pool(), 'c1', 'eth0', log)).held?.ip, '10.0.0.9');
  assert.equal((await recall(dir, pool(), 'c1', 'eth1', log)).held, undefined);
  await forgetHeld(dir, 'p', 'c1', 'eth0');
  assert.equal((await recall(dir, pool(), 'c1', 'eth0', log)).held, undefined);
  assert.equal(existsSync(path.join(dir, 'p', 'containers', 'c1')), false, 'the container folder goes with its last note');
  assert.deepEqual(log.seen, []);
  rmSync(dir, { recursive: true });
});

// Each hint file content, and why it is no hint. Every one must be ignored with a warning naming the file.
const badHints: Array<[string, string]> = [
  ['not JSON', '{not json'],
  ['truncated', '{"pool":1,"ip":"10.0.'],
  ['empty', ''],
  ['JSON null', 'null'],
  ['an array', '["10.0.0.7"]'],
  ['a bare address', '10.0.0.7'],
  ['no pool', '{"ip":"10.0.0.7"}'],
  ['pool as text', '{"pool":"1","ip":"10.0.0.7"}'],
  ['ip missing', '{"pool":1}'],
  ['ip a number', '{"pool":1,"ip":7}'],
  ['ip garbage', '{"pool":1,"ip":"not-an-ip"}'],
  ['ip too short', '{"pool":1,"ip":"10.0.0"}'],
  ['ip with a prefix', '{"pool":1,"ip":"10.0.0.7/24"}'],
  ['ip with white space', '{"pool":1,"ip":" 10.0.0.7"}'],
  ['ip out of bounds', '{"pool":1,"ip":"10.0.0.256"}'],
  ['ip not canonical', '{"pool":1,"ip":"010.000.000.007"}'],
  ['ip of the other family', '{"pool":1,"ip":"fd00::7"}'],
  ['ip outside the subnet', '{"pool":1,"ip":"10.9.0.7"}'],
  ['ip outside rangeStart..rangeEnd', '{"pool":1,"ip":"10.0.0.200"}'],
  ['a traversal', '{"pool":1,"ip":"../../etc/passwd"}'],
  ['binary', '\u0000\u0001\u00ff'],
  ['huge', `{"pool":1,"ip":"10.0.0.7","pad":"${'x'.repeat(maxFileBytes)}"}`],
];

for (const [label, content] of badHints) {
  test(`a hint file that is ${label} is no hint, with a warning naming the file`, async () => {
    const dir = dataDir();
    mkdirSync(path.join(dir, 'p'));
    writeFileSync(path.join(dir, 'p', 'last_reserved_ip'), content);
    const log = warnings();
    assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), {});
    assert.equal(log.seen.length, 1, log.seen.join('\n'));
    assert.ok(log.seen[0]!.includes(path.join(dir, 'p', 'last_reserved_ip')), log.seen[0]);
    // And the next write replaces it.
    await rememberLastReserved(dir, 'p', 1, '10.0.0.8');
    assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), { lastReserved: '10.0.0.8' });
    rmSync(dir, { recursive: true });
  });
}

test('a huge hint file is not read whole: at most a few hundred bytes', async () => {
  const dir = dataDir();
  mkdirSync(path.join(dir, 'p'));
  // 64 MiB, sparse: reading it whole would take long and show in memory; the store reads maxFileBytes + 1.
  const file = path.join(dir, 'p', 'last_reserved_ip');
  execFileSync('truncate', ['-s', '64M', file]);
  const rss = process.memoryUsage().rss;
  const started = process.hrtime.bigint();
  const log = warnings();
  assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), {});
  assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 50, 'no 64 MiB read');
  assert.ok(process.memoryUsage().rss - rss < 32 * 1024 * 1024, 'no 64 MiB buffer');
  assert.match(log.seen.join('\n'), /larger than/);
  rmSync(dir, { recursive: true });
});

test('host files that are FIFOs, folders or symlinks are not read: no hint, a warning, no hang', async () => {
  const dir = dataDir();
  mkdirSync(path.join(dir, 'p', 'containers', 'c1'), { recursive: true });
  writeFileSync(path.join(dir, 'target'), JSON.stringify({ pool: 1, ip: '10.0.0.7' }));
  symlinkSync(path.join(dir, 'target'), path.join(dir, 'p', 'last_reserved_ip'));
  execFileSync('mkfifo', [path.join(dir, 'p', 'containers', 'c1', 'eth0')]);
  mkdirSync(path.join(dir, 'p', 'containers', 'c1', 'eth1'));
  const log = warnings();
  assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', log), {});
  assert.equal(await recallHeld(dir, 'p', 'c1', 'eth1', log), undefined);
  assert.equal(log.seen.length, 3, log.seen.join('\n'));
  // Writing replaces each of them (the symlink itself, not its target).
  await rememberLastReserved(dir, 'p', 1, '10.0.0.8');
  await rememberHeld(dir, 'p', 'c1', 'eth0', '10.0.0.9');
  await rememberHeld(dir, 'p', 'c1', 'eth1', '10.0.0.10');
  assert.equal(lstatSync(path.join(dir, 'p', 'last_reserved_ip')).isFile(), true);
  assert.equal(readFileSync(path.join(dir, 'target'), 'utf8'), JSON.stringify({ pool: 1, ip: '10.0.0.7' }), 'the symlink target is untouched');
  assert.equal(await recallHeld(dir, 'p', 'c1', 'eth0', log), '10.0.0.9');
  assert.equal(await recallHeld(dir, 'p', 'c1', 'eth1', log), '10.0.0.10');
  rmSync(dir, { recursive: true });
});

test('a held note that is not one canonical address is ignored, with a warning naming the file', async () => {
  const dir = dataDir();
  for (const content of ['', '10.0.0.9\n\n', 'garbage', '10.0.0.9/24', '../../x', '010.0.0.9', 'FD00::9', '10.0.0.9 10.0.0.10']) {
    mkdirSync(path.join(dir, 'p', 'containers', 'c1'), { recursive: true });
    writeFileSync(path.join(dir, 'p', 'containers', 'c1', 'eth0'), content);
    const log = warnings();
    assert.equal(await recallHeld(dir, 'p', 'c1', 'eth0', log), undefined, JSON.stringify(content));
    assert.ok(log.seen.length === 1 && log.seen[0]!.includes(path.join(dir, 'p', 'containers', 'c1', 'eth0')), `${JSON.stringify(content)}: ${log.seen}`);
  }
  // One of another family, or outside the pool's subnets, is no hint for ADD either.
  for (const ip of ['fd00::9', '10.9.0.9']) {
    writeFileSync(path.join(dir, 'p', 'containers', 'c1', 'eth0'), `${ip}\n`);
    const log = warnings();
    assert.equal((await recall(dir, pool(), 'c1', 'eth0', log)).held, undefined);
    assert.equal(log.seen.length, 1, log.seen.join('\n'));
  }
  rmSync(dir, { recursive: true });
});

test('symlinks below data_dir never carry a write or a delete outside it', async () => {
  const dir = dataDir();
  const outside = dataDir();
  writeFileSync(path.join(outside, 'eth0'), 'precious');
  writeFileSync(path.join(outside, 'last_reserved_ip'), 'precious');
  // The pool folder, the containers folder, a container's folder and the claiming folder are symlinks out.
  symlinkSync(outside, path.join(dir, 'p'));
  await assert.rejects(rememberLastReserved(dir, 'p', 1, '10.0.0.8'), /symlink/);
  await assert.rejects(rememberHeld(dir, 'p', 'eth0', 'eth0', '10.0.0.8'), /symlink/);
  await assert.rejects(forgetHeld(dir, 'p', 'c1', 'eth0'), /symlink/);
  assert.equal(await markClaiming(dir, 'p', '10.0.0.8', Date.now()), 'marked', 'no coordination, but no write either');
  rmSync(path.join(dir, 'p'));
  mkdirSync(path.join(dir, 'p', 'containers'), { recursive: true });
  symlinkSync(outside, path.join(dir, 'p', 'containers', 'c1'));
  symlinkSync(outside, path.join(dir, 'p', 'claiming'));
  await assert.rejects(forgetHeld(dir, 'p', 'c1', 'eth0'), /symlink/);
  await assert.rejects(rememberHeld(dir, 'p', 'c1', 'eth0', '10.0.0.8'), /symlink/);
  assert.equal(await markClaiming(dir, 'p', '10.0.0.8', Date.now()), 'marked');
  await assert.rejects(unmarkClaiming(dir, 'p', '10.0.0.8'), /symlink/);
  // Names that are not one path segment (GC takes them from KV) are refused before any path is made.
  for (const bad of ['..', '../..', 'a/../../b', '', '.']) {
    await assert.rejects(forgetHeld(dir, 'p', bad, 'eth0'), /not a file name/);
    await assert.rejects(forgetHeld(dir, 'p', 'c1', bad), /not a file name/);
    await assert.rejects(rememberHeld(dir, bad, 'c1', 'eth0', '10.0.0.8'), /not a file name/);
  }
  assert.deepEqual(readdirSync(outside).sort(), ['eth0', 'last_reserved_ip']);
  assert.equal(readFileSync(path.join(outside, 'eth0'), 'utf8'), 'precious');
  assert.equal(readFileSync(path.join(outside, 'last_reserved_ip'), 'utf8'), 'precious');
  rmSync(dir, { recursive: true });
  rmSync(outside, { recursive: true });
});

test('a planted symlink at a temporary file name is never written through', async () => {
  const dir = dataDir();
  const outside = dataDir();
  const victim = path.join(outside, 'victim');
  writeFileSync(victim, 'precious');
  mkdirSync(path.join(dir, 'p', 'claiming'), { recursive: true });
  symlinkSync(victim, path.join(dir, 'p', `.last_reserved_ip.${process.pid}.tmp`));
  symlinkSync(victim, path.join(dir, 'p', 'claiming', `.10.0.0.8.${process.pid}.tmp`));
  await rememberLastReserved(dir, 'p', 1, '10.0.0.8');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.8', Date.now()), 'marked');
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.deepEqual(await recall(dir, pool(), 'c1', 'eth0', warnings()), { lastReserved: '10.0.0.8' });
  rmSync(dir, { recursive: true });
  rmSync(outside, { recursive: true });
});

test('a marker holds the whole identity of its process from the moment it exists, and is gone when unmarked', async () => {
  const dir = dataDir();
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', Date.now()), 'marked');
  assert.equal(readFileSync(path.join(dir, 'p', 'claiming', '10.0.0.5'), 'utf8'), ownMarker());
  assert.deepEqual(readdirSync(path.join(dir, 'p', 'claiming')), ['10.0.0.5'], 'no temporary file is left');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', Date.now()), 'marked', 'marking again is idempotent');
  await unmarkClaiming(dir, 'p', '10.0.0.5');
  assert.deepEqual(readdirSync(path.join(dir, 'p', 'claiming')), []);
  rmSync(dir, { recursive: true });
});

test('an address marked by a running process of this host cannot be marked again until unmarked, and its marker is not ours to drop', async () => {
  const dir = dataDir();
  mkdirSync(path.join(dir, 'p', 'claiming'), { recursive: true });
  // Another running process (our parent stands in for it) holds 10.0.0.6.
  writeFileSync(path.join(dir, 'p', 'claiming', '10.0.0.6'), ownMarker(process.ppid));
  assert.equal(await markClaiming(dir, 'p', '10.0.0.6', Date.now()), 'held');
  await unmarkClaiming(dir, 'p', '10.0.0.6');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.6', Date.now()), 'held', 'unmark leaves a neighbour marker alone');
  rmSync(path.join(dir, 'p', 'claiming', '10.0.0.6'));
  assert.equal(await markClaiming(dir, 'p', '10.0.0.6', Date.now()), 'marked');
  rmSync(dir, { recursive: true });
});

test('markers left by processes that are gone are taken over: dead PID, reused PID, another boot, garbage, a symlink', async () => {
  const dir = dataDir();
  const marks = path.join(dir, 'p', 'claiming');
  mkdirSync(marks, { recursive: true });
  const [pid, start, boot] = ownMarker(process.ppid).trim().split(' ');
  const stale: Record<string, string> = {
    '10.0.0.1': `2147483646 ${start} ${boot}\n`, // no such process
    '10.0.0.2': `${pid} ${Number(start) + 1} ${boot}\n`, // the PID runs, but it is another process (the PID was reused)
    '10.0.0.3': `${pid} ${start} 00000000-0000-0000-0000-000000000000\n`, // written before this boot
    '10.0.0.4': `${pid}`, // the older format (a PID only, running): cannot tell the process, so nobody holds it
    '10.0.0.5': '',
    '10.0.0.6': 'x'.repeat(4096),
  };
  for (const [ip, content] of Object.entries(stale)) writeFileSync(path.join(marks, ip), content);
  symlinkSync('/etc/hostname', path.join(marks, '10.0.0.7'));
  const ips = [...Object.keys(stale), '10.0.0.7'];
  // Touched just now, each may be a claim made after a read of a moment ago: taken, and left as it is.
  for (const ip of ips) assert.equal(await markClaiming(dir, 'p', ip, Date.now() - 1000), 'taken', ip);
  assert.equal(readFileSync(path.join(marks, '10.0.0.1'), 'utf8'), stale['10.0.0.1']);
  // A read sent a minute after the last touch saw the outcome of that claim: the marker is taken over.
  const minuteLater = Date.now() + 60_000;
  for (const ip of ips) {
    assert.equal(await markClaiming(dir, 'p', ip, minuteLater), 'marked', ip);
    assert.equal(readFileSync(path.join(marks, ip), 'utf8'), ownMarker(), ip);
  }
  assert.deepEqual(readdirSync(marks).sort(), [...Object.keys(stale), '10.0.0.7'].sort(), 'no lock or temporary file is left');
  rmSync(dir, { recursive: true });
});

test('a stale marker found by many processes at once is taken over by exactly one', async () => {
  const dir = dataDir();
  const ips = Array.from({ length: 10 }, (_, i) => `10.0.0.${i + 10}`);
  // The store bundled to plain JavaScript, so each racer starts in milliseconds.
  const bundle = path.join(dir, 'host-store.js');
  await build({ entryPoints: [path.resolve(__dirname, '../../src/services/host-store.ts')], outfile: bundle, bundle: true, platform: 'node', format: 'cjs', logLevel: 'silent' });
  // Each racer, at every line on stdin, marks every address and prints those it won; it holds them while it runs.
  const script = `
    const { markClaiming } = require(${JSON.stringify(bundle)});
    require('node:readline').createInterface({ input: process.stdin }).on('line', async () => {
      const won = [];
      for (const ip of ${JSON.stringify(ips)}) if ((await markClaiming(${JSON.stringify(path.join(dir, 'data'))}, 'p', ip, Date.now())) === 'marked') won.push(ip);
      process.stdout.write(JSON.stringify(won) + '\\n');
    });
    process.stdout.write('ready\\n');`;
  const racers = Array.from({ length: 6 }, () => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: string[] = [];
    const waiting: Array<() => void> = [];
    require('node:readline').createInterface({ input: child.stdout }).on('line', (line: string) => (lines.push(line), waiting.shift()?.()));
    const next = () => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise<string>((resolve) => waiting.push(() => resolve(lines.shift()!))));
    return { child, next };
  });
  try {
    await Promise.all(racers.map((r) => r.next()));
    for (let round = 0; round < 10; round++) {
      const roundMarks = path.join(dir, 'data', 'p', 'claiming');
      rmSync(roundMarks, { recursive: true, force: true });
      mkdirSync(roundMarks, { recursive: true });
      for (const ip of ips) writeFileSync(path.join(roundMarks, ip), '2147483646 1 0\n');
      for (const ip of ips) utimesSync(path.join(roundMarks, ip), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000)); // stale since well before any read
      for (const r of racers) r.child.stdin.write('go\n');
      const won = (await Promise.all(racers.map(async (r) => JSON.parse(await r.next()) as string[]))).flat().sort();
      assert.deepEqual(won, [...ips].sort(), `round ${round}: each stale marker has exactly one new holder`);
    }
  } finally {
    for (const r of racers) r.child.kill();
  }
  rmSync(dir, { recursive: true });
});

test('a claim that may have been applied keeps its marker, touched: judged by that time once its process is gone', async () => {
  const dir = dataDir();
  const marks = path.join(dir, 'p', 'claiming');
  const marker = path.join(marks, '10.0.0.5');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', Date.now()), 'marked');
  const hourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(marker, hourAgo, hourAgo);
  const beforeKeep = Date.now();
  await keepClaimed(dir, 'p', '10.0.0.5');
  assert.equal(readFileSync(marker, 'utf8'), ownMarker(), 'the marker stays');
  assert.ok(statSync(marker).mtimeMs > beforeKeep - 1, 'touched when Consul answered'); // (a time set is rounded to below a millisecond)
  // Its process gone (a PID no process has), the marker is judged by its time against the caller's read.
  const touched = Date.now() - 10_000;
  writeFileSync(marker, '2147483646 1 0\n');
  utimesSync(marker, new Date(touched), new Date(touched));
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', touched - 5_000), 'taken', 'a read sent before the claim was answered');
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', touched + 20), 'taken', 'within the margin of file times');
  assert.equal(readFileSync(marker, 'utf8'), '2147483646 1 0\n', 'left as it is');
  // A time in the future (a clock stepped back, a planted file) is recent: the safe side.
  const future = new Date(Date.now() + 3_600_000);
  utimesSync(marker, future, future);
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', Date.now()), 'taken');
  utimesSync(marker, new Date(touched), new Date(touched));
  assert.equal(await markClaiming(dir, 'p', '10.0.0.5', touched + 1_000), 'marked', 'a read sent after it saw that claim: taken over');
  assert.equal(readFileSync(marker, 'utf8'), ownMarker());
  // keepClaimed and unmarkClaiming leave a marker that is not this process's alone.
  writeFileSync(path.join(marks, '10.0.0.6'), ownMarker(process.ppid));
  utimesSync(path.join(marks, '10.0.0.6'), hourAgo, hourAgo);
  await keepClaimed(dir, 'p', '10.0.0.6');
  await unmarkClaiming(dir, 'p', '10.0.0.6');
  assert.equal(Math.round(statSync(path.join(marks, '10.0.0.6')).mtimeMs), hourAgo.getTime(), 'not touched');
  rmSync(dir, { recursive: true });
});

test("a released address loses its marker: this process's, or a stale one touched before the release, never a running claimer's", async () => {
  const dir = dataDir();
  const outside = dataDir();
  const marks = path.join(dir, 'p', 'claiming');
  mkdirSync(marks, { recursive: true });
  const releasedAt = Date.now();
  const before = new Date(releasedAt - 60_000);
  const after = new Date(releasedAt + 1_000);
  const at = (ip: string, content: string, time: Date) => (writeFileSync(path.join(marks, ip), content), utimesSync(path.join(marks, ip), time, time));
  at('10.0.0.1', ownMarker(), after); // this process's (ADD's rollback)
  at('10.0.0.2', '2147483646 1 0\n', before); // a won claim of a process gone since
  at('10.0.0.3', '2147483646 1 0\n', after); // a claim made after the release: kept
  at('10.0.0.4', ownMarker(process.ppid), before); // a running neighbour's
  at('10.0.0.5', 'garbage', before);
  writeFileSync(path.join(outside, 'precious'), 'precious');
  symlinkSync(path.join(outside, 'precious'), path.join(marks, '10.0.0.6'));
  lutimesSync(path.join(marks, '10.0.0.6'), before, before);
  for (let i = 1; i <= 7; i++) await forgetClaimed(dir, 'p', `10.0.0.${i}`, releasedAt);
  assert.deepEqual(readdirSync(marks).sort(), ['10.0.0.3', '10.0.0.4']);
  assert.equal(readFileSync(path.join(outside, 'precious'), 'utf8'), 'precious', 'a symlink is removed, never followed');
  await assert.rejects(forgetClaimed(dir, 'p', '../x', releasedAt), /not a file name/);
  // A claiming folder that is a symlink out: nothing is deleted through it.
  rmSync(marks, { recursive: true });
  writeFileSync(path.join(outside, '10.0.0.2'), '2147483646 1 0\n');
  utimesSync(path.join(outside, '10.0.0.2'), before, before);
  symlinkSync(outside, marks);
  await assert.rejects(forgetClaimed(dir, 'p', '10.0.0.2', releasedAt), /symlink/);
  assert.deepEqual(readdirSync(outside).sort(), ['10.0.0.2', 'precious']);
  rmSync(dir, { recursive: true });
  rmSync(outside, { recursive: true });
});

test('a data dir that cannot be written never blocks a claim', async () => {
  const dir = dataDir();
  const file = path.join(dir, 'not-a-dir');
  writeFileSync(file, '');
  assert.equal(await markClaiming(file, 'p', '10.0.0.5', Date.now()), 'marked');
  rmSync(dir, { recursive: true });
});

test('a container ID too long to be a file name has no note, and costs no failure', async () => {
  const dir = dataDir();
  const id = `c${'0'.repeat(300)}`;
  const log = warnings();
  assert.deepEqual(await recall(dir, pool(), id, 'eth0', log), {});
  assert.equal(await recallHeld(dir, 'p', id, 'eth0', log), undefined);
  await assert.rejects(rememberHeld(dir, 'p', id, 'eth0', '10.0.0.9'), /not a file name/); // claimIp warns and goes on
  rmSync(dir, { recursive: true });
});
