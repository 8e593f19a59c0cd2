// Helpers for the reliability tests (issue 4): the plugin run in-process with a fake PluginIo, whole-KV
// snapshots, ACL tokens, a CA and certificates made with openssl, and the figures each test reports for
// docs/reliability.md.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import path from 'node:path';
import { runPlugin as runPluginInProcess } from '../../src/cni/plugin';
import { runCommandMachine } from '../../src/machines/run-command';
import { describeRun, type PluginRun } from './plugin';

const projectRoot = path.resolve(__dirname, '../..');

// ---------------------------------------------------------------------------
// The plugin in-process: the same code path as the executable minus process start-up

export interface InProcessOptions {
  /** The CNI_* variables exactly as given (nothing is added): undefined values are left out. */
  env: Record<string, string | undefined>;
  stdin: string;
}

/**
 * Runs `runPlugin` of src/cni/plugin.ts with a fake PluginIo. Stderr is what the plugin's logger wrote to
 * process.stderr meanwhile (captured, not shown), so calls must not overlap.
 */
export async function runInProcess(options: InProcessOptions): Promise<PluginRun> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(options.env)) if (value !== undefined) env[key] = value;
  let stdout = '';
  let stderr = '';
  const realWrite = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  }) as typeof process.stderr.write;
  const started = Date.now();
  let code: number;
  try {
    code = await runPluginInProcess(
      { name: 'ipam-da-consul', version: '0.0.0-test' },
      { env, readStdin: async () => options.stdin, writeStdout: (text) => void (stdout += text) },
      runCommandMachine,
    );
  } finally {
    process.stderr.write = realWrite;
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json, elapsedMs: Date.now() - started };
}

// ---------------------------------------------------------------------------
// Checks every run must pass

/** A line of a JavaScript stack trace, anywhere in the text. */
export const stackTrace = /\n\s+at /;

/**
 * Asserts the run ended as the CNI spec says a failure ends: exactly one line on stdout, a JSON error object
 * with a numeric code and a message, a non-zero exit code, and no stack trace anywhere. Returns the error.
 */
export function assertCleanError(run: PluginRun, context = ''): { code: number; msg: string; details?: string; cniVersion: string } {
  const where = `${context}\n${describeRun(run)}`;
  assert.notEqual(run.code, 0, `expected a non-zero exit${where}`);
  assert.equal(run.stdout.endsWith('\n') ? run.stdout.slice(0, -1).includes('\n') : run.stdout.includes('\n'), false, `expected one line on stdout${where}`);
  assert.ok(run.json !== null && typeof run.json === 'object' && !Array.isArray(run.json), `stdout is not one JSON object${where}`);
  const error = run.json as Record<string, unknown>;
  assert.deepEqual(Object.keys(error).filter((k) => !['cniVersion', 'code', 'msg', 'details'].includes(k)), [], `unexpected keys in the error${where}`);
  assert.ok(Number.isInteger(error.code) && (error.code as number) > 0, `code must be a positive integer${where}`);
  assert.ok(typeof error.msg === 'string' && error.msg !== '', `msg must be a non-empty string${where}`);
  assert.equal(typeof error.cniVersion, 'string', `cniVersion must be a string${where}`);
  if ('details' in error) assert.equal(typeof error.details, 'string', `details must be a string${where}`);
  assert.doesNotMatch(run.stdout, stackTrace, `stack trace on stdout${where}`);
  assert.doesNotMatch(run.stderr, stackTrace, `stack trace on stderr${where}`);
  return error as { code: number; msg: string; details?: string; cniVersion: string };
}

// ---------------------------------------------------------------------------
// Whole-KV snapshots

/** Every key of the KV store with its ModifyIndex and value, and the store's index (moves on any write or delete). */
export interface KvState {
  index: number;
  entries: Map<string, { modifyIndex: number; value: string }>;
}

/** One `GET /v1/kv/?recurse`: the whole store. */
export async function kvState(url: string, token?: string): Promise<KvState> {
  const get = () => fetch(`${url}/v1/kv/?recurse`, { headers: token ? { 'X-Consul-Token': token } : {} });
  // A kept-alive connection that Consul closed just then fails once; a read can safely be sent again.
  const res = await get().catch(get);
  const index = Number(res.headers.get('x-consul-index') ?? '0');
  const entries = new Map<string, { modifyIndex: number; value: string }>();
  if (res.status === 404) return { index, entries };
  if (!res.ok) throw new Error(`consul GET /v1/kv/?recurse: ${res.status} ${await res.text()}`);
  for (const e of (await res.json()) as Array<{ Key: string; Value: string | null; ModifyIndex: number }>) {
    entries.set(e.Key, { modifyIndex: e.ModifyIndex, value: Buffer.from(e.Value ?? '', 'base64').toString('utf8') });
  }
  return { index, entries };
}

/** What changed between two snapshots: keys added, removed and rewritten. */
export function kvDiff(before: KvState, after: KvState): { added: string[]; removed: string[]; changed: string[] } {
  const added = [...after.entries.keys()].filter((k) => !before.entries.has(k));
  const removed = [...before.entries.keys()].filter((k) => !after.entries.has(k));
  const changed = [...after.entries.keys()].filter((k) => before.entries.has(k) && before.entries.get(k)!.modifyIndex !== after.entries.get(k)!.modifyIndex);
  return { added, removed, changed };
}

/** Asserts nothing at all was written to or deleted from KV (the store index did not move either). */
export function assertNoKvWrite(before: KvState, after: KvState, context: string): void {
  const diff = kvDiff(before, after);
  assert.deepEqual(diff, { added: [], removed: [], changed: [] }, `KV changed\n${context}`);
  assert.equal(after.index, before.index, `the KV index moved (a write or delete happened)\n${context}`);
}

// ---------------------------------------------------------------------------
// ACL tokens (Consul 1.8 ACL API)

/** Creates a policy with these rules and a token holding it; returns the token's SecretID. */
export async function createToken(url: string, masterToken: string, name: string, rules: string): Promise<string> {
  const headers = { 'X-Consul-Token': masterToken };
  const policy = await fetch(`${url}/v1/acl/policy`, { method: 'PUT', headers, body: JSON.stringify({ Name: name, Rules: rules }) });
  if (!policy.ok) throw new Error(`creating policy ${name}: ${policy.status} ${await policy.text()}`);
  const { ID } = (await policy.json()) as { ID: string };
  const token = await fetch(`${url}/v1/acl/token`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({ Description: name, Policies: [{ ID }] }),
  });
  if (!token.ok) throw new Error(`creating token ${name}: ${token.status} ${await token.text()}`);
  return ((await token.json()) as { SecretID: string }).SecretID;
}

// ---------------------------------------------------------------------------
// TLS material made with openssl

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A client certificate signed by the same CA, for Consul's verify_incoming_https. */
  clientCertFile: string;
  clientKeyFile: string;
  /** Another CA that signed nothing Consul serves: a server cert never verifies against it. */
  otherCaFile: string;
}

/** Makes a CA, a server certificate for 127.0.0.1 (IP SAN) and a client certificate in `dir`. */
export function makeTlsFiles(dir: string): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const makeCa = (name: string) => {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`), '-days', '2', '-subj', `/CN=${name}`);
  };
  const signed = (name: string, cn: string, ext: string) => {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`);
    writeFileSync(f(`${name}.ext`), ext);
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  makeCa('ca');
  makeCa('other-ca');
  signed('server', 'server.dc1.consul', 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:server.dc1.consul\nextendedKeyUsage=serverAuth,clientAuth\n');
  signed('client', 'ipam-da-consul', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: f('ca.pem'),
    certFile: f('server.pem'),
    keyFile: f('server.key'),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
    otherCaFile: f('other-ca.pem'),
  };
}

// ---------------------------------------------------------------------------
// A Consul that misbehaves on demand

/**
 * What the proxy does with one request: pass it to Consul, answer 500 "No cluster leader", never answer, or
 * answer 429 as Consul 1.9+ does past limits.http_max_conns_per_client (1.8 closes the connection instead).
 */
export type ProxyAction = 'forward' | 'fail' | 'hang' | 'throttle';

/** Consul's answer to a forwarded request, which a test may rewrite before the plugin sees it. */
export interface ProxyAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface ConsulProxy {
  url: string;
  /** Every request seen, with what was done to it. */
  seen: Array<{ method: string; path: string; action: ProxyAction }>;
  close(): Promise<void>;
}

/**
 * An HTTP server in front of a real Consul that forwards, fails or holds each request as `decide` says
 * (`n` counts the requests seen so far, from 0), passing a forwarded answer through `rewrite` when given.
 * Held requests are ended when the proxy closes.
 */
export async function startConsulProxy(
  target: string,
  decide: (req: { method: string; path: string }, n: number) => ProxyAction,
  rewrite: (req: { method: string; path: string }, answer: ProxyAnswer) => ProxyAnswer = (_, answer) => answer,
): Promise<ConsulProxy> {
  const seen: ConsulProxy['seen'] = [];
  const held = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? 'GET', path: req.url ?? '/' };
      const action = decide(request, seen.length);
      seen.push({ ...request, action });
      if (action === 'hang') {
        held.add(res);
        res.on('close', () => held.delete(res));
        return;
      }
      if (action === 'fail') {
        res.statusCode = 500;
        res.end('No cluster leader');
        return;
      }
      if (action === 'throttle') {
        // go-connlimit's answer, as Consul 1.9+ sends it: no Consul header, and the connection closed.
        res.writeHead(429, { 'Content-Type': 'text/plain', Connection: 'close' });
        res.end('Your IP is issuing too many concurrent connections, please rate limit your calls\n');
        return;
      }
      const headers: Record<string, string> = {};
      const token = req.headers['x-consul-token'];
      if (typeof token === 'string') headers['X-Consul-Token'] = token;
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      fetch(`${target}${request.path}`, { method: request.method, headers, ...(body && request.method !== 'GET' ? { body } : {}) })
        .then(async (answer) => {
          const headers: Record<string, string> = {};
          answer.headers.forEach((value, name) => {
            if (name === 'content-type' || name.startsWith('x-consul-')) headers[name] = value;
          });
          const rewritten = rewrite(request, { status: answer.status, headers, body: Buffer.from(await answer.arrayBuffer()) });
          res.writeHead(rewritten.status, rewritten.headers);
          res.end(rewritten.body);
        })
        .catch((error: Error) => {
          res.statusCode = 502;
          res.end(`proxy: ${error.message}`);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        for (const res of held) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Whether a request is a KV read or write (or a KV transaction), as opposed to the leader probe. */
export const isKvRequest = (req: { path: string }): boolean => req.path.startsWith('/v1/kv/') || req.path.startsWith('/v1/txn');

// ---------------------------------------------------------------------------
// Figures for docs/reliability.md

/**
 * Prints the figures of one test (a diagnostic line in the runner's output) and keeps them in
 * .cache/reliability/<file>.json, so docs/reliability.md can quote the last run.
 */
export function reportFigures(file: string, test: string, figures: Record<string, unknown>, t?: TestContext): void {
  const dir = path.join(projectRoot, '.cache/reliability');
  mkdirSync(dir, { recursive: true });
  const target = path.join(dir, `${file}.json`);
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(target, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[test] = { ...figures, at: new Date().toISOString() };
  writeFileSync(target, `${JSON.stringify(all, null, 2)}\n`);
  const line = `figures ${file} / ${test}: ${JSON.stringify(figures)}`;
  if (t) t.diagnostic(line);
  else console.log(line);
}
