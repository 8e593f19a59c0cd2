/**
 * A small Consul KV client over got. One instance talks to one server; pickServer chooses which.
 * https://developer.hashicorp.com/consul/api-docs/kv and /api-docs/txn
 *
 * Every request has a connect and a total timeout, so a dead or hung server cannot stall a container start.
 * Transient answers (no leader during an election, 5xx, 429, a reset connection) are retried on the same
 * server within a small budget; an answer that is not Consul's moves to the next server; everything else fails
 * at once with the CNI error code that fits it.
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type { NetConnectOpts } from 'node:net';
import type { CreateConnectionFunction, Got, OptionsInit } from 'got';
import { CniError, ErrorCode } from '../cni/errors';
import type { ConsulOptions } from '../cni/config';
import type { Log } from './logger';

export type { ConsulOptions };

/** One KV entry, its value decoded from base64. */
export interface KvEntry {
  readonly key: string;
  readonly value: string | null;
  readonly createIndex: number;
  readonly modifyIndex: number;
  /** Set when the answer is the stale read that picked the server (see `get`'s `probe`). */
  readonly stale?: boolean;
}

/** A /v1/txn operation on KV. */
export type TxnOp =
  | { readonly verb: 'get' | 'get-tree' | 'check-not-exists' | 'delete'; readonly key: string }
  | { readonly verb: 'cas' | 'delete-cas' | 'check-index'; readonly key: string; readonly index: number; readonly value?: string }
  | { readonly verb: 'set'; readonly key: string; readonly value: string };

/** What a transaction returned: the entries read, or (rolled back) one error per failed operation. */
export type TxnOutcome =
  | { readonly applied: true; readonly entries: readonly KvEntry[] }
  | { readonly applied: false; readonly errors: ReadonlyArray<{ readonly opIndex: number; readonly what: string }> };

/** The operations the commands need from Consul. */
export interface ConsulKv {
  /** The server URL this client talks to. */
  readonly server: string;
  /** HTTP requests sent so far (retries included), for logs and the benchmark. */
  readonly requests: number;
  /** GET /v1/status/leader: the leader's address, "" when there is none. Not retried: used to pick a server. */
  leader(): Promise<string>;
  /**
   * GET one key. `retry: false` fails at once on a transient answer (to move on to the next server).
   * `probe: true` is the read that picks this server: a stale read, answered at once by any server from its own
   * state, that fails as "no cluster leader" when Consul's X-Consul-KnownLeader header says there is none (a
   * default read would instead be held for seconds while there is no leader); an answer with a value is kept
   * for the next get of the same key, so the command's own first read is not sent twice; `fresh: true` skips it.
   */
  get(key: string, options?: { retry?: boolean; probe?: boolean; fresh?: boolean }): Promise<KvEntry | undefined>;
  /** Every entry under a textual prefix (`?recurse`), [] when there is none. */
  list(prefix: string): Promise<KvEntry[]>;
  /** Key names only under a textual prefix (`?keys`): far cheaper than values. */
  keys(prefix: string): Promise<string[]>;
  /** PUT; with `cas`, only if the key's ModifyIndex is `cas` (0: only if absent). True when written. */
  put(key: string, value: string, cas?: number): Promise<boolean>;
  /** DELETE with `?cas`: true when deleted (or already gone), false when the key changed since `cas`. `retry` as for txn. */
  deleteCas(key: string, cas: number, options?: { retry?: boolean }): Promise<boolean>;
  /** PUT /v1/txn. `retry: false` fails at once on a transient answer or a server gone (the caller has another way). */
  txn(ops: readonly TxnOp[], options?: { retry?: boolean }): Promise<TxnOutcome>;
  /**
   * GET /v1/catalog/nodes: the names of the cluster's nodes (consul-ipam check matches allocation hosts with
   * them). Under ACLs the list silently leaves out nodes the token may not read.
   */
  nodes(): Promise<string[]>;
}

/**
 * How far behind the leader a stale answer may be: Consul's X-Consul-LastContact, in ms, on a stale read
 * answered by a follower. Raft heartbeats every 0.5-1 s with Consul's production timing (raft_multiplier 5),
 * so a healthy follower stays under it; one lagging more may hold a pool definition an operator just changed.
 */
export const maxStalenessMs = 1000;

/**
 * Consul 1.8 sets these on every answer to a KV or catalog read, 200 and 404 alike (the catalog adds
 * X-Consul-Effective-Consistency; its writes, transactions that write, /v1/status/leader and its errors carry
 * none). Another HTTP service on the port never sends them.
 */
const readHeaders = ['x-consul-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency'] as const;

/** Delay before retry `attempt` (1-based) of a transient failure; 0 means give up. About 3 s in all, jittered. */
export function transientRetryDelay(attempt: number, random: () => number = Math.random): number {
  const budget = [100, 200, 400, 800, 1500];
  const base = budget[attempt - 1];
  return base === undefined ? 0 : Math.round(base * (0.5 + random()));
}

interface RawEntry {
  Key: string;
  Value: string | null;
  CreateIndex: number;
  ModifyIndex: number;
}

const toEntry = (raw: RawEntry): KvEntry => ({
  key: raw.Key,
  value: raw.Value === null ? null : Buffer.from(raw.Value, 'base64').toString('utf8'),
  createIndex: raw.CreateIndex,
  modifyIndex: raw.ModifyIndex,
});

/** A key path for the URL: each segment encoded, the separators kept. */
const keyPath = (key: string): string => `v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`;

/**
 * Reads the token from ipam.consul_token or ipam.consul_token_file, trimmed of surrounding white space (a
 * token file usually ends with a newline). A token that still holds a control character cannot be sent as a
 * header: that is a config error (7) naming the field, never shown, not a network failure the runtime would retry.
 */
export function resolveToken(options: ConsulOptions): string | undefined {
  let token: string | undefined;
  let field = 'ipam.consul_token';
  if (options.token !== undefined && options.token.trim() !== '') token = options.token.trim();
  else if (options.tokenFile !== undefined) {
    field = `ipam.consul_token_file ${options.tokenFile}`;
    try {
      token = readFileSync(options.tokenFile, 'utf8').trim();
    } catch (error) {
      throw new CniError(ErrorCode.IoFailure, `cannot read ipam.consul_token_file ${options.tokenFile}`, (error as Error).message);
    }
  }
  // eslint-disable-next-line no-control-regex
  if (token !== undefined && /[\u0000-\u001f\u007f]/.test(token)) {
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: ${field} holds a line break or another control character; a Consul token is one line`);
  }
  return token;
}

function readPem(field: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (error) {
    throw new CniError(ErrorCode.IoFailure, `cannot read ${field} ${path}`, (error as Error).message);
  }
}

/** got options shared by every server of one invocation. */
export function gotOptions(options: ConsulOptions): OptionsInit {
  const token = resolveToken(options);
  return {
    timeout: { connect: options.connectTimeoutMs, secureConnect: options.connectTimeoutMs, request: options.requestTimeoutMs },
    retry: { limit: 0 }, // our own loop below knows which Consul answers are transient
    throwHttpErrors: false,
    decompress: false, // Consul answers uncompressed; not asking spares loading zlib

    headers: token === undefined ? {} : { 'x-consul-token': token },
    https: {
      certificateAuthority: readPem('ipam.consul_ca_file', options.caFile),
      certificate: readPem('ipam.consul_cert_file', options.certFile),
      key: readPem('ipam.consul_key_file', options.keyFile),
    },
  };
}

/** A failure talking to a server: why, and whether trying again (or another server) may help. */
export class ConsulFailure extends CniError {}

/** Maps an HTTP status and body to the CNI error it means. */
export function failureForStatus(server: string, what: string, status: number, body: string): ConsulFailure {
  const said = body.trim().slice(0, 200);
  if (status === 403 || /permission denied/i.test(said)) {
    return new ConsulFailure(ErrorCode.PermissionDenied, `Consul denied ${what}: permission denied (check ipam.consul_token)`, `${server} answered ${status}: ${said}`);
  }
  if (status >= 500) return new ConsulFailure(ErrorCode.TryAgainLater, `Consul could not serve ${what}`, `${server} answered ${status}: ${said}`);
  // Consul 1.9+ answers 429 when this host holds more than limits.http_max_conns_per_client connections
  // (1.8 just closes the connection): a storm of plugin processes against one local agent, soon over.
  if (status === 429) return new ConsulFailure(ErrorCode.TryAgainLater, `Consul is limiting this host's connections for ${what}`, `${server} answered 429: ${said}`);
  return new ConsulFailure(ErrorCode.KvFailure, `Consul refused ${what}`, `${server} answered ${status}: ${said}`);
}

/** Maps a transport failure (refused, timed out, TLS) to the CNI error it means. */
export function failureForTransport(server: string, what: string, error: unknown): ConsulFailure {
  const code = (error as { code?: string }).code ?? 'ERROR';
  const message = (error as Error).message ?? String(error);
  return new ConsulFailure(ErrorCode.TryAgainLater, `cannot reach Consul for ${what}`, `${server}: ${code}: ${message}`);
}

/**
 * Thrown when a server's answer cannot be Consul's (a 404 without X-Consul-Index: another service on that
 * port): retrying it is pointless, the next listed server may be Consul.
 */
export class NotConsulFailure extends ConsulFailure {}

/** The answer to `what` when it lacks the headers Consul puts on it (a 404 always; a 2xx when `read`). */
function notConsul(server: string, what: string, status: number, headers: Readonly<Record<string, unknown>>, read: boolean): NotConsulFailure | undefined {
  if (readHeaders.some((name) => headers[name] !== undefined)) return undefined;
  if (status !== 404 && !(read && status >= 200 && status < 300)) return undefined;
  return new NotConsulFailure(
    ErrorCode.TryAgainLater,
    `${server} is not a Consul server`,
    `${server} is not a Consul server: it answered ${what} with ${status} without Consul's X-Consul-Index header (another service on that port?)`,
  );
}

const isTransient = (error: unknown): boolean =>
  error instanceof ConsulFailure &&
  !(error instanceof NotConsulFailure) &&
  error.code === ErrorCode.TryAgainLater &&
  !/ETIMEDOUT|ECONNREFUSED|CERT|SSL|EPROTO/.test(error.details);

/** The server went away after it was picked (killed, restarted): another server of the cluster may take over. */
const isGone = (error: unknown): boolean => error instanceof ConsulFailure && /: (ECONNREFUSED|ECONNRESET|EPIPE|EHOSTUNREACH):/.test(error.details);

/**
 * A socket for one request, opened as node:http does when it has no agent (it calls back itself with the socket
 * returned). A synchronous require: node:http has loaded node:net already; the bundler leaves builtins external.
 */
const unpooledConnection: CreateConnectionFunction = (request) => (require('node:net') as typeof import('node:net')).createConnection(request as NetConnectOpts);

/** An HTTP answer's status line and headers, as got's stream reports them. */
interface Head {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders;
}

/** What one answer said, with the Consul headers the reads check. */
interface Answer {
  readonly status: number;
  readonly body: string;
  readonly knownLeader: boolean;
  /** X-Consul-LastContact: ms since the answering server last heard from the leader (0 on the leader). */
  readonly lastContactMs: number;
}

/**
 * Creates a client for one server. got is loaded here, on first use, so VERSION never pays for it.
 * `fallbacks` are the other servers of the cluster: when the server stops answering in the middle of an
 * invocation (a leader killed mid-storm), a retriable request moves to the next one instead of failing the
 * container start; a no-leader answer there during the election is then retried like any transient one.
 *
 * `oneShot`: the caller expects to send one request (the one-request ADD and DEL). Over plain HTTP, each
 * request then opens its own connection instead of going through Node's connection pool (http.Agent), whose
 * code is compiled afresh in every process: 1.6% of a warm ADD's instructions (docs/performance.md). A second
 * request costs a new connection, which to the usual local agent is cheap; clients that send several keep the pool.
 */
export async function connectConsul(first: string, options: OptionsInit, log: Log, fallbacks: readonly string[] = [], { oneShot = false } = {}): Promise<ConsulKv> {
  const { default: got } = await import('got');
  let server = first;
  // Decided per server: a fallback reached over https must not get a plain socket.
  const clientFor = (url: string): Got => got.extend({ ...options, ...(oneShot && url.startsWith('http://') ? { createConnection: unpooledConnection } : {}), prefixUrl: url });
  let http = clientFor(server);
  const spare = [...fallbacks];
  let requests = 0;
  const kept = new Map<string, KvEntry | undefined>();

  /**
   * Sends one request, retrying transient failures when `retry` is set. `read`: a KV or catalog read, whose
   * every answer from Consul carries its index headers.
   */
  async function send(what: string, path: string, init: OptionsInit, retry = true, read = false): Promise<Answer> {
    for (let attempt = 1; ; attempt++) {
      requests++;
      const started = Date.now();
      try {
        const response = await answer(path, init);
        const body = response.body;
        log.debug(`consul ${init.method ?? 'GET'} ${path}${init.searchParams ? `?${new URLSearchParams(init.searchParams as Record<string, string>)}` : ''} -> ${response.statusCode} in ${Date.now() - started} ms`);
        const status = response.statusCode;
        const knownLeader = response.headers['x-consul-knownleader'] !== 'false';
        const lastContactMs = Number(response.headers['x-consul-lastcontact'] ?? 0) || 0;
        if (status >= 500 || status === 403 || status === 429) throw failureForStatus(server, what, status, body);
        const impostor = notConsul(server, what, status, response.headers, read);
        if (impostor) throw impostor;
        return { status, body, knownLeader, lastContactMs };
      } catch (caught) {
        const failure = caught instanceof ConsulFailure ? caught : failureForTransport(server, what, caught);
        if (retry && (isGone(failure) || failure instanceof NotConsulFailure) && spare.length > 0) {
          const next = spare.shift()!;
          log.warn(`${failure.message} (${failure.details}); moving to Consul server ${next}`);
          server = next;
          http = clientFor(next);
          continue;
        }
        const delay = retry && isTransient(failure) ? transientRetryDelay(attempt) : 0;
        log.debug(`consul ${what} failed (attempt ${attempt}): ${failure.message}: ${failure.details}`);
        if (delay === 0) throw failure;
        log.warn(`${failure.message} (${failure.details}); retrying in ${delay} ms`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /**
   * One request through got's stream interface, its body collected here: got's promise interface wraps the
   * same request in a cancelable promise and reads the body with an async iterator, ~2% of a warm ADD's
   * instructions (docs/performance.md). Errors are got's RequestErrors either way; HTTP statuses are not
   * errors (`throwHttpErrors: false`).
   */
  const answer = (path: string, init: OptionsInit) =>
    new Promise<Head & { body: string }>((resolve, reject) => {
      const request = http.stream(path, { ...init, isStream: true });
      const chunks: Buffer[] = [];
      let head: Head | undefined;
      request.on('response', ({ statusCode, headers }: Head) => (head = { statusCode, headers }));
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () =>
        head === undefined ? reject(new Error('the answer ended before its status line')) : resolve({ ...head, body: Buffer.concat(chunks).toString('utf8') }),
      );
      request.on('error', reject);
      // got ends a body-less request itself only for GET and HEAD.
      if (init.body === undefined && init.method !== undefined && init.method !== 'GET') request.end();
    });

  const parse = <T>(what: string, body: string): T => {
    try {
      return JSON.parse(body) as T;
    } catch {
      throw new ConsulFailure(ErrorCode.KvFailure, `Consul sent an answer to ${what} that is not JSON`, `${server}: ${body.slice(0, 200)}`);
    }
  };
  const expectOk = (what: string, response: { status: number; body: string }, ...ok: number[]): void => {
    if (![200, ...ok].includes(response.status)) throw failureForStatus(server, what, response.status, response.body);
  };

  return {
    get server() {
      return server;
    },
    get requests() {
      return requests;
    },
    async leader() {
      const what = 'the leader status';
      const response = await send(what, 'v1/status/leader', {}, false);
      expectOk(what, response);
      // Consul sets no header of its own here: the answer's shape (a JSON string) is all that says it is Consul.
      let leader: unknown;
      try {
        leader = JSON.parse(response.body);
      } catch {
        leader = undefined;
      }
      if (typeof leader !== 'string') {
        throw new NotConsulFailure(ErrorCode.TryAgainLater, `${server} is not a Consul server`, `${server} is not a Consul server: it answered ${what} with ${response.body.slice(0, 100)}, not a JSON string`);
      }
      return leader;
    },
    async get(key, { retry = true, probe = false, fresh = false } = {}) {
      if (kept.has(key) && !fresh) {
        const entry = kept.get(key);
        kept.delete(key);
        return entry;
      }
      const what = `a read of ${key}`;
      const response = await send(what, keyPath(key), probe ? { searchParams: { stale: '' } } : {}, retry, true);
      if (!response.knownLeader) throw new ConsulFailure(ErrorCode.TryAgainLater, `Consul has no leader for ${what}`, `${server}: no cluster leader`);
      expectOk(what, response, 404);
      const entry = response.status === 404 ? undefined : parse<RawEntry[]>(what, response.body).map(toEntry)[0];
      // A stale "not found" may only mean this server has not applied the write yet (a pool just made), and a
      // server that has not heard from the leader for a while may hold ranges an operator has changed since:
      // neither is kept, so the command's own read asks again, answered by the leader (one request more, only then).
      if (probe && entry !== undefined) {
        if (response.lastContactMs <= maxStalenessMs) kept.set(key, { ...entry, stale: true });
        else log.debug(`${server} last heard from the leader ${response.lastContactMs} ms ago: reading ${key} again from the leader`);
      }
      return entry;
    },
    async list(prefix) {
      const what = `a read of ${prefix}`;
      const response = await send(what, keyPath(prefix), { searchParams: { recurse: '' } }, true, true);
      expectOk(what, response, 404);
      return response.status === 404 ? [] : parse<RawEntry[]>(what, response.body).map(toEntry);
    },
    async keys(prefix) {
      const what = `a listing of ${prefix}`;
      const response = await send(what, keyPath(prefix), { searchParams: { keys: '' } }, true, true);
      expectOk(what, response, 404);
      return response.status === 404 ? [] : parse<string[]>(what, response.body);
    },
    async put(key, value, cas) {
      const what = `a write of ${key}`;
      const searchParams = cas === undefined ? undefined : { cas: String(cas) };
      const response = await send(what, keyPath(key), { method: 'PUT', body: value, ...(searchParams ? { searchParams } : {}) });
      expectOk(what, response);
      return parse<boolean>(what, response.body) === true;
    },
    async deleteCas(key, cas, { retry = true } = {}) {
      const what = `a delete of ${key}`;
      const response = await send(what, keyPath(key), { method: 'DELETE', searchParams: { cas: String(cas) } }, retry);
      expectOk(what, response);
      return parse<boolean>(what, response.body) === true;
    },
    async txn(ops, { retry = true } = {}) {
      const what = `a transaction on ${ops[0]?.key ?? 'KV'}`;
      const json = ops.map((op) => ({
        KV: {
          Verb: op.verb,
          Key: op.key,
          ...('value' in op && op.value !== undefined ? { Value: Buffer.from(op.value).toString('base64') } : {}),
          ...('index' in op ? { Index: op.index } : {}),
        },
      }));
      const response = await send(what, 'v1/txn', { method: 'PUT', body: JSON.stringify(json) }, retry);
      expectOk(what, response, 409);
      if (response.status === 409) {
        const body = parse<{ Errors?: Array<{ OpIndex: number; What: string }> }>(what, response.body);
        return { applied: false, errors: (body.Errors ?? []).map((e) => ({ opIndex: e.OpIndex, what: e.What })) };
      }
      const body = parse<{ Results?: Array<{ KV?: RawEntry }> | null }>(what, response.body);
      return { applied: true, entries: (body.Results ?? []).flatMap((r) => (r.KV ? [toEntry(r.KV)] : [])) };
    },
    async nodes() {
      const what = 'the catalog of nodes';
      const response = await send(what, 'v1/catalog/nodes', {}, true, true);
      expectOk(what, response);
      const body = parse<unknown>(what, response.body);
      if (!Array.isArray(body)) throw new ConsulFailure(ErrorCode.KvFailure, `Consul sent an answer to ${what} that is not a list`, `${server}: ${response.body.slice(0, 200)}`);
      // Only names are used, and only to compare: an entry without a string Node is dropped, never trusted.
      return body.flatMap((node: unknown) => (typeof (node as { Node?: unknown })?.Node === 'string' ? [(node as { Node: string }).Node] : []));
    },
  };
}
