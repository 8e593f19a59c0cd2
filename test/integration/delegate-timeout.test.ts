// ipam.delegate_timeout_ms bounds a delegate even when a process it started keeps its stdout open (issue 8,
// item 10): the built ipam-delegated runs real shell-script delegates from a CNI_PATH directory, as a runtime
// runs it. One delegate answers and exits, leaving `sleep 1000 &` holding its stdout: its answer is taken at
// once. One never answers and leaves such a child too: at the timeout the whole process group is killed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCni } from '../support/plugin';
import { reportFigures } from '../support/reliability';

const root = path.resolve(__dirname, '../..');
let cniPath: string;
const result = '{"cniVersion":"1.0.0","ips":[],"routes":[],"dns":{}}';

/** A pid a delegate script wrote to `name` in CNI_PATH. */
const pidIn = (name: string): number => Number(readFileSync(path.join(cniPath, name), 'utf8').trim());

/** Whether a process is alive (a zombie is not: it only waits to be reaped). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

const pidsToKill: number[] = [];
const figures: Record<string, number> = {};

before(() => {
  assert.ok(existsSync(path.join(root, 'dist/ipam-delegated')), 'dist/ipam-delegated is missing: run `npm run build` first');
  cniPath = mkdtempSync(path.join(tmpdir(), 'delegate-timeout-'));
  symlinkSync(path.join(root, 'dist/ipam-delegated'), path.join(cniPath, 'ipam-delegated'));
  const script = (name: string, onAdd: string[]) =>
    writeFileSync(
      path.join(cniPath, name),
      ['#!/bin/sh', 'cat > /dev/null', 'if [ "$CNI_COMMAND" = ADD ]; then', ...onAdd.map((line) => `  ${line}`), 'fi', `echo '${result}'`].join('\n') + '\n',
      { mode: 0o755 },
    );
  // Answers, then exits, leaving a child that holds its stdout.
  script('ipam-dx-linger', [`sleep 1000 & echo $! > '${cniPath}/linger.pid'`]);
  // Never answers ADD, and leaves a child that holds its stdout.
  script('ipam-dx-hang', [`echo $$ > '${cniPath}/hang.pid'`, `sleep 1000 & echo $! > '${cniPath}/hang-child.pid'`, 'sleep 1000']);
});

after(() => {
  // Whatever the scripts started, even when a test failed before reading their pids.
  for (const name of ['linger.pid', 'hang.pid', 'hang-child.pid']) if (existsSync(path.join(cniPath, name))) pidsToKill.push(pidIn(name));
  for (const pid of pidsToKill) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  if (cniPath) rmSync(cniPath, { recursive: true, force: true });
  reportFigures('delegate-timeout', 'totals', figures);
});

const config = (delegate: string, timeoutMs: number) => ({
  cniVersion: '1.0.0',
  name: 'timeout-net',
  ipam: { type: 'ipam-delegated', delegates: [delegate], delegate_timeout_ms: timeoutMs },
});
const env = () => ({ CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/none', CNI_PATH: cniPath });

test('a delegate that answers and exits while a child of it holds its stdout: its answer is taken at once, not at the timeout', { timeout: 30_000 }, async () => {
  const run = await runCni(path.join(cniPath, 'ipam-delegated'), { command: 'ADD', config: config('ipam-dx-linger', 20_000), env: env(), timeoutMs: 15_000 });
  const child = pidIn('linger.pid');
  pidsToKill.push(child);
  assert.equal(run.code, 0, `ADD failed or was killed after ${run.ms} ms\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  assert.deepEqual(run.json, JSON.parse(result));
  figures.answeredWhileChildHoldsStdoutMs = run.ms;
  assert.ok(run.ms < 5_000, `answered in ${run.ms} ms, long before the 20 s timeout`);
  assert.match(run.stderr, /still holds its stdout/, 'the leftover process is reported');
  assert.ok(alive(child), 'a delegate that exited in time keeps what it started');
});

test('a delegate that never answers, with a child holding its stdout: ADD fails with 11 at delegate_timeout_ms and both are killed', { timeout: 30_000 }, async () => {
  const run = await runCni(path.join(cniPath, 'ipam-delegated'), { command: 'ADD', config: config('ipam-dx-hang', 1500), env: env(), timeoutMs: 15_000 });
  const [delegate, child] = [pidIn('hang.pid'), pidIn('hang-child.pid')];
  pidsToKill.push(delegate, child);
  assert.equal(run.code, 1, `ADD did not fail as a CNI error after ${run.ms} ms\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  assert.equal(run.json?.code, 11, run.stdout);
  assert.match(run.json.msg, /ipam-dx-hang ADD timed out/);
  assert.match(run.json.details, /killed after 1500 ms \(ipam\.delegate_timeout_ms\)/);
  figures.hungWithTimeout1500Ms = run.ms;
  assert.ok(run.ms < 8_000, `failed in ${run.ms} ms, bounded by the 1.5 s timeout (plus start-up and the rollback DEL)`);
  assert.equal(alive(delegate), false, 'the delegate was killed');
  assert.equal(alive(child), false, 'and so was the child it started');
});
