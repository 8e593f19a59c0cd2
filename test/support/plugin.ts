// Runs the built executable the way a container runtime does (CNI_* in the environment, the network
// config on stdin; stdout, stderr and the exit code read back), builds the config the delegation chain
// hands this delegate, and checks CNI errors. Used by every file in test/integration/.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { KvHelper } from './consul';

const projectRoot = path.resolve(__dirname, '../..');

/**
 * IPAM_TEST_BINARY_DIR: a folder of links to the single executable (dist-bin/linux-<arch>/ as
 * scripts/build-sea.mjs makes it), to run a suite against it instead of dist/ (test/integration/single-binary.test.ts).
 * The executables then run by themselves, with a PATH in which there is no node.
 */
export const binaryDir: string | undefined = process.env.IPAM_TEST_BINARY_DIR || undefined;

/** The built executable of a program: dist/<name> (dist/verbose/<name>), or the binary's link of that name. */
export function builtExecutable(name: string, flavour: 'standard' | 'verbose' = 'standard'): string {
  if (binaryDir) return path.join(binaryDir, flavour === 'verbose' ? `${name}-verbose` : name);
  return path.join(projectRoot, flavour === 'verbose' ? `dist/verbose/${name}` : `dist/${name}`);
}

/** How a built executable is started: the script by this test's node (as a `node` on PATH would), the binary by itself. */
export function commandLine(file: string): [string, string[]] {
  return binaryDir ? [file, []] : [process.execPath, [file]];
}

/**
 * PATH for the executables under test: this process's, or, with IPAM_TEST_BINARY_DIR, a folder of links to
 * every command on it except node, so that what the binary or a delegate runs still runs and node cannot.
 */
export const childPath: string = binaryDir ? pathWithoutNode() : (process.env.PATH ?? '/usr/bin:/bin');

/** A PATH of one folder linking every command of this process's PATH except node (made once per call, removed at exit). */
export function pathWithoutNode(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'path-without-node-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  for (const entry of (process.env.PATH ?? '/usr/bin:/bin').split(':').reverse()) {
    let names: string[] = [];
    try {
      names = readdirSync(entry);
    } catch {
      continue; // a PATH entry that does not exist
    }
    for (const name of names) {
      if (name === 'node' || name === 'nodejs') continue;
      rmSync(path.join(dir, name), { force: true }); // earlier PATH entries win, as in a lookup
      symlinkSync(path.join(entry, name), path.join(dir, name));
    }
  }
  return dir;
}

/** The ipam-da-consul executables of both flavours. */
export const executables = {
  standard: builtExecutable('ipam-da-consul'),
  verbose: builtExecutable('ipam-da-consul', 'verbose'),
} as const;

/** The version the executables report: package.json's. */
export const packageVersion: string = (require(path.join(projectRoot, 'package.json')) as { version: string }).version;

for (const file of Object.values(executables)) {
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` before the integration tests`);
}

// ---------------------------------------------------------------------------
// Temporary folders

const temporary: string[] = [];
process.on('exit', () => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** A fresh folder, removed when the test process exits. */
export function tempDir(prefix = 'ipam-da-consul-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

let poolCounter = 0;

/** A pool name no other test uses (pools live side by side in one agent). */
export function freshPoolName(label = 'pool'): string {
  poolCounter += 1;
  return `${label}-${process.pid}-${poolCounter}`;
}

// ---------------------------------------------------------------------------
// Running the plugin

export interface RunOptions {
  /** CNI_COMMAND; undefined leaves it unset (the "about" run). */
  command?: string;
  /** CNI_CONTAINERID; default "container-1". */
  containerId?: string;
  /** CNI_IFNAME; default "eth0". */
  ifname?: string;
  /** The network config: an object is sent as JSON, a string as it is; undefined sends nothing. */
  config?: object | string;
  /** More variables; a value of undefined removes a variable the runner would set (CNI_CONTAINERID, ...). */
  env?: Record<string, string | undefined>;
  flavour?: 'standard' | 'verbose';
  /** Kill the plugin after this long (it then "exits" with code -1). Default 15 s. */
  timeoutMs?: number;
  /** Called with each piece of stderr as the plugin writes it, to act while it runs. */
  onStderr?: (text: string) => void;
}

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when it is not JSON. */
  json: any;
  elapsedMs: number;
}

/** Spawns the executable (commandLine), a clean environment and the config on stdin; resolves when it exits. */
export function runPlugin(options: RunOptions): Promise<PluginRun> {
  const env: Record<string, string> = { PATH: childPath };
  const cni: Record<string, string | undefined> = {
    CNI_COMMAND: options.command,
    CNI_CONTAINERID: options.containerId ?? 'container-1',
    CNI_IFNAME: options.ifname ?? 'eth0',
    CNI_NETNS: '/var/run/netns/test',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: '',
    ...options.env,
  };
  if (options.command === undefined && !(options.env && 'CNI_COMMAND' in options.env)) {
    // The "about" run: a runtime fingerprinting its bin dir sets nothing at all.
    for (const key of Object.keys(cni)) if (key.startsWith('CNI_')) delete cni[key];
  }
  for (const [key, value] of Object.entries(cni)) if (value !== undefined) env[key] = value;

  const stdin = options.config === undefined ? '' : typeof options.config === 'string' ? options.config : JSON.stringify(options.config);
  const executable = executables[options.flavour ?? 'standard'];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const [command, args] = commandLine(executable);
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk);
      options.onStderr?.(chunk.toString('utf8'));
    });
    child.stdin.on('error', () => undefined); // a plugin that exits without reading stdin closes the pipe
    child.stdin.end(stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 15_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, stderr: Buffer.concat(err).toString('utf8'), json, elapsedMs: Date.now() - started });
    });
  });
}

// ---------------------------------------------------------------------------
// Running any CNI executable

/** A fresh CNI_PATH folder holding the three built CNI executables (links to builtExecutable), as a runtime's bin dir would. */
export function cniBinDir(): string {
  const dir = tempDir('ipam-da-consul-cni-bin-');
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) {
    const file = builtExecutable(name);
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` before the integration tests`);
    symlinkSync(file, path.join(dir, name));
  }
  return dir;
}

/** One run of a CNI executable. */
export interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any;
  ms: number;
}

/** Runs any CNI executable (ours, or Debian's bridge) as a runtime does: CNI_* in a clean environment, the config on stdin. */
export function runCni(file: string, options: { command?: string; config?: object | string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CniRun> {
  const env: Record<string, string> = { PATH: childPath, ...options.env };
  if (options.command) env.CNI_COMMAND = options.command;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      let json: any;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.config === undefined ? '' : typeof options.config === 'string' ? options.config : JSON.stringify(options.config));
  });
}

/** Shows a run in an assertion message. */
export function describeRun(run: PluginRun): string {
  return `exit ${run.code} after ${run.elapsedMs} ms\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
}

// ---------------------------------------------------------------------------
// Network configs

export interface NetConfigOptions {
  servers: string[];
  pool: string;
  requestedIp?: string;
  /** The snake_case spelling the original's code and its Nomad selector use. */
  requestedIpSnake?: string;
  cniVersion?: string;
  /** prevResult.ips: on DEL and CHECK, the runtime's cached ADD result. */
  ips?: Array<{ address: string; gateway?: string; version?: string }>;
  /** Merged into `ipam` (timeouts, cas_retries, or keys of other delegates). */
  ipam?: Record<string, unknown>;
  /** ipam.data_dir; default a fresh temporary folder per call. Pass one folder to share a host's memory between calls. */
  dataDir?: string;
}

/**
 * The config as ipam-delegated passes it to this delegate after a pool selector ran: the runtime's config,
 * with prevResult set to the selector's output (ips from the runtime's cache, or none; pools).
 */
export function netConfig(options: NetConfigOptions) {
  const cniVersion = options.cniVersion ?? '1.0.0';
  const pool: Record<string, string> = { name: options.pool };
  if (options.requestedIp !== undefined) pool['requested-ip'] = options.requestedIp;
  if (options.requestedIpSnake !== undefined) pool.requested_ip = options.requestedIpSnake;
  return {
    cniVersion,
    name: 'test-net',
    ipam: {
      type: 'ipam-delegated',
      delegates: ['ipam-ds-nomad', 'ipam-da-consul'],
      consul_servers: options.servers,
      data_dir: options.dataDir ?? tempDir('ipam-da-consul-data-'),
      ...options.ipam,
    },
    prevResult: {
      cniVersion,
      ips: options.ips ?? [],
      routes: [],
      dns: {},
      pools: [pool],
    },
  };
}

/** A pool and a host folder for one test, with a config maker bound to them. */
export interface Scenario {
  pool: string;
  dataDir: string;
  config(more?: Partial<NetConfigOptions>): ReturnType<typeof netConfig>;
}

/** Makes a fresh pool name and host data folder; `config()` builds configs for them. */
export function scenario(servers: string[], label?: string): Scenario {
  const pool = freshPoolName(label);
  const dataDir = tempDir('ipam-da-consul-data-');
  return { pool, dataDir, config: (more = {}) => netConfig({ servers, pool, dataDir, ...more }) };
}

// ---------------------------------------------------------------------------
// Assertions

/** What a CNI error on stdout looks like. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

const stackLine = /^\s+at /m;

/** Asserts the run failed as the CNI spec says, with this code; returns the error object. */
export function assertCniError(run: PluginRun, code: number, cniVersion?: string): CniErrorJson {
  const context = describeRun(run);
  assert.notEqual(run.code, 0, `expected a non-zero exit\n${context}`);
  const lines = run.stdout.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, 1, `expected exactly one line of JSON on stdout\n${context}`);
  assert.ok(run.json !== undefined && typeof run.json === 'object' && run.json !== null, `stdout is not a JSON object\n${context}`);
  const error = run.json as Record<string, unknown>;
  assert.deepEqual(
    Object.keys(error).filter((key) => !['cniVersion', 'code', 'msg', 'details'].includes(key)),
    [],
    `unexpected keys in the error\n${context}`,
  );
  assert.equal(error.code, code, `expected CNI error code ${code}\n${context}`);
  assert.equal(typeof error.msg, 'string', `msg must be a string\n${context}`);
  assert.notEqual(error.msg, '', `msg must not be empty\n${context}`);
  if ('details' in error) assert.equal(typeof error.details, 'string', `details must be a string\n${context}`);
  if (cniVersion === undefined) assert.match(String(error.cniVersion), /^\d+\.\d+\.\d+$/, `cniVersion must be a version\n${context}`);
  else assert.equal(error.cniVersion, cniVersion, `the error's cniVersion must be the config's\n${context}`);
  assert.doesNotMatch(run.stdout, stackLine, `stack trace on stdout\n${context}`);
  assert.doesNotMatch(run.stderr, stackLine, `stack trace on stderr\n${context}`);
  return error as unknown as CniErrorJson;
}

/** Asserts a successful run printed exactly one JSON object; returns it. */
export function assertSuccess(run: PluginRun): any {
  const context = describeRun(run);
  assert.equal(run.code, 0, `expected exit 0\n${context}`);
  assert.equal(run.stdout.split('\n').filter((line) => line.trim() !== '').length, 1, `expected one line on stdout\n${context}`);
  assert.ok(run.json !== undefined && typeof run.json === 'object' && run.json !== null, `stdout is not a JSON object\n${context}`);
  assert.doesNotMatch(run.stderr, stackLine, `stack trace on stderr\n${context}`);
  return run.json;
}

/** Every key under a prefix with its ModifyIndex and value, in one `?recurse` read, for before/after comparisons. */
export async function snapshotKv(agent: { url: string }, prefix = 'ipam/'): Promise<Record<string, string>> {
  const res = await fetch(`${agent.url}/v1/kv/${prefix}?recurse`);
  if (res.status === 404) return {};
  if (res.status !== 200) assert.fail(`snapshot of "${prefix}": ${res.status} ${await res.text()}`);
  const entries = (await res.json()) as Array<{ Key: string; Value: string | null; ModifyIndex: number }>;
  const snapshot: Record<string, string> = {};
  for (const e of entries) snapshot[e.Key] = `${e.ModifyIndex}:${e.Value === null ? 'null' : Buffer.from(e.Value, 'base64').toString('utf8')}`;
  return snapshot;
}

/**
 * Runs `action`, asserts it fails with this code (and the config's cniVersion, when given), and that nothing
 * under `prefix` (default `ipam/`; "" is the whole KV store) changed: no key added, removed or rewritten.
 */
export async function expectCniErrorWithoutWrites(
  agent: { url: string },
  code: number,
  cniVersion: string | undefined,
  action: () => Promise<PluginRun>,
  prefix = 'ipam/',
): Promise<CniErrorJson> {
  const before = await snapshotKv(agent, prefix);
  const run = await action();
  const error = assertCniError(run, code, cniVersion);
  assert.deepEqual(await snapshotKv(agent, prefix), before, `KV under "${prefix}" changed\n${describeRun(run)}`);
  return error;
}

// ---------------------------------------------------------------------------
// Servers that are not Consul

/** A local HTTP server that counts requests and answers 500: put it first in consul_servers to prove no request was sent. */
export interface Tripwire {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

export async function startTripwire(): Promise<Tripwire> {
  const requests: string[] = [];
  const server: HttpServer = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.statusCode = 500;
    res.end('tripwire');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A TCP port that accepts connections and never answers: a hung Consul. */
export async function startHungServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on which nothing listens: connections are refused at once. */
export async function closedPortUrl(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/**
 * A port whose TCP handshakes never complete: a child process listens with a backlog of 1 and never
 * accepts (its event loop is parked), and two connections fill the queue, so further SYNs are dropped
 * as with a dead host. Only a connect timeout ends a request to it.
 */
export async function startBlackhole(): Promise<{ url: string; close(): Promise<void> }> {
  const script = `
    const s = require('net').createServer();
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(s.address().port + '\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('error', reject);
  });
  const fillers: Socket[] = [];
  for (let i = 0; i < 2; i++) {
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      fillers.push(socket);
      socket.on('error', () => undefined);
      socket.once('connect', () => resolve());
      setTimeout(resolve, 500); // the queue may be full already
    });
  }
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------
// KV fixtures

/** An IP Range as the pool key holds it (the host-local format). */
export interface IpRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** Writes the pool key ipam/<name> as an operator would. */
export async function putPool(kv: KvHelper, name: string, ranges: IpRange[] | string): Promise<void> {
  await kv.put(`ipam/${name}`, typeof ranges === 'string' ? ranges : JSON.stringify(ranges));
}

/** The allocation keys of a pool (the folder key ipam/<name>/ left out), sorted. */
export async function allocationKeys(kv: KvHelper, pool: string): Promise<string[]> {
  return (await kv.keys(`ipam/${pool}/`)).filter((key) => key !== `ipam/${pool}/`).sort();
}

/** The address part of a result's "ip/prefix". */
export const addressOf = (cidr: string): string => cidr.split('/')[0]!;
