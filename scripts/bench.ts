/**
 * `npm run bench`: what a container start costs, as ratios measured side by side in one run.
 *
 * The machine is shared and noisy, so absolute times mean little: every figure is a ratio of medians of
 * commands run alternately, in the same environment. The plugin runs as a runtime runs it (a new process,
 * env + stdin) against a real local Consul started here. Results go to stdout as a Markdown table and to
 * .cache/bench-last.md; docs/performance.md explains them.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { homePosition } from '../src/services/contention';
import { startConsul, type ConsulAgent } from '../test/support/consul';
import { stormModel, stormModelRow } from './bench-storm-model';

const root = path.resolve(__dirname, '..');
const plugin = path.join(root, 'dist/ipam-da-consul');
const verbosePlugin = path.join(root, 'dist/verbose/ipam-da-consul');
/** The pool selector the delegated chain runs before the allocator, on every ADD. */
const dsStatic = path.join(root, 'dist/ipam-ds-static');
/** The single executable of this machine's arch (scripts/build-sea.mjs); BENCH_BINARY_DIR measures another build of it. */
const binaryDir = process.env.BENCH_BINARY_DIR ?? path.join(root, `dist-bin/linux-${process.arch}`);
const binaryPlugin = path.join(binaryDir, 'ipam-da-consul');
/** How each form of the plugin is started: the script by node, the single executable by itself. */
const scriptForm = ['node', plugin];
const binaryForm = [binaryPlugin];
const hostLocal = '/usr/lib/cni/host-local';
const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
const stormRuns = Number(process.env.BENCH_STORM_RUNS ?? 5);
const work = mkdtempSync(path.join(tmpdir(), 'ipam-bench-'));

// NODE_EXTRA_CA_CERTS (set on these machines) makes every Node start load a CA bundle: ~40 ms that a CNI
// host normally does not pay. Both sides of every ratio run without it, so the ratio shows our own cost.
// The V8 code cache lives in a folder of this run's own: /var/cache/ipam-da-consul is shared by every
// checkout on the machine, and each build deletes the caches of other builds, so on a machine where several
// builds run at once every ADD would compile from scratch and write a cache (~100 ms of CPU), which no host
// with one installed build ever does.
const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', IPAM_CODE_CACHE_DIR: path.join(work, 'code-cache') };

interface Run {
  readonly ms: number;
  readonly result: { status: number | null; stdout: string; stderr: string };
}

/**
 * Runs one process and times it. Never spawnSync: the Consul agent's log pipe must keep being read while a
 * plugin runs, or the agent blocks on a full pipe and the plugin times out.
 */
function run(args: string[], env: NodeJS.ProcessEnv = {}, input = ''): Promise<Run> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(args[0]!, args.slice(1), { env: { ...baseEnv, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, result: { status, stdout, stderr } }));
    child.stdin.end(input);
  });
}

/** The version of the Node inside the single executable, as it reports it. */
function binaryNodeVersion(): string {
  return JSON.parse(readFileSync(path.join(root, 'scripts/embedded-node.json'), 'utf8')).version;
}

function mustSucceed({ result }: Run, what: string): void {
  if (result.status !== 0) throw new Error(`${what} failed (${result.status}): ${result.stdout}${result.stderr}`);
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};

/** Runs each named command once per round, alternating, and returns the median time of each. */
async function alternate(commands: Record<string, (round: number) => Promise<Run>>): Promise<Record<string, number>> {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, command] of Object.entries(commands)) times[name]!.push((await command(round)).ms);
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

function config(agent: ConsulAgent, pool: string, dataDir: string, prevIps: string[] = [], hostId?: string): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'bench',
    ipam: { type: 'ipam-delegated', consul_servers: [agent.url], data_dir: dataDir, ...(hostId ? { host_id: hostId } : {}) },
    prevResult: { ips: prevIps.map((address) => ({ address })), pools: [{ name: pool }] },
  });
}

const cni = (command: string, containerId: string) => ({ CNI_COMMAND: command, CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(plugin) });

/** ADD, checked, returning its address for the DEL that follows. */
async function add(agent: ConsulAgent, pool: string, dataDir: string, id: string, form = scriptForm, hostId?: string): Promise<Run & { address: string }> {
  const r = await run(form, cni('ADD', id), config(agent, pool, dataDir, [], hostId));
  mustSucceed(r, `ADD ${id} in ${pool}`);
  return { ...r, address: (JSON.parse(String(r.result.stdout)) as { ips: Array<{ address: string }> }).ips[0]!.address };
}

async function del(agent: ConsulAgent, pool: string, dataDir: string, id: string, address: string, form = scriptForm): Promise<Run> {
  const r = await run(form, cni('DEL', id), config(agent, pool, dataDir, [address]));
  mustSucceed(r, `DEL ${id} in ${pool}`);
  return r;
}

/** Writes `count` allocations into a pool, 64 keys per Consul transaction, as other hosts would have. */
async function fill(agent: ConsulAgent, pool: string, addresses: Iterable<string>): Promise<number> {
  let batch: object[] = [];
  let count = 0;
  const flush = async () => {
    const response = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(batch) });
    if (!response.ok) throw new Error(`filling ${pool}: ${response.status} ${await response.text()}`);
    batch = [];
  };
  for (const ip of addresses) {
    const value = Buffer.from(JSON.stringify({ target: `other-${count}`, ifname: 'eth0', host: 'another-host' })).toString('base64');
    batch.push({ KV: { Verb: 'set', Key: `ipam/${pool}/${ip}`, Value: value } });
    count++;
    if (batch.length === 64) await flush();
  }
  if (batch.length > 0) await flush();
  return count;
}

function* ipv4From(a: number, b: number, count: number): Generator<string> {
  for (let i = 1; i <= count; i++) yield `10.${a}.${b + Math.floor(i / 256)}.${i % 256}`;
}

function* ipv6From(count: number): Generator<string> {
  for (let i = 1; i <= count; i++) yield `fd00:1::${i.toString(16)}`;
}

/** Peak resident set size of one command, in KiB, from GNU time. */
async function peakRss(args: string[], env: NodeJS.ProcessEnv, input = ''): Promise<number> {
  const r = await run(['/usr/bin/time', '-f', '%M', ...args], env, input);
  const lines = r.result.stderr.trim().split('\n');
  return Number(lines[lines.length - 1]);
}

/** Counts the Consul requests one invocation sends, from the verbose flavour's debug log. */
async function consulRequests(agent: ConsulAgent, command: string, pool: string, dataDir: string, id: string, prevIps: string[] = []): Promise<string[]> {
  const log = path.join(work, `${command}-${id}.log`);
  const r = await run(['node', verbosePlugin], { ...cni(command, id), IPAM_DA_CONSUL_LOG_FILE: log }, config(agent, pool, dataDir, prevIps));
  mustSucceed(r, `verbose ${command}`);
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => / consul (GET|PUT|DELETE) /.test(line))
    .map((line) => line.replace(/^.* consul /, '').replace(/ -> .*$/, ''));
}

/**
 * Starts `count` ADD processes, `atOnce` of them at a time (all at once by default: a storm); resolves with
 * each one's exit code and stdout, in the order they were started.
 */
async function storm(agent: ConsulAgent, pool: string, count: number, hosts: number, atOnce = count): Promise<Array<{ code: number; stdout: string }>> {
  const dataDirs = Array.from({ length: hosts }, (_, i) => path.join(work, `${pool}-host-${i}`));
  const one = (i: number) =>
    new Promise<{ code: number; stdout: string }>((resolve) => {
      const child = spawn('node', [plugin], { env: { ...baseEnv, ...cni('ADD', `storm-${i}`) } });
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.on('close', (code) => resolve({ code: code ?? -1, stdout }));
      child.stdin.end(config(agent, pool, dataDirs[i % hosts]!, [], `storm-host-${i % hosts}`));
    });
  const outcomes: Array<{ code: number; stdout: string }> = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) outcomes[i] = await one(i);
  };
  await Promise.all(Array.from({ length: Math.min(atOnce, count) }, lane));
  return outcomes;
}

async function main(): Promise<void> {
  if (!existsSync(plugin) || !existsSync(verbosePlugin)) throw new Error('run `npm run build` first');
  if (!existsSync(binaryPlugin)) throw new Error(`${binaryPlugin} is missing: run \`node scripts/build-sea.mjs --arch host\` first`);
  const started = Date.now();
  const agent = await startConsul();
  const rows: Array<[string, string, string, string]> = [];
  const row = (name: string, value: string, goal: string, met: boolean | undefined) => rows.push([name, value, goal, met === undefined ? '' : met ? 'met' : 'NOT met']);
  try {
    const put = (key: string, ranges: object[]) => agent.kv.put(key, ranges);
    await put('ipam/empty4', [{ subnet: '10.0.0.0/16', gateway: '10.0.0.1' }]);
    await put('ipam/full4', [{ subnet: '10.1.0.0/16', gateway: '10.1.255.254' }]);
    await put('ipam/big6', [{ subnet: 'fd00:1::/48' }]);
    const filled = await fill(agent, 'full4', ipv4From(1, 0, 50_000));
    const filled6 = await fill(agent, 'big6', ipv6From(1_000));
    const dirs = { empty4: path.join(work, 'empty4'), full4: path.join(work, 'full4'), big6: path.join(work, 'big6') };
    for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });

    // Warm-up (the first ADD of a hint-less host in a crowded pool is measured apart below, a new host each round).
    const cold = await add(agent, 'full4', dirs.full4, 'warm-full4');
    await del(agent, 'full4', dirs.full4, 'warm-full4', cold.address);
    for (const pool of ['empty4', 'big6'] as const) {
      const warm = await add(agent, pool, dirs[pool], `warm-${pool}`);
      await del(agent, pool, dirs[pool], `warm-${pool}`, warm.address);
    }
    // The single executable keeps code caches of its own (one per program): warm them too.
    const warmBinary = await add(agent, 'empty4', dirs.empty4, 'warm-binary', binaryForm);
    await del(agent, 'empty4', dirs.empty4, 'warm-binary', warmBinary.address, binaryForm);

    const versionInput = '{"cniVersion":"1.0.0"}';
    const dsStaticInput = JSON.stringify({ cniVersion: '1.0.0', name: 'bench', ipam: { type: 'ipam-delegated', pools: [{ name: 'empty4' }] } });
    mustSucceed(await run(['node', dsStatic], cni('ADD', 'ds-warm'), dsStaticInput), 'ipam-ds-static ADD'); // writes its code cache
    const startup = await alternate({
      node: () => run(['node', '-e', '']),
      about: () => run(['node', plugin]),
      version: () => run(['node', plugin], { CNI_COMMAND: 'VERSION' }, versionInput),
      dsStatic: async (i) => {
        const r = await run(['node', dsStatic], cni('ADD', `ds${i}`), dsStaticInput);
        mustSucceed(r, 'ipam-ds-static ADD');
        return r;
      },
    });
    row('"about" run (no CNI_COMMAND) ÷ `node -e \'\'`', (startup.about! / startup.node!).toFixed(2), '≤ 1.5', startup.about! / startup.node! <= 1.5);
    row('`VERSION` ÷ `node -e \'\'`', (startup.version! / startup.node!).toFixed(2), '≤ 1.5', startup.version! / startup.node! <= 1.5);
    // The selector loads its own machine (xstate, io-ts) but no HTTP client: between VERSION and the allocator.
    row('`ipam-ds-static` `ADD` ÷ `node -e \'\'`', (startup.dsStatic! / startup.node!).toFixed(2), '≤ 1.5', startup.dsStatic! / startup.node! <= 1.5);

    // ADD and DEL in pairs: each ADD's address is released by the DEL that follows, so pools keep their size.
    const pending: Record<string, string> = {};
    const addThenRemember = async (pool: keyof typeof dirs, id: string) => {
      const r = await add(agent, pool, dirs[pool], id);
      pending[id] = r.address;
      return r;
    };
    const delRemembered = (pool: keyof typeof dirs, id: string) => del(agent, pool, dirs[pool], id, pending[id]!);
    const commands = await alternate({
      node: () => run(['node', '-e', '']),
      addEmpty: (i) => addThenRemember('empty4', `e${i}`),
      delEmpty: (i) => delRemembered('empty4', `e${i}`),
      addFull: (i) => addThenRemember('full4', `f${i}`),
      delFull: (i) => delRemembered('full4', `f${i}`),
      addV6: (i) => addThenRemember('big6', `s${i}`),
      delV6: (i) => delRemembered('big6', `s${i}`),
      // A host joining the cluster (or one that lost data_dir): no hint, its own host_id.
      addNewHost: async (i) => {
        const r = await add(agent, 'full4', path.join(work, `newcomer-${i}`), `n${i}`, scriptForm, `newcomer-${i}`);
        pending[`n${i}`] = r.address;
        return r;
      },
      delNewHost: (i) => del(agent, 'full4', path.join(work, `newcomer-${i}`), `n${i}`, pending[`n${i}`]!),
    });
    // Where the newcomers' homes fell: inside the run of 50,000 allocations (positions 0–49,999 of 65,534) or after it.
    const homesInRun = Array.from({ length: rounds }, (_, i) => homePosition(`newcomer-${i}`, 65534n)).filter((home) => home < BigInt(filled)).length;
    const ratio = (a: number, b: number) => a / b;
    row('`ADD` on an empty pool ÷ `node -e \'\'`', ratio(commands.addEmpty!, commands.node!).toFixed(2), '≤ 2.5', ratio(commands.addEmpty!, commands.node!) <= 2.5);
    row('`DEL` ÷ `node -e \'\'`', ratio(commands.delEmpty!, commands.node!).toFixed(2), '≤ 2.5', ratio(commands.delEmpty!, commands.node!) <= 2.5);
    row(`\`ADD\` with ${filled.toLocaleString('en')} allocations ÷ \`ADD\` on an empty pool`, ratio(commands.addFull!, commands.addEmpty!).toFixed(2), '≤ 1.5', ratio(commands.addFull!, commands.addEmpty!) <= 1.5);
    row(`\`DEL\` with ${filled.toLocaleString('en')} allocations (prevResult carries the IP) ÷ \`DEL\` on an empty pool`, ratio(commands.delFull!, commands.delEmpty!).toFixed(2), '≤ 1.5', ratio(commands.delFull!, commands.delEmpty!) <= 1.5);
    row(`\`ADD\` in an IPv6 /48 with ${filled6.toLocaleString('en')} allocations ÷ \`ADD\` on an empty IPv4 pool`, ratio(commands.addV6!, commands.addEmpty!).toFixed(2), '≤ 1.5', ratio(commands.addV6!, commands.addEmpty!) <= 1.5);
    row(
      `first \`ADD\` of a host with no hint (a new \`host_id\` each round; ${homesInRun} of ${rounds} homes inside the run) in the ${filled.toLocaleString('en')}-allocation pool ÷ \`ADD\` on an empty pool`,
      ratio(commands.addNewHost!, commands.addEmpty!).toFixed(2),
      '≤ 1.5',
      ratio(commands.addNewHost!, commands.addEmpty!) <= 1.5,
    );


    // The single executable against the script form, side by side: same commands, same pool, same host folder.
    const forms = await alternate({
      scriptAbout: () => run(scriptForm),
      binaryAbout: () => run(binaryForm),
      scriptAdd: (i) => addThenRemember('empty4', `sa${i}`),
      binaryAdd: async (i) => {
        const r = await add(agent, 'empty4', dirs.empty4, `ba${i}`, binaryForm);
        pending[`ba${i}`] = r.address;
        return r;
      },
      scriptDel: (i) => delRemembered('empty4', `sa${i}`),
      binaryDel: (i) => del(agent, 'empty4', dirs.empty4, `ba${i}`, pending[`ba${i}`]!, binaryForm),
    });
    for (const [what, key] of [['"about" run', 'About'], ['`ADD`', 'Add'], ['`DEL`', 'Del']] as const) {
      const binaryTime = forms[`binary${key}`]!;
      const scriptTime = forms[`script${key}`]!;
      row(`single executable ${what} ÷ the script's (\`node dist/ipam-da-consul\`)`, `${(binaryTime / scriptTime).toFixed(2)} (${binaryTime.toFixed(0)} / ${scriptTime.toFixed(0)} ms)`, '≤ 1.1', binaryTime / scriptTime <= 1.1);
    }
    row(`size of the single executable (Node ${binaryNodeVersion()} inside)`, `${(statSync(binaryPlugin).size / 2 ** 20).toFixed(1)} MiB`, 'reference', undefined);

    // The storms: 100 ADD processes at once on one pool, from 1 "host" (data dir) and from 10 of ten processes
    // each; five runs of each, alternating, each on a fresh pool, each against the median of ten sequential
    // ADDs: five run just before it and five just after. The machine's speed drifts within seconds (a storm
    // takes ~6): a baseline on both sides is what the storm saw, where one taken before it alone counts a
    // slow spell during the storm as the plugin's. The ratio against the five before alone is printed beside,
    // as a reference (the method up to issue 12's ninth pass).
    // A third kind: one host that has served the pool before the storm (one ADD and its DEL), as a host running
    // containers has: its ADDs may claim in one request, like the sequential ones they are compared with.
    // A fourth, a reference with no goal: the first kind's 100 ADDs started 4 at a time, the next as one ends.
    // What it saves is what running 100 processes at once on these cores costs (docs/performance.md, "The storm
    // on 2 cores", twelfth pass): the bound for anything the plugin could do about a storm.
    const stormKinds = [
      { name: '1 host', hosts: 1, warm: false, atOnce: 100 },
      { name: '10 hosts', hosts: 10, warm: false, atOnce: 100 },
      { name: '1 host that served the pool before', hosts: 1, warm: true, atOnce: 100 },
      { name: '1 host, 4 at a time', hosts: 1, warm: false, atOnce: 4 },
    ] as const;
    const stormRatios: Record<string, number[]> = Object.fromEntries(stormKinds.map((kind) => [kind.name, []]));
    const stormRatiosBefore: Record<string, number[]> = Object.fromEntries(stormKinds.map((kind) => [kind.name, []]));
    /** The times of five sequential ADDs (each followed by its DEL) on the empty pool. */
    const sequentialAdds = async (tag: string): Promise<number[]> => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await add(agent, 'empty4', dirs.empty4, `seq-${tag}-${i}`);
        times.push(r.ms);
        await del(agent, 'empty4', dirs.empty4, `seq-${tag}-${i}`, r.address);
      }
      return times;
    };
    let stormsOk = true;
    const stormFailures: string[] = [];
    for (let k = 0; k < stormRuns; k++) {
      for (const [n, { name, hosts, warm, atOnce }] of stormKinds.entries()) {
        const pool = `storm-${n}-${k}`;
        await put(`ipam/${pool}`, [{ subnet: `10.${40 + k * stormKinds.length + n}.0.0/16` }]);
        if (warm) {
          const warmUp = await add(agent, pool, path.join(work, `${pool}-host-0`), 'storm-warm-up', scriptForm, 'storm-host-0');
          await del(agent, pool, path.join(work, `${pool}-host-0`), 'storm-warm-up', warmUp.address);
        }
        const before = await sequentialAdds(`${pool}-before`);
        const stormStart = Date.now();
        const outcomes = await storm(agent, pool, 100, hosts, atOnce);
        const stormWall = Date.now() - stormStart;
        const after = await sequentialAdds(`${pool}-after`);
        stormRatios[name]!.push(stormWall / (100 * median([...before, ...after])));
        stormRatiosBefore[name]!.push(stormWall / (100 * median(before)));
        const addresses = outcomes.filter((o) => o.code === 0).map((o) => (JSON.parse(o.stdout) as { ips: Array<{ address: string }> }).ips[0]!.address);
        const keys = (await agent.kv.keys(`ipam/${pool}/`)).length;
        const ok = addresses.length === 100 && new Set(addresses).size === 100 && keys === 100;
        if (!ok) stormFailures.push(`${pool}: ${addresses.length} successes, ${new Set(addresses).size} distinct, ${keys} keys; ${outcomes.find((o) => o.code !== 0)?.stdout.trim() ?? ''}`);
        stormsOk &&= ok;
      }
    }
    row(`${stormRuns * stormKinds.length} storms of 100 \`ADD\` processes on one pool (all at once, or 4 at a time for the reference): each 100 successes, 100 distinct IPs, 100 keys in Consul`, stormsOk ? 'yes' : `NO: ${stormFailures.join('; ')}`, 'every one', stormsOk);
    for (const { name, atOnce } of stormKinds) {
      const ratios = stormRatios[name]!;
      const shown = ratios.map((r) => r.toFixed(2)).join(', ');
      if (atOnce < 100) {
        row(`reference: the same 100 \`ADD\`s from 1 host, ${atOnce} processes at a time, the next started as one ends ÷ (100 × one sequential \`ADD\`, timed before and after)`, shown, 'reference', undefined);
        continue;
      }
      row(`storm wall time ÷ (100 × one sequential \`ADD\`, timed before and after), ${name} — ${cpus().length} cores, ${stormRuns} runs`, shown, '≤ 0.8 in every run', ratios.every((r) => r <= 0.8));
      row(`reference: the same storms ÷ (100 × one sequential \`ADD\` timed before only), ${name}`, stormRatiosBefore[name]!.map((r) => r.toFixed(2)).join(', '), 'reference', undefined);
    }

    // The storm model: a rollout over many hosts, counted at a proxy in front of Consul (bench-storm-model.ts).
    const modelAdds = Number(process.env.BENCH_STORM_ADDS ?? 1000);
    const modelConcurrency = Number(process.env.BENCH_STORM_CONCURRENCY ?? 32);
    const models = [
      { hosts: 10, sameStart: false },
      { hosts: 30, sameStart: false },
      { hosts: 100, sameStart: false },
      { hosts: 100, sameStart: true },
    ];
    for (const [i, { hosts, sameStart }] of models.entries()) {
      const result = await stormModel({
        consulUrl: agent.url, plugin, env: baseEnv, work, pool: `model-${i}`, subnet: `10.${20 + i}.0.0/16`, hosts, adds: modelAdds, concurrency: modelConcurrency, sameStart,
      });
      const [name, value, goal, met] = stormModelRow(result, modelConcurrency, sameStart ? ' without homes (every host from rangeStart, for comparison)' : '');
      row(name, `${value}; ${result.hostsThatLost} hosts lost a write`, sameStart ? 'reference' : goal, sameStart ? undefined : met);
    }

    const rssNode: number[] = [];
    const rssAdd: number[] = [];
    for (let i = 0; i < 5; i++) {
      rssNode.push(await peakRss(['node', '-e', ''], {}));
      rssAdd.push(await peakRss(['node', plugin], cni('ADD', `rss-${i}`), config(agent, 'empty4', dirs.empty4)));
    }
    const rss = { node: median(rssNode), add: median(rssAdd) };
    row('peak RSS of one `ADD` ÷ peak RSS of `node -e \'\'`', `${(rss.add / rss.node).toFixed(2)} (${Math.round(rss.add / 1024)} / ${Math.round(rss.node / 1024)} MiB)`, '≤ 1.5', rss.add / rss.node <= 1.5);

    const addRequests = await consulRequests(agent, 'ADD', 'empty4', dirs.empty4, 'count-1');
    const added = JSON.parse((await run(['node', plugin], cni('ADD', 'count-1'), config(agent, 'empty4', dirs.empty4))).result.stdout) as { ips: Array<{ address: string }> };
    const delRequests = await consulRequests(agent, 'DEL', 'empty4', dirs.empty4, 'count-1', [added.ips[0]!.address]);
    row('Consul HTTP requests per `ADD` / per `DEL`', `${addRequests.length} / ${delRequests.length}`, 'as few as the design allows', undefined);

    if (existsSync(hostLocal)) {
      const hostLocalConfig = (dir: string) => JSON.stringify({ cniVersion: '1.0.0', name: 'bench', ipam: { type: 'host-local', ranges: [[{ subnet: '10.9.0.0/16' }]], dataDir: dir } });
      const hostLocalDir = path.join(work, 'host-local');
      const reference = await alternate({
        node: () => run(['node', '-e', '']),
        hostLocal: (i) => run([hostLocal], { ...cni('ADD', `hl-${i}`), CNI_NETNS: '/var/run/netns/bench' }, hostLocalConfig(hostLocalDir)),
        add: (i) => addThenRemember('empty4', `r${i}`),
      });
      row("reference: Go `host-local` `ADD` (its file store) ÷ `node -e ''`", (reference.hostLocal! / reference.node!).toFixed(2), 'reference', undefined);
      row('reference: our `ADD` ÷ Go `host-local` `ADD`', (reference.add! / reference.hostLocal!).toFixed(2), 'reference', undefined);
    }

    const lines = [
      `| row | measured | goal | |`,
      `|---|---|---|---|`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      `Medians of ${rounds} alternating rounds; \`node -e ''\` took ${startup.node!.toFixed(1)} ms here (${commands.node!.toFixed(1)} ms in the ADD/DEL rounds), ADD ${commands.addEmpty!.toFixed(1)} ms, DEL ${commands.delEmpty!.toFixed(1)} ms.`,
      `Environment: ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, NODE_EXTRA_CA_CERTS unset for every command. Bench took ${Math.round((Date.now() - started) / 1000)} s.`,
      '',
      'Consul requests of one ADD:',
      ...addRequests.map((r) => `- ${r}`),
      'Consul requests of one DEL:',
      ...delRequests.map((r) => `- ${r}`),
    ];
    console.log(lines.join('\n'));
    mkdirSync(path.join(root, '.cache'), { recursive: true });
    writeFileSync(path.join(root, '.cache/bench-last.md'), `${lines.join('\n')}\n`);
  } finally {
    await agent.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
