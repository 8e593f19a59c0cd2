// Real Consul agents for the integration tests: a single -dev agent, or a small
// cluster of real servers for fault tests. Everything binds to 127.0.0.1 on
// ports picked at run time, so several test files can run side by side.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface KvEntry {
  value: string;
  modifyIndex: number;
  createIndex: number;
}

export interface KvHelper {
  put(key: string, value: string | object): Promise<void>;
  get(key: string): Promise<KvEntry | undefined>;
  getJson<T>(key: string): Promise<T | undefined>;
  keys(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  deleteTree(prefix: string): Promise<void>;
}

export interface ConsulAgent {
  url: string; // http://127.0.0.1:P
  httpsUrl?: string;
  port: number;
  /** The Serf LAN port, for another agent to -retry-join. */
  serfLanPort: number;
  stop(): Promise<void>;
  kv: KvHelper;
}

/** A client agent (not -dev, not a server) that joined a server under its own node name. */
export interface ClientAgent {
  node: string;
  url: string;
  /** Kills it without a leave, like a host that dies: the servers keep its node, marked failed. */
  crash(): Promise<void>;
  /** Stops it (graceful leave when it still runs) and removes its data dir. */
  stop(): Promise<void>;
}

export interface StartConsulOptions {
  /** Enables ACLs with default_policy "deny" and this master token. */
  aclMasterToken?: string;
  /** Appended verbatim as one more -hcl argument. */
  extraHcl?: string;
  /** Also serve HTTPS (on httpsUrl) with these PEM files. */
  https?: { certFile: string; keyFile: string; caFile: string };
}

export interface ClusterServer {
  name: string;
  url: string;
  /** Kills the server (no graceful leave, like a crash). */
  stop(): Promise<void>;
  /** Starts it again with the same ports and data dir; resolves once its HTTP API answers. */
  start(): Promise<void>;
}

export interface ConsulCluster {
  servers: ClusterServer[];
  /** HTTP URL of the leader, once all running servers agree on one (waits up to 20 s). */
  leaderUrl(): Promise<string>;
  stop(): Promise<void>;
}

const projectRoot = fileURLToPath(new URL('../..', import.meta.url));
const READY_TIMEOUT_MS = 20_000;
const POLL_MS = 50;
const START_ATTEMPTS = 5;

// ---------------------------------------------------------------------------
// Binary

let binary: string | undefined;

/** Path to the consul binary: $CONSUL_BIN, else the project cache, fetched on first use. */
export function consulBinary(): string {
  if (binary) return binary;
  if (process.env.CONSUL_BIN) return (binary = process.env.CONSUL_BIN);
  const cached = path.join(projectRoot, '.cache/consul/usr/bin/consul');
  if (existsSync(cached)) return (binary = cached);
  const script = path.join(projectRoot, 'scripts/install-consul.sh');
  const r = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const printed = r.stdout?.trim().split('\n').pop();
  if (r.status !== 0 || !printed) {
    throw new Error(`${script} failed (status ${r.status}):\n${r.stderr ?? ''}${r.error?.message ?? ''}`);
  }
  return (binary = printed);
}

// ---------------------------------------------------------------------------
// Processes

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

// A test process that crashes or forgets stop() must not leave consul behind.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

interface AgentProcess {
  child: ChildProcess;
  /** The last lines the agent printed, for error messages. */
  tail(): string;
  exited: Promise<void>;
  hasExited(): boolean;
  kill(): Promise<void>;
}

function spawnAgent(args: string[]): AgentProcess {
  installExitHook();
  const child = spawn(consulBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const lines: string[] = [];
  let partial = '';
  const collect = (chunk: Buffer): void => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let done = false;
  const exited = new Promise<void>((resolve) => {
    // 'close' rather than 'exit': by then the last output lines have been read.
    child.once('close', () => {
      done = true;
      live.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      lines.push(`spawn error: ${err.message}`);
      done = true;
      live.delete(child);
      resolve();
    });
  });
  // A forgotten agent must not keep the test process alive; the exit hook
  // reaps it. kill() re-refs it so we really wait for its exit.
  child.unref();
  for (const s of [child.stdout, child.stderr]) (s as { unref?: () => void } | null)?.unref?.();

  return {
    child,
    tail: () => [...lines, partial].filter((l) => l.trim() !== '').slice(-25).join('\n'),
    exited,
    hasExited: () => done,
    async kill() {
      if (done) return;
      child.ref();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Ports that fetch() refuses ("bad port", WHATWG Fetch's port blocking list);
 * 10080 is the only one at or above 10000. Consul binds it happily, and then
 * every fetch-based poll of it fails until the timeout: a CI run lost two
 * tests to it.
 */
const FETCH_BLOCKED_PORTS = new Set([10080]);

/**
 * n distinct free loopback ports, all held open together so none repeats. They are drawn below the kernel's
 * ephemeral range (net.ipv4.ip_local_port_range, 32768 and up by default): there, no outgoing connection of
 * the plugins under test can take the port of a server that a test stopped and is about to start again.
 * Fetch's blocked ports are skipped.
 */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  const ephemeralStart = ephemeralPortStart();
  try {
    while (servers.length < n) {
      const port = 10_000 + Math.floor(Math.random() * (ephemeralStart - 10_000));
      if (FETCH_BLOCKED_PORTS.has(port)) continue;
      const s = createServer();
      const bound = await new Promise<boolean>((resolve) => {
        s.once('error', () => resolve(false));
        s.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (bound) servers.push(s);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function ephemeralPortStart(): number {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return start !== undefined && start > 11_000 ? start : 32_768;
  } catch {
    return 32_768;
  }
}

class BindError extends Error {}

/** Another process can grab a port between freePorts() and consul binding it. */
const isBindFailure = (output: string): boolean => /address already in use|bind: /i.test(output);

async function getLeader(url: string, token?: string): Promise<string | undefined> {
  try {
    const res = await fetch(`${url}/v1/status/leader`, {
      headers: token ? { 'X-Consul-Token': token } : {},
      signal: AbortSignal.timeout(2000),
    });
    if (!res.ok) return undefined;
    return (await res.json()) as string;
  } catch {
    return undefined; // not listening yet, or just died
  }
}

/**
 * Polls `ready` until it returns true; fails early if the agent exits (as a
 * BindError when it could not bind its ports) or after the timeout, with the
 * agent's last output in the message.
 */
async function waitUntil(proc: AgentProcess, what: string, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (proc.hasExited()) {
      const msg = `consul exited while waiting for ${what}; last output:\n${proc.tail()}`;
      throw isBindFailure(proc.tail()) ? new BindError(msg) : new Error(msg);
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${READY_TIMEOUT_MS / 1000} s waiting for ${what}; consul's last output:\n${proc.tail()}`);
    }
    await sleep(POLL_MS);
  }
}

async function withPortRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof BindError) || i >= START_ATTEMPTS) throw err;
    }
  }
}

// ---------------------------------------------------------------------------
// KV

function kvHelper(url: string, token?: string): KvHelper {
  const headers: Record<string, string> = token ? { 'X-Consul-Token': token } : {};
  // Keep the slashes of the key, escape everything else.
  const kvUrl = (key: string, query = ''): string =>
    `${url}/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}${query}`;
  const call = async (method: string, u: string, body?: string): Promise<Response | undefined> => {
    const res = await fetch(u, { method, headers, body });
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`consul ${method} ${u}: ${res.status} ${await res.text()}`);
    return res;
  };

  const kv: KvHelper = {
    async put(key, value) {
      const body = typeof value === 'string' ? value : JSON.stringify(value);
      const res = await call('PUT', kvUrl(key), body);
      if (!res || (await res.json()) !== true) throw new Error(`consul PUT ${key} was not applied`);
    },
    async get(key) {
      const res = await call('GET', kvUrl(key));
      if (!res) return undefined;
      const [e] = (await res.json()) as Array<{ Value: string | null; ModifyIndex: number; CreateIndex: number }>;
      if (!e) return undefined;
      return {
        value: Buffer.from(e.Value ?? '', 'base64').toString('utf8'), // an empty value comes back as null
        modifyIndex: e.ModifyIndex,
        createIndex: e.CreateIndex,
      };
    },
    async getJson<T>(key: string) {
      const e = await kv.get(key);
      return e === undefined ? undefined : (JSON.parse(e.value) as T);
    },
    async keys(prefix) {
      const res = await call('GET', kvUrl(prefix, '?keys'));
      return res ? ((await res.json()) as string[]) : [];
    },
    async delete(key) {
      await call('DELETE', kvUrl(key));
    },
    async deleteTree(prefix) {
      await call('DELETE', kvUrl(prefix, '?recurse'));
    },
  };
  return kv;
}

// ---------------------------------------------------------------------------
// Single dev agent

/** One in-memory -dev agent (a server that is its own leader). */
export async function startConsul(options: StartConsulOptions = {}): Promise<ConsulAgent> {
  const token = options.aclMasterToken;
  return withPortRetries(async () => {
    const [port, lan, wan, rpc, httpsPort] = (await freePorts(5)) as [number, number, number, number, number];
    const args = [
      'agent', '-dev', '-bind', '127.0.0.1', '-client', '127.0.0.1',
      '-http-port', String(port), '-dns-port', '-1', '-grpc-port', '-1',
      '-serf-lan-port', String(lan), '-serf-wan-port', String(wan), '-server-port', String(rpc),
    ];
    if (token) {
      // The agent token too, or the agent logs "Node info update blocked by ACLs" forever.
      args.push('-hcl', `acl { enabled = true default_policy = "deny" tokens { master = ${JSON.stringify(token)} agent = ${JSON.stringify(token)} } }`);
    }
    if (options.https) {
      const { certFile, keyFile, caFile } = options.https;
      args.push('-hcl', `cert_file = ${JSON.stringify(certFile)}`, '-hcl', `key_file = ${JSON.stringify(keyFile)}`);
      args.push('-hcl', `ca_file = ${JSON.stringify(caFile)}`, '-hcl', `ports { https = ${httpsPort} }`);
    }
    if (options.extraHcl) args.push('-hcl', options.extraHcl);

    const proc = spawnAgent(args);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(proc, `a leader at ${url}`, async () => !!(await getLeader(url, token)));
      if (token) {
        // The leader bootstraps the master token just after winning the
        // election; wait until the token works so the first KV call can't race it.
        await waitUntil(proc, 'the ACL master token', async () => {
          const res = await fetch(`${url}/v1/acl/token/self`, {
            headers: { 'X-Consul-Token': token },
            signal: AbortSignal.timeout(2000),
          }).catch(() => undefined);
          return res?.ok ?? false;
        });
      }
    } catch (err) {
      await proc.kill();
      throw err;
    }
    return {
      url,
      httpsUrl: options.https ? `https://127.0.0.1:${httpsPort}` : undefined,
      port,
      serfLanPort: lan,
      stop: () => proc.kill(),
      kv: kvHelper(url, token),
    };
  });
}

/** The node names in `url`'s catalog. */
export async function catalogNodes(url: string): Promise<string[]> {
  const res = await fetch(`${url}/v1/catalog/nodes`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`consul GET ${url}/v1/catalog/nodes: ${res.status} ${await res.text()}`);
  return ((await res.json()) as Array<{ Node: string }>).map((n) => n.Node);
}

/**
 * A second agent, as on every other host of a cluster: a client agent with its own node name, data dir and
 * ports that -retry-joins `server`. Resolves once the server's catalog lists the node.
 */
export async function startClientAgent(server: ConsulAgent, node: string): Promise<ClientAgent> {
  return withPortRetries(async () => {
    const [http, lan] = (await freePorts(2)) as [number, number];
    const dataDir = mkdtempSync(path.join(tmpdir(), `consul-${node}-`));
    const args = [
      'agent', '-node', node, '-data-dir', dataDir, '-bind', '127.0.0.1', '-client', '127.0.0.1',
      '-http-port', String(http), '-dns-port', '-1', '-grpc-port', '-1', '-serf-lan-port', String(lan),
      '-retry-join', `127.0.0.1:${server.serfLanPort}`, '-retry-interval', '250ms',
    ];
    const proc = spawnAgent(args);
    const url = `http://127.0.0.1:${http}`;
    const stop = async (): Promise<void> => {
      await proc.kill();
      rmSync(dataDir, { recursive: true, force: true });
    };
    try {
      await waitUntil(proc, `${node} in the catalog of ${server.url}`, async () => (await catalogNodes(server.url).catch((): string[] => [])).includes(node));
      await waitUntil(proc, `${node}'s HTTP API with a leader`, async () => !!(await getLeader(url)));
    } catch (err) {
      await stop();
      throw err;
    }
    return {
      node,
      url,
      crash: async () => {
        proc.child.ref(); // unref'd at spawn: keep the event loop alive until it is really gone
        proc.child.kill('SIGKILL');
        await proc.exited;
      },
      stop,
    };
  });
}

/**
 * `consul force-leave -prune NODE` against `server`, as an operator removes a dead host; resolves once the
 * catalog no longer lists the node. (Consul 1.8 takes about 8 s to answer it.)
 */
export async function forceLeave(server: ConsulAgent, node: string): Promise<void> {
  const child = spawn(consulBinary(), ['force-leave', '-prune', `-http-addr=${server.url}`, node], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  if (status !== 0) throw new Error(`consul force-leave -prune ${node} failed (status ${status}): ${output}`);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while ((await catalogNodes(server.url)).includes(node)) {
    if (Date.now() > deadline) throw new Error(`${node} is still in the catalog of ${server.url} after force-leave`);
    await sleep(POLL_MS);
  }
}

// ---------------------------------------------------------------------------
// A server without a leader

/** A real Consul server that never gets a leader: its HTTP API answers, its cluster waits for a peer. */
export interface LeaderlessServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * One real server started with -bootstrap-expect 2 and no peer to join: it waits for the second server forever,
 * so /v1/status/leader answers "" and KV requests fail with 500 "No cluster leader", as during a lost quorum.
 * Resolves once its HTTP API answers.
 */
export async function startLeaderlessConsul(): Promise<LeaderlessServer> {
  return withPortRetries(async () => {
    const [http, lan, wan, rpc] = (await freePorts(4)) as [number, number, number, number];
    const dataDir = mkdtempSync(path.join(tmpdir(), 'consul-leaderless-'));
    const proc = spawnAgent([
      'agent', '-server', '-bootstrap-expect', '2', '-node', 'alone', '-data-dir', dataDir,
      '-bind', '127.0.0.1', '-client', '127.0.0.1',
      '-http-port', String(http), '-dns-port', '-1', '-grpc-port', '-1',
      '-serf-lan-port', String(lan), '-serf-wan-port', String(wan), '-server-port', String(rpc),
    ]);
    const url = `http://127.0.0.1:${http}`;
    const stop = async (): Promise<void> => {
      await proc.kill();
      rmSync(dataDir, { recursive: true, force: true });
    };
    try {
      await waitUntil(proc, `the HTTP API at ${url}`, async () => (await getLeader(url)) === '');
    } catch (err) {
      await stop();
      throw err;
    }
    return { url, stop };
  });
}

// ---------------------------------------------------------------------------
// Cluster

interface ServerSpec {
  name: string;
  http: number;
  lan: number;
  wan: number;
  rpc: number;
  dataDir: string;
}

/**
 * n real servers (not -dev) on loopback, with data dirs so a stopped server can
 * come back as the same node. Resolves once every server reports the same leader.
 */
export async function startConsulCluster(n = 3): Promise<ConsulCluster> {
  return withPortRetries(async () => {
    const ports = await freePorts(4 * n);
    const specs: ServerSpec[] = Array.from({ length: n }, (_, k) => ({
      name: `n${k + 1}`,
      http: ports[4 * k]!,
      lan: ports[4 * k + 1]!,
      wan: ports[4 * k + 2]!,
      rpc: ports[4 * k + 3]!,
      dataDir: mkdtempSync(path.join(tmpdir(), `consul-n${k + 1}-`)),
    }));
    const procs = new Map<string, AgentProcess>();

    const argsFor = (s: ServerSpec): string[] => {
      const args = [
        'agent', '-server', '-bootstrap-expect', String(n), '-node', s.name, '-data-dir', s.dataDir,
        '-bind', '127.0.0.1', '-client', '127.0.0.1',
        '-http-port', String(s.http), '-dns-port', '-1', '-grpc-port', '-1',
        '-serf-lan-port', String(s.lan), '-serf-wan-port', String(s.wan), '-server-port', String(s.rpc),
        // The default retry interval is 30 s: far too slow when the peer starts a moment later.
        '-retry-interval', '250ms',
        // Production raft timing is 5x slower (multiplier 5); tests want fast elections.
        '-hcl', 'performance { raft_multiplier = 1 }',
      ];
      // Every server knows every other one, so any of them can be restarted and rejoin.
      for (const o of specs) if (o !== s) args.push('-retry-join', `127.0.0.1:${o.lan}`);
      return args;
    };
    const urlOf = (s: ServerSpec): string => `http://127.0.0.1:${s.http}`;

    const startServer = async (s: ServerSpec): Promise<void> => {
      if (procs.get(s.name) && !procs.get(s.name)!.hasExited()) return;
      const proc = spawnAgent(argsFor(s));
      procs.set(s.name, proc);
      await waitUntil(proc, `${s.name}'s HTTP API`, async () => (await getLeader(urlOf(s))) !== undefined);
    };
    const stopServer = async (s: ServerSpec): Promise<void> => {
      await procs.get(s.name)?.kill();
    };
    const stopAll = async (): Promise<void> => {
      await Promise.all(specs.map(stopServer));
      for (const s of specs) rmSync(s.dataDir, { recursive: true, force: true });
    };

    const leaderUrl = async (): Promise<string> => {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      let seen: Array<string | undefined> = [];
      for (;;) {
        const running = specs.filter((s) => procs.get(s.name) && !procs.get(s.name)!.hasExited());
        seen = await Promise.all(running.map((s) => getLeader(urlOf(s))));
        const leader = seen[0];
        if (running.length > 0 && leader && seen.every((l) => l === leader)) {
          const s = specs.find((x) => leader === `127.0.0.1:${x.rpc}`);
          if (s) return urlOf(s);
        }
        if (Date.now() > deadline) {
          const tails = running.map((s) => `--- ${s.name}:\n${procs.get(s.name)!.tail()}`).join('\n');
          throw new Error(`no agreed leader after ${READY_TIMEOUT_MS / 1000} s (saw ${JSON.stringify(seen)})\n${tails}`);
        }
        await sleep(POLL_MS);
      }
    };

    try {
      await Promise.all(specs.map(startServer));
      await leaderUrl();
    } catch (err) {
      await stopAll();
      throw err;
    }
    return {
      servers: specs.map((s) => ({
        name: s.name,
        url: urlOf(s),
        stop: () => stopServer(s),
        start: () => startServer(s),
      })),
      leaderUrl,
      stop: stopAll,
    };
  });
}

// ---------------------------------------------------------------------------
// One agent per test file

/** The agent of useConsul(): a ConsulAgent, and a way for the file's own before() hooks to wait for it. */
export interface FileConsul extends ConsulAgent {
  /**
   * Resolves once the agent runs. A file's own top-level before() hook that uses the agent awaits this first:
   * Node 20 runs a file's top-level before() hooks side by side, not one after the other (inside a describe()
   * they run in turn), so that hook may start while useConsul's is still starting the agent.
   */
  ready(): Promise<void>;
}

/**
 * The one Consul agent of a test file: registers a before() hook that starts it with `options` and an after()
 * hook that stops it, so a file's setup is the one line `const agent = useConsul();` at its top level. Each
 * field is read from the started agent when used; reading one before the agent runs (at module load, or after
 * a failed start) throws. After hooks run in turn, in the order they were registered: the agent is stopped
 * before the file's own after() hooks run, so those must not use it.
 */
export function useConsul(options: StartConsulOptions = {}): FileConsul {
  let starting: Promise<ConsulAgent> | undefined;
  let started: ConsulAgent | undefined;
  // Whichever asks first (this hook, or the file's own through ready()) starts it; both wait for the same start.
  const start = async (): Promise<ConsulAgent> => (started = await (starting ??= startConsul(options)));
  before(async () => {
    await start();
  });
  after(async () => started?.stop());
  const agent = (): ConsulAgent => {
    if (started) return started;
    throw new Error('useConsul(): the agent is started by a before() hook (await ready() in another before()); it is not there at module load, nor when its start failed');
  };
  return {
    get url() { return agent().url; },
    get httpsUrl() { return agent().httpsUrl; },
    get port() { return agent().port; },
    get serfLanPort() { return agent().serfLanPort; },
    get kv() { return agent().kv; },
    stop: () => agent().stop(),
    ready: async () => {
      await start();
    },
  };
}
