/**
 * The report of `consul-ipam check`, as written with -o and read back by `release --from-report`: the
 * problem kinds, which of them release frees and why, and the codec that reads a report file as the
 * untrusted input it is (it names the keys to delete).
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { canonicalIp, Count, KeySegment } from '../cni/codecs';
import { describeDecodeErrors, summarizeProblems } from '../cni/decode-report';
import { allocationPrefix } from '../services/kv-layout';
import { OperationFailure } from './cli-errors';

/**
 * What can be wrong with a key under ipam/<pool>/, and whether `release --from-report` deletes it.
 *
 * Released, because nothing else ever will and the key holds an address of the pool:
 * - dead-host: its host is no longer a node of the Consul cluster, so no DEL or GC of that host will come.
 * - duplicate: one container interface holds several addresses; ADD hands out one per pool, and a retried ADD
 *   returns the one the host remembers, the last it wrote. The most recently written (highest ModifyIndex) is
 *   that one and is kept; the others are left from ADDs whose result the runtime never kept.
 * - invalid-value: named after an address but holding no Allocation: ADD can never take the address, and no
 *   DEL recognises the key as its container's.
 * Reported only, because deleting them frees nothing or may take a live container's address:
 * - outside-ranges: the pool was shrunk under it (pool set --force); the container may still run, its DEL
 *   will release it, and the pool gains no address by deleting it. (A dead host's is released as dead-host.)
 * - non-canonical-key: an address in a second spelling (our releases before RFC 5952 keys, or a hand-made key); it
 *   may be a live container's. The plugin treats the address as taken, other implementations do not: the fix is
 *   moving the key (`consul-ipam rekey`), not deleting it.
 * - invalid-key: not named after an address at all: it holds no address and may be someone else's data.
 */
export const problemKinds = {
  'dead-host': { releasable: true },
  duplicate: { releasable: true },
  'invalid-value': { releasable: true },
  'outside-ranges': { releasable: false },
  'non-canonical-key': { releasable: false },
  'invalid-key': { releasable: false },
} as const;

export type ProblemKind = keyof typeof problemKinds;

/** One thing wrong with a key, in words. */
export interface Problem {
  readonly kind: ProblemKind;
  readonly detail: string;
}

/** A key with at least one problem, as check saw it: `release --from-report` deletes it only if still so. */
export interface ProblemAllocation {
  readonly key: string;
  readonly value: string | null;
  readonly modifyIndex: number;
  readonly ip?: string;
  readonly target?: string;
  readonly ifname?: string;
  readonly host?: string;
  readonly problems: readonly Problem[];
  /** Whether release --from-report deletes it (derived from the kinds; recomputed when the report is read). */
  readonly release: boolean;
}

/** One pool as check found it. */
export interface PoolCheck {
  readonly name: string;
  /** Why the plugin refuses the pool key; usage and outside-ranges are then unknown. */
  readonly error?: string;
  readonly size?: string;
  readonly allocated: number;
  readonly free?: string;
  /** What check could not judge, and why (hosts that match no node, allocations without a host). */
  readonly notes: readonly string[];
  readonly problems: readonly ProblemAllocation[];
}

/** The whole report. */
export interface CheckReport {
  readonly report: 'consul-ipam check';
  readonly version: 1;
  /** When check read Consul, ISO 8601 UTC: release refuses the report until --grace after this. */
  readonly createdAt: string;
  /** The servers the command was given, in order, and the one that answered. */
  readonly servers: readonly string[];
  readonly server: string;
  /** The node names the catalog listed, that allocation hosts were matched with. */
  readonly nodes: readonly string[];
  readonly pools: readonly PoolCheck[];
}

/** Whether a key with these problems is released: one releasable kind is enough. */
export function isReleasable(problems: readonly Problem[]): boolean {
  return problems.some((problem) => problemKinds[problem.kind].releasable);
}

const ProblemKindCodec = t.keyof(problemKinds, 'a problem kind');
const IsoTime = new t.Type<string, string, unknown>(
  'an ISO 8601 time (like 2025-01-31T12:00:00.000Z)',
  (u): u is string => typeof u === 'string',
  (u, c) => (typeof u === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(u) && !Number.isNaN(Date.parse(u)) ? t.success(u) : t.failure(u, c)),
  t.identity,
);
const Index = t.refinement(Count, (n) => n >= 1, 'a ModifyIndex (a whole number, at least 1)');
const ReportAllocation = t.intersection(
  [
    t.type({
      key: t.string,
      value: t.union([t.string, t.null]),
      modifyIndex: Index,
      problems: t.refinement(t.array(t.type({ kind: ProblemKindCodec, detail: t.string })), (list) => list.length > 0, 'a non-empty list of problems'),
    }),
    t.partial({ ip: t.string, target: t.string, ifname: t.string, host: t.string, release: t.boolean }),
  ],
  'a problem allocation',
);
const ReportCodec = t.type(
  {
    report: t.literal('consul-ipam check'),
    version: t.literal(1),
    createdAt: IsoTime,
    servers: t.array(t.string),
    pools: t.array(t.type({ name: KeySegment, problems: t.array(ReportAllocation) })),
  },
  'a consul-ipam check report',
);

/** A report read back: only what release needs, each key checked to be an allocation key of its pool. */
export interface ReadReport {
  readonly createdAt: string;
  readonly servers: readonly string[];
  readonly allocations: ReadonlyArray<ProblemAllocation & { readonly pool: string }>;
}

/**
 * Decodes a report file's text. A key that release would delete must be ipam/<pool>/<canonical address> of
 * the pool it is listed under: a report edited to name another key (a pool key, another pool's, a path
 * with "..") is refused whole, before anything is sent to Consul.
 */
export function readReport(file: string, text: string): ReadReport {
  const fail = (why: string, details = ''): never => {
    throw new OperationFailure('invalid-data', `${file} is not a report of consul-ipam check: ${why}`, details);
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail('not JSON');
  }
  const decoded = ReportCodec.decode(json);
  if (isLeft(decoded)) {
    const { first, details } = summarizeProblems(describeDecodeErrors(decoded.left, 'report'));
    return fail(first, details);
  }
  const allocations = decoded.right.pools.flatMap((pool) =>
    pool.problems.map((found) => {
      const problems = found.problems;
      const release = isReleasable(problems);
      const ip = found.key.startsWith(allocationPrefix(pool.name)) ? found.key.slice(allocationPrefix(pool.name).length) : '';
      if (release && canonicalIp(ip) !== ip) fail(`key ${JSON.stringify(found.key)} is not an allocation key of pool ${pool.name} (ipam/${pool.name}/<address>)`);
      return { ...found, pool: pool.name, problems, release };
    }),
  );
  return { createdAt: decoded.right.createdAt, servers: decoded.right.servers, allocations };
}
