// `npm run demo`: the whole package at work on this machine, in a few seconds. It starts a local Consul dev
// agent (in memory, on loopback), makes a pool with the operator CLI, then runs ADD, CHECK and DEL through the
// chain ipam-delegated → [ipam-ds-static, ipam-da-consul] — inside Debian's reference `bridge` plugin and a
// network namespace when it runs as root, else the chain alone — printing each command, its stdin, its result
// and what Consul KV holds afterwards.
//
// It leaves nothing behind: the namespace, the bridge, Consul and the temporary folder go at the end, also when
// a step fails or on Ctrl-C. The bridge gets no address (isGateway is off), so the host gains no route and no
// sysctl changes: the pool's addresses exist only inside the namespace. Exit code: 0 when every step did what
// it should, 1 when one did not, 130 (143) on SIGINT (SIGTERM). `--chain-only` skips bridge even as root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { consulBinary, startConsul, type ConsulAgent } from '../test/support/consul';

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');
const chain = ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul'];
const referencePlugins = '/usr/lib/cni';

const pool = 'demo';
const subnet = '10.98.0.0/24';
const range = `${subnet},10.98.0.10,10.98.0.20,10.98.0.1`;
const containerId = 'demo-container';
const tag = String(process.pid % 100000);
const netns = `ipamdemo-${tag}`;
const bridgeName = `ipamdemo${tag}`; // a link name has at most 15 characters
const stepTimeoutMs = 30_000;

/** A step that did not do what it should: the demo stops, cleans up and exits 1. */
class StepFailed extends Error {}

// ---------------------------------------------------------------------------
// Output

/** Set by SIGINT/SIGTERM/SIGHUP: the exit code, and the steps stop printing. */
let interrupted: number | undefined;
const say = (line = ''): void => {
  if (interrupted === undefined) process.stdout.write(`${line}\n`);
};
const indent = (text: string, by = '    '): string =>
  text
    .replace(/\s+$/, '')
    .split('\n')
    .map((line) => (line.trim() ? by + line : ''))
    .join('\n');
const heading = (title: string): void => say(`\n== ${title}`);

/** JSON with one line per top-level key: readable, and still JSON. */
function showJson(value: unknown): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return JSON.stringify(value);
  const entries = Object.entries(value as Record<string, unknown>);
  return `{\n${entries.map(([k, v], i) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}${i < entries.length - 1 ? ',' : ''}`).join('\n')}\n}`;
}

const relative = (file: string): string => (file.startsWith(`${root}/`) ? path.relative(root, file) : file);

// ---------------------------------------------------------------------------
// Processes, and putting everything back

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const running = new Map<ChildProcess, Promise<Run>>();
const cleanups: Array<{ what: string; undo: () => void | Promise<void> }> = [];
let cleaning: Promise<void> | undefined;

/** Runs a program to its end (killed after stepTimeoutMs); Ctrl-C stops it through cleanUp(). */
function run(file: string, args: string[], options: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const started = Date.now();
  let child!: ChildProcess;
  const finished = new Promise<Run>((resolve) => {
    child = spawn(file, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => undefined); // a program that exits without reading stdin
    child.stdin!.end(options.stdin ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), stepTimeoutMs);
    const done = (code: number | null, signal: NodeJS.Signals | null, error?: Error): void => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr: error ? `${stderr}${error.message}` : stderr, ms: Date.now() - started });
    };
    child.once('error', (error) => done(null, null, error));
    child.once('close', (code, signal) => done(code, signal));
  });
  running.set(child, finished);
  return finished;
}

/** Runs a short system command quietly (ip, while setting up or cleaning up). */
function quiet(command: string, args: string[]): { ok: boolean; output: string } {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
}

/** Undoes what the demo did, newest first, once; every undo is tried even when an earlier one fails. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    // A plugin still running (Ctrl-C during ADD) must be gone before its namespace and bridge are removed.
    for (const child of running.keys()) child.kill('SIGTERM');
    const killer = setTimeout(() => {
      for (const child of running.keys()) child.kill('SIGKILL');
    }, 2000);
    await Promise.all(running.values());
    clearTimeout(killer);
    const undone: string[] = [];
    for (const { what, undo } of cleanups.reverse()) {
      try {
        await undo();
        undone.push(what);
      } catch (error) {
        process.stderr.write(`demo: could not remove ${what}: ${(error as Error).message}\n`);
      }
    }
    if (undone.length) process.stdout.write(`\nCleaned up: ${undone.join(', ')}.\n`);
  })();
  return cleaning;
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    if (interrupted !== undefined) return; // a second Ctrl-C while cleaning up: let it finish
    process.stdout.write(`\nInterrupted (${signal}): cleaning up.\n`);
    interrupted = code;
    void cleanUp().finally(() => process.exit(code));
  });
}

// ---------------------------------------------------------------------------
// The steps

interface Setup {
  consul: ConsulAgent;
  work: string;
  cniPath: string;
  /** Why the chain runs alone, or undefined when it runs inside bridge in a namespace. */
  noBridge?: string;
}

/** The operator CLI, as an operator runs it; its output is shown as it is. */
async function cli(consul: ConsulAgent, args: string[]): Promise<Run> {
  const file = path.join(dist, 'consul-ipam');
  const all = ['--consul', consul.url, ...args];
  say(`$ ${relative(file)} ${all.join(' ')}`);
  const r = await run(file, all, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  if (r.stdout.trim()) say(indent(r.stdout));
  if (r.stderr.trim()) say(indent(r.stderr));
  if (r.code !== 0) throw new StepFailed(`consul-ipam ${args.slice(0, 2).join(' ')} exited with ${r.code ?? r.signal}`);
  return r;
}

/** Decides between bridge-in-a-namespace and the chain alone, installing the bridge plugin if it can. */
async function chooseMode(): Promise<string | undefined> {
  if (process.argv.includes('--chain-only')) return 'asked for with --chain-only';
  if (process.getuid?.() !== 0) return 'not root: a network namespace and a bridge need root';
  if (!existsSync(path.join(referencePlugins, 'bridge'))) {
    say(`Installing the CNI reference plugins (bridge) with apt-get: scripts/install-cni-plugins.sh`);
    const r = await run('bash', [path.join(root, 'scripts/install-cni-plugins.sh')]);
    if (r.code !== 0) return `${referencePlugins}/bridge is not installed and could not be: ${r.stderr.trim().split('\n').pop()}`;
  }
  if (!quiet('ip', ['-V']).ok) return 'the ip command (iproute2) is missing';
  const made = quiet('ip', ['netns', 'add', netns]);
  if (!made.ok) return `ip netns add failed: ${made.output}`;
  cleanups.push({
    what: `namespace ${netns}`,
    undo: () => {
      const r = quiet('ip', ['netns', 'del', netns]);
      if (!r.ok) throw new Error(r.output);
    },
  });
  // The bridge plugin makes the bridge on ADD and leaves it on DEL.
  cleanups.push({
    what: `bridge ${bridgeName}`,
    undo: () => {
      if (quiet('ip', ['link', 'show', bridgeName]).ok && !quiet('ip', ['link', 'del', bridgeName]).ok) throw new Error('ip link del failed');
    },
  });
  return undefined;
}

function networkConfig(setup: Setup, prevResult?: unknown): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'demo-net',
    type: 'bridge',
    ...(setup.noBridge === undefined ? { bridge: bridgeName, isGateway: false } : {}),
    ipam: {
      type: 'ipam-delegated',
      delegates: ['ipam-ds-static', 'ipam-da-consul'],
      pools: [{ name: pool }],
      consul_servers: [setup.consul.url],
      data_dir: path.join(setup.work, 'data'),
    },
    ...(prevResult === undefined ? {} : { prevResult }),
  };
}

/** Runs one CNI command the way a runtime does, showing the command, its stdin and its result. */
async function cniStep(setup: Setup, command: 'ADD' | 'CHECK' | 'DEL', prevResult?: unknown): Promise<any> {
  const viaBridge = setup.noBridge === undefined;
  const file = viaBridge ? path.join(referencePlugins, 'bridge') : path.join(setup.cniPath, 'ipam-delegated');
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_IFNAME: 'eth0',
    ...(viaBridge ? { CNI_NETNS: `/var/run/netns/${netns}` } : {}),
    CNI_PATH: viaBridge ? `${setup.cniPath}:${referencePlugins}` : setup.cniPath,
  };
  heading(command);
  say(`$ ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')} \\\n    ${file} < config`);
  const config = networkConfig(setup, prevResult);
  if (prevResult === undefined) say(`stdin:\n${indent(showJson(config))}`);
  else say('stdin: the same config, plus "prevResult": the ADD result (as the runtime cached it)');

  const r = await run(file, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdin: JSON.stringify(config) });
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  // bridge prints nothing on CHECK and DEL: the spec asks only for exit 0 there; the chain alone prints JSON.
  const quietSuccess = r.code === 0 && r.stdout.trim() === '' && command !== 'ADD';
  say(`result (exit ${r.code ?? r.signal}, ${r.ms} ms):`);
  say(indent(json !== undefined ? showJson(json) : quietSuccess ? '(no output: success, as the CNI spec has it)' : r.stdout || '(no output)'));
  if (r.stderr.trim()) say(`stderr:\n${indent(r.stderr)}`);
  if (r.code !== 0 || (json === undefined && !quietSuccess)) throw new StepFailed(`${command} failed (exit ${r.code ?? r.signal})`);
  return json;
}

async function showKv(setup: Setup): Promise<void> {
  say('Consul KV now:');
  await cli(setup.consul, ['pool', 'show', pool]);
}

async function main(): Promise<void> {
  say('ipam-da-consul demo: a pool in Consul KV, then ADD, CHECK and DEL through the IPAM chain');

  for (const name of [...chain, 'consul-ipam']) {
    if (!existsSync(path.join(dist, name))) throw new StepFailed(`dist/${name} is missing: run \`npm run build\` (npm run demo does)`);
  }

  heading('Consul');
  if (!existsSync(path.join(root, '.cache/consul/usr/bin/consul')) && !process.env.CONSUL_BIN) {
    say('Fetching Consul 1.8.7 into .cache/ (first run only): scripts/install-consul.sh');
  }
  const version = quiet(consulBinary(), ['version']).output.split('\n')[0];
  const consul = await startConsul();
  cleanups.push({ what: 'Consul', undo: () => consul.stop() });
  say(`${version} dev agent at ${consul.url} (in memory, loopback only)`);

  const work = mkdtempSync(path.join(tmpdir(), 'ipam-demo-'));
  cleanups.push({ what: `temporary folder ${work}`, undo: () => rmSync(work, { recursive: true, force: true }) });
  // CNI_PATH: our three plugins (the runtime looks plugins up by name there), then Debian's.
  const cniPath = path.join(work, 'bin');
  mkdirSync(cniPath);
  for (const name of chain) symlinkSync(path.join(dist, name), path.join(cniPath, name));
  mkdirSync(path.join(work, 'data'));

  const noBridge = await chooseMode();
  const setup: Setup = { consul, work, cniPath, noBridge };
  say(
    noBridge === undefined
      ? `Runtime side: ${referencePlugins}/bridge (Debian's reference plugin) in network namespace ${netns}, bridge ${bridgeName}`
      : `Runtime side: none, ipam-delegated runs alone (${noBridge})`,
  );
  say('Chain: ' + (noBridge === undefined ? 'bridge → ' : '') + 'ipam-delegated → ipam-ds-static (selects the pool), then ipam-da-consul (allocates)');

  heading(`Pool "${pool}"`);
  await cli(consul, ['pool', 'set', pool, '--range', range]);

  const added = await cniStep(setup, 'ADD');
  const address: unknown = added.ips?.[0]?.address;
  if (typeof address !== 'string' || !address.startsWith('10.98.0.')) throw new StepFailed(`ADD returned no address of ${subnet}`);
  const ip = address.split('/')[0]!;
  if (noBridge === undefined) {
    say(`$ ip -n ${netns} addr show eth0`);
    const shown = quiet('ip', ['-n', netns, 'addr', 'show', 'eth0']);
    say(indent(shown.output));
    if (!shown.ok || !shown.output.includes(`inet ${address} `)) throw new StepFailed(`eth0 in ${netns} does not carry ${address}`);
  }
  await showKv(setup);
  const allocation = await consul.kv.getJson<{ target?: string }>(`ipam/${pool}/${ip}`);
  if (allocation?.target !== containerId) throw new StepFailed(`ipam/${pool}/${ip} is not allocated to ${containerId}`);
  say(`Allocated ${address} to ${containerId}.`);

  await cniStep(setup, 'CHECK', added);
  await showKv(setup);
  say(`CHECK passed: ${ip} is still ${containerId}'s.`);

  await cniStep(setup, 'DEL', added);
  if (noBridge === undefined && quiet('ip', ['-n', netns, 'link', 'show', 'eth0']).ok) throw new StepFailed(`eth0 is still in ${netns} after DEL`);
  await showKv(setup);
  if ((await consul.kv.keys(`ipam/${pool}/`)).length !== 0) throw new StepFailed(`ipam/${pool}/ still holds allocations after DEL`);
  say(`Released ${ip}${noBridge === undefined ? `; eth0 is gone from ${netns}` : ''}.`);

  heading('Next');
  say('State diagrams of every machine (ADD, CHECK, DEL, GC, STATUS, ipam-delegated): docs/state-diagrams/README.md');
  say('Install the plugins where the runtime looks for them (Nomad: /opt/cni/bin):');
  say('    cp dist/ipam-* /opt/cni/bin/            # standard flavour');
  say('    cp dist/verbose/ipam-* /opt/cni/bin/    # or verbose: debug log in /var/log/cni/ipam-da-consul.log');
  say('    cp dist/consul-ipam /usr/local/bin/     # the operator CLI');
  say('  or from a release tarball (npm run release): tar -xzf release/ipam-da-consul-v*-linux-standard.tar.gz -C /opt/cni/bin');
  say(`\nAll steps passed: pool set, ADD, CHECK, DEL.`);
}

main()
  .then(
    () => 0,
    (error: unknown) => {
      say(`\nFAILED: ${error instanceof StepFailed ? error.message : (error as Error)?.stack ?? String(error)}`);
      return 1;
    },
  )
  .then(async (code) => {
    await cleanUp();
    process.exit(interrupted ?? code);
  });
