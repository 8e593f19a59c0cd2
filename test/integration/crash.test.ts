// Crashes (issue 8): ADD and DEL processes killed with SIGKILL at random points during storms on a real Consul,
// alone (dist/ipam-da-consul, as ipam-delegated runs it) and inside the chain (dist/ipam-delegated → ipam-ds-static
// → ipam-da-consul, the whole process group killed), on two hosts sharing a pool. Then recovered as a runtime
// does: DEL after every ADD that did not succeed, DEL again after every DEL that did not. Afterwards no address
// is on two containers, the pool holds exactly the allocations of the containers whose ADD succeeded (and that
// were not deleted), and the files the killed processes left under data_dir break no later command.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { addressOf, allocationKeys, netConfig, putPool, tempDir } from '../support/plugin';
import { reportFigures } from '../support/reliability';

const root = path.resolve(__dirname, '../..');
const seed = Number(process.env.CRASH_SEED ?? 20_251_201);
const agent = useConsul();
let cniPath: string;

before(async () => {
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) assert.ok(existsSync(path.join(root, 'dist', name)), `dist/${name} is missing: run \`npm run build\``);
  cniPath = mkdtempSync(path.join(tmpdir(), 'crash-cni-path-'));
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) symlinkSync(path.join(root, 'dist', name), path.join(cniPath, name));
});

/** A small seeded PRNG (mulberry32): which processes are killed, and when, is the same for a seed (the machine's speed is not). */
function prng(s: number): () => number {
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Container {
  id: string;
  host: { dataDir: string; id: string };
  chain: boolean;
}

interface Outcome {
  killed: boolean;
  code: number | null;
  json: any;
  stdout: string;
  stderr: string;
}

type Kill = { afterMs: number } | { afterNoteMs: number } | undefined;

/**
 * Runs one command as a runtime does, in a process group of its own, and kills the whole group with SIGKILL:
 * `afterMs` after the start, or `afterNoteMs` after the container's note appears under data_dir (ADD writes it
 * just before its Consul write: this aims at the moments around the write), or never. "Killed" means the
 * signal ended it (it had not exited by then).
 */
function runCommand(pool: string, c: Container, command: 'ADD' | 'DEL', kill: Kill): Promise<Outcome> {
  const ipam = { host_id: c.host.id };
  const config = c.chain
    ? { cniVersion: '1.0.0', name: 'crash-net', type: 'bridge', ipam: { type: 'ipam-delegated', delegates: ['ipam-ds-static', 'ipam-da-consul'], pools: [{ name: pool }], consul_servers: [agent.url], data_dir: c.host.dataDir, ...ipam } }
    : netConfig({ servers: [agent.url], pool, dataDir: c.host.dataDir, ipam });
  const file = path.join(cniPath, c.chain ? 'ipam-delegated' : 'ipam-da-consul');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_CONTAINERID: c.id, CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/crash', CNI_PATH: cniPath, CNI_ARGS: '' };
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let exited = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(config));
    const stop = (): void => {
      if (exited) return;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    };
    let timer: NodeJS.Timeout | undefined;
    if (kill && 'afterMs' in kill) timer = setTimeout(stop, kill.afterMs);
    if (kill && 'afterNoteMs' in kill) {
      const note = path.join(c.host.dataDir, pool, 'containers', c.id, 'eth0');
      timer = setInterval(() => {
        if (!existsSync(note)) return;
        clearInterval(timer);
        timer = setTimeout(stop, kill.afterNoteMs);
      }, 1);
    }
    const hang = setTimeout(stop, 60_000);
    child.once('error', reject);
    child.once('exit', () => (exited = true));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(timer);
      clearTimeout(hang);
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ killed: signal === 'SIGKILL', code, json, stdout, stderr });
    });
  });
}

const succeeded = (o: Outcome) => !o.killed && o.code === 0 && Array.isArray(o.json?.ips);
const deleted = (o: Outcome) => !o.killed && o.code === 0;
const stackTrace = /\n\s+at /;

/** Every run either was killed, or ended in a result or one clean CNI error JSON. */
function assertEndedCleanly(o: Outcome, what: string): void {
  if (o.killed) return;
  assert.doesNotMatch(o.stdout + o.stderr, stackTrace, `${what}: stack trace\n${o.stdout}\n${o.stderr}`);
  if (o.code !== 0) assert.ok(o.json && Number.isInteger(o.json.code) && typeof o.json.msg === 'string', `${what}: not one CNI error JSON\n${o.stdout}\n${o.stderr}`);
}

test(`ADD and DEL killed with SIGKILL at random points in storms, alone and inside the chain, then recovered: 0 duplicates, 0 leaks (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const random = prng(seed);
  const pool = `crash-${process.pid}`;
  await putPool(agent.kv, pool, [{ subnet: '10.36.0.0/24', gateway: '10.36.0.1' }]);
  const hosts = [
    { dataDir: tempDir('crash-host-a-'), id: 'host-a' },
    { dataDir: tempDir('crash-host-b-'), id: 'host-b' },
  ];
  const rounds = 3;
  const n = 16;

  // How long one ADD takes here and now, through the chain: kill points are spread over a storm's length.
  const probe = { id: 'probe', host: hosts[0]!, chain: true };
  const started = Date.now();
  assert.ok(succeeded(await runCommand(pool, probe, 'ADD', undefined)));
  const single = Date.now() - started;
  assert.ok(deleted(await runCommand(pool, probe, 'DEL', undefined)));
  const spread = Math.max(300, (single * n) / Math.max(1, cpus().length));
  /** A third of ADDs killed at a random time, a third a few milliseconds after their note appears, a third left alone; half the DELs killed. */
  const killAt = (command: 'ADD' | 'DEL'): Kill => {
    const dice = random();
    if (command === 'DEL') return dice < 0.5 ? { afterMs: Math.floor(random() * spread * 0.5) } : undefined;
    if (dice < 0.33) return { afterMs: Math.floor(random() * spread) };
    if (dice < 0.67) return { afterNoteMs: Math.floor(random() * 20) };
    return undefined;
  };

  const figures = { seed, rounds, containersPerRound: n, singleAddMs: single, killSpreadMs: Math.round(spread), adds: 0, addsKilled: 0, addsKilledAfterTheirWrite: 0, addsSucceeded: 0, addsFailed: 0, dels: 0, delsKilled: 0, recoveryDels: 0, recovered: 0, duplicates: 0, leaked: 0, markersLeft: 0, temporaryFilesLeft: 0, stormMs: 0 };
  const holders = new Map<string, string>(); // container -> address its ADD returned, while it holds it
  const targets = async () => {
    const byTarget = new Map<string, string[]>();
    for (const key of await allocationKeys(agent.kv, pool)) {
      const target = String(((await agent.kv.getJson(key)) as { target?: unknown })?.target);
      byTarget.set(target, [...(byTarget.get(target) ?? []), key.split('/').pop()!]);
    }
    return byTarget;
  };
  const stormStarted = Date.now();
  for (let round = 0; round < rounds; round++) {
    const all: Container[] = Array.from({ length: n }, (_, i) => ({ id: `crash-${round}-${i}`, host: hosts[i % 2]!, chain: i % 4 >= 2 }));
    // 1. The ADD storm, with kills; at the same time, a DEL storm of half the containers of the round before, with kills.
    const leaving = [...holders.keys()].filter(() => random() < 0.5).map((id) => ({ id, host: hosts[Number(id.split('-')[2]) % 2]!, chain: Number(id.split('-')[2]) % 4 >= 2 }));
    const [adds, leaves] = await Promise.all([
      Promise.all(all.map((c) => runCommand(pool, c, 'ADD', killAt('ADD')))),
      Promise.all(leaving.map((c) => runCommand(pool, c, 'DEL', killAt('DEL')))),
    ]);
    adds.forEach((o, i) => assertEndedCleanly(o, `ADD ${all[i]!.id}`));
    leaves.forEach((o, i) => assertEndedCleanly(o, `DEL ${leaving[i]!.id}`));
    figures.adds += n;
    figures.addsKilled += adds.filter((o) => o.killed).length;
    figures.addsSucceeded += adds.filter(succeeded).length;
    figures.addsFailed += adds.filter((o) => !o.killed && !succeeded(o)).length;
    figures.dels += leaves.length;
    figures.delsKilled += leaves.filter((o) => o.killed).length;
    adds.forEach((o, i) => succeeded(o) && holders.set(all[i]!.id, addressOf(o.json.ips[0].address)));
    const afterStorm = await targets();
    figures.addsKilledAfterTheirWrite += all.filter((c, i) => adds[i]!.killed && afterStorm.has(c.id)).length;

    // 2. Recovery, as a runtime does: DEL (no prevResult.ips) for every ADD that did not succeed, half of them
    //    killed too; DEL again for every DEL killed or failed, until each succeeds.
    const failed = all.filter((_, i) => !succeeded(adds[i]!));
    const recovery = await Promise.all(failed.map((c) => runCommand(pool, c, 'DEL', killAt('DEL'))));
    recovery.forEach((o, i) => assertEndedCleanly(o, `DEL ${failed[i]!.id}`));
    figures.recoveryDels += recovery.length;
    figures.delsKilled += recovery.filter((o) => o.killed).length;
    let pending = [...failed.filter((_, i) => !deleted(recovery[i]!)), ...leaving.filter((_, i) => !deleted(leaves[i]!))];
    for (let retry = 0; pending.length > 0 && retry < 3; retry++) {
      const again = await Promise.all(pending.map((c) => runCommand(pool, c, 'DEL', undefined)));
      figures.recoveryDels += again.length;
      pending = pending.filter((_, i) => !deleted(again[i]!));
    }
    assert.deepEqual(pending.map((c) => c.id), [], 'every DEL succeeds in the end');
    for (const c of leaving) holders.delete(c.id);
    figures.recovered += failed.filter((c) => afterStorm.has(c.id)).length;

    // No address on two containers; the pool holds exactly the allocations of the containers holding one.
    const addresses = [...holders.values()];
    figures.duplicates += addresses.length - new Set(addresses).size;
    assert.equal(addresses.length, new Set(addresses).size, `an address given to two containers: ${addresses.join(' ')}`);
    const final = await targets();
    figures.leaked += [...final.keys()].filter((id) => !holders.has(id)).length;
    assert.deepEqual(Object.fromEntries([...final].sort()), Object.fromEntries([...holders].map(([id, ip]) => [id, [ip]]).sort()), `round ${round}: the pool holds exactly the live allocations`);
  }
  figures.stormMs = Date.now() - stormStarted;

  // What the killed processes left under data_dir breaks nothing: each host adds and deletes a new container.
  for (const host of hosts) {
    const claiming = path.join(host.dataDir, pool, 'claiming');
    const left = existsSync(claiming) ? readdirSync(claiming) : [];
    figures.markersLeft += left.filter((f) => !f.startsWith('.')).length;
    figures.temporaryFilesLeft += left.filter((f) => f.startsWith('.')).length + readdirSync(path.join(host.dataDir, pool)).filter((f) => f.startsWith('.')).length;
    for (const chain of [false, true]) {
      const c = { id: `after-${host.id}-${chain ? 'chain' : 'alone'}`, host, chain };
      const added = await runCommand(pool, c, 'ADD', undefined);
      assert.ok(succeeded(added), `ADD after the crashes on ${host.id}\n${added.stdout}\n${added.stderr}`);
      assert.ok(![...holders.values()].includes(addressOf(added.json.ips[0].address)), 'a live address is never handed out again');
      assert.ok(deleted(await runCommand(pool, c, 'DEL', undefined)), `DEL after the crashes on ${host.id}`);
    }
  }
  assert.deepEqual(Object.fromEntries([...(await targets())].sort()), Object.fromEntries([...holders].map(([id, ip]) => [id, [ip]]).sort()));
  reportFigures('crash', 'storms with SIGKILL', figures, t);
  assert.ok(figures.addsKilled >= 8 && figures.delsKilled >= 3, `too few processes were killed to show anything: ${JSON.stringify(figures)}`);
});
