import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { homePosition, jumpAhead, spreadIndex } from './contention';
import type { ConsulKv } from './consul-client';
import { markClaiming } from './host-store';
import { candidatesFrom, poolSpan, positionOf, rangePositions, take, type AddressRange, type Candidate } from './ip-math';
import { allocationKey, allocationPrefix, oldAllocationKey, parseAllocation } from './kv-layout';
import type { LoadedPool } from './load-pool';
import type { Log } from './logger';
import { defaultProbePlan, probePlan, type Probe } from './probe-plan';

export interface ChooseIpInput {
  readonly kv: ConsulKv;
  readonly pool: LoadedPool;
  /** The round-robin hint: the search starts after it. */
  readonly after?: string;
  /** Addresses lost to another writer during this invocation. */
  readonly avoid: readonly string[];
  /** How many writes this invocation has lost: widens the random spread among free candidates. */
  readonly lost: number;
  readonly log: Log;
  /** Where this host marks the addresses its processes are claiming (ipam.data_dir). */
  readonly dataDir: string;
  /** ipam.host_id: where a host with no hint starts (homePosition). */
  readonly hostId: string;
  readonly random?: () => number;
}

/**
 * `freeAfter`: how many addresses right after the candidate, in walk order, the read found free (counted in the
 * first window only): the host's hint keeps it, and the next ADDs claim those in one request each (take-next.ts).
 */
export type Choice = { readonly kind: 'free'; readonly candidate: Candidate; readonly freeAfter?: number } | { readonly kind: 'full' };

/** Operations per Consul transaction: Consul before 1.14 takes at most 64. */
export const maxTxnOps = 64;

/**
 * Candidates checked per Consul transaction: with the old spelling of each that has one (see freeAmong), a
 * window is at most 64 reads, one transaction.
 */
export const windowSize = 32;

/**
 * Runs in ADD when no static IP was requested: finds a free address, round robin from the host's hint, or
 * from the host's home in the pool when it has none (a new host, a lost data_dir).
 *
 * The pool is never read whole when a part will do: the next candidates are checked in one transaction of
 * `get`s (Consul reports each missing key: those are free), so a pool with 50,000 allocations costs what an
 * empty one does, and a /48 is never enumerated. When that window is all taken, a few transactions of probes
 * further out (probe-plan.ts) find the end of the run of allocations, or a free stretch elsewhere; only when
 * those are all taken too does it list the pool once and pick from that.
 */
export const chooseIpLogic = fromPromise<Choice, ChooseIpInput>(async ({ input }) => {
  // Keys in another spelling the search meets hold their addresses; they are named in one warning at its end.
  const otherSpellings = new Set<string>();
  try {
    return await search(input, otherSpellings);
  } finally {
    if (otherSpellings.size > 0) warnOtherSpellings(input.log, input.pool.name, [...otherSpellings].sort());
  }
});

/** chooseIp's search; `otherSpellings` collects the keys in another spelling it finds holding addresses. */
async function search(input: ChooseIpInput, otherSpellings: Set<string>): Promise<Choice> {
  const { kv, pool, after, lost, log, dataDir, hostId, random = Math.random } = input;
  const avoid = new Set(input.avoid);
  /**
   * The spread pick among the free candidates, skipping those a neighbouring process of this host is claiming,
   * or may have taken since they were read (markClaiming). When running neighbours hold every one, their claims
   * are decided within milliseconds (and may fail): ask again a few times before moving on, rather than take the
   * pool for full.
   */
  const pick = async (free: readonly Candidate[], readAt: number): Promise<Candidate | undefined> => {
    const takenSince = new Set<string>(); // taken by a neighbour since the read: not asked about again
    let held = 0;
    let round = 0;
    for (; round < 4 && free.length > takenSince.size; round++) {
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, 25));
      const start = spreadIndex(free.length, lost, random);
      for (let i = 0; i < free.length; i++) {
        const candidate = free[(start + i) % free.length]!;
        if (takenSince.has(candidate.ip)) continue;
        const mark = await markClaiming(dataDir, pool.name, candidate.ip, readAt);
        if (mark === 'marked') {
          if (held + takenSince.size > 0) log.debug(`marked ${candidate.ip} in round ${round + 1}; passed over ${held} held by running neighbours, ${takenSince.size} taken since the read`);
          return candidate;
        }
        if (mark === 'taken') takenSince.add(candidate.ip);
        else held++;
      }
    }
    if (free.length > 0) log.debug(`none of ${free.length} free marked in ${round} rounds: ${held} held by running neighbours, ${takenSince.size} taken since the read`);
    return undefined;
  };
  const span = poolSpan(pool.ranges);
  let jump = BigInt(jumpAhead(lost, random, windowSize));
  if (jump >= span) jump = 0n; // a pool smaller than the jump: start over from the hint
  const from = startPosition(pool.ranges, after, hostId) + jump;
  const walk = candidatesFrom(pool.ranges, from);
  const first = take(walk, windowSize, avoid);
  if (first.length === 0) return { kind: 'full' };
  const firstReadAt = Date.now();
  const free = await freeAmong(kv, pool.name, first, otherSpellings);
  log.debug(`window from ${first[0]!.ip}: ${free.length} of ${first.length} free`);
  const candidate = await pick(free, firstReadAt);
  // A window that skipped addresses lost earlier has gaps: the run after the candidate is not what the walk meets.
  if (candidate) return { kind: 'free', candidate, freeAfter: avoid.size === 0 ? freeRunAfter(first, free, candidate) : 0 };
  // The window ran to the end of the cycle: every address of the pool was checked.
  if (first.length < windowSize) return { kind: 'full' };
  for (const probes of probePlan(rangePositions(pool.ranges, from)!.span, { ...defaultProbePlan, firstWindow: windowSize })) {
    const batch = probeBatch(pool.ranges, from, probes, avoid);
    const readAt = Date.now();
    const free = await freeAmong(kv, pool.name, batch, otherSpellings);
    log.debug(`probes at ${probes.map((p) => `+${p.distance}`).join(' ')}: ${free.length} of ${batch.length} free`);
    const candidate = await pick(free, readAt);
    if (candidate) return { kind: 'free', candidate, freeAfter: 0 };
  }
  const listedAt = Date.now();
  const taken = await listTaken(kv, pool.name, otherSpellings);
  log.debug(`window and probes taken; listed and checked ${taken.size} allocations of ${pool.name}`);
  for (const key of avoid) taken.add(key);
  // Window by window to the end of the cycle: free addresses all marked by neighbours (more ADDs running on
  // this host than a window holds) do not make the pool full.
  const rest = candidatesFrom(pool.ranges, from);
  for (let free = take(rest, windowSize, taken); free.length > 0; free = take(rest, windowSize, taken)) {
    const candidate = await pick(free, listedAt);
    if (candidate) return { kind: 'free', candidate, freeAfter: 0 };
  }
  return { kind: 'full' };
}

/**
 * How many candidates right after `chosen` in the window were free at the read: the run ends at the first taken
 * one, and at the window's end. The window is in walk order, so these are the very addresses the walk from
 * `chosen` meets next.
 */
function freeRunAfter(window: readonly Candidate[], free: readonly Candidate[], chosen: Candidate): number {
  const freeIps = new Set(free.map(({ ip }) => ip));
  let run = 0;
  for (let i = window.findIndex(({ ip }) => ip === chosen.ip) + 1; i > 0 && i < window.length && freeIps.has(window[i]!.ip); i++) run++;
  return run;
}

/**
 * Where the search starts: right after the hint, else at the host's home in the first range (ranges are
 * used in order, as host-local does: a pool's IPv4 range before its IPv6 one).
 */
function startPosition(ranges: readonly AddressRange[], after: string | undefined, hostId: string): bigint {
  const hint = after === undefined ? undefined : positionOf(ranges, after);
  return hint === undefined ? homePosition(hostId, rangePositions(ranges, 0n)?.span ?? 0n) : hint + 1n;
}

/** The candidates of one transaction of probes, each address once. Probes stay in the range the search is in. */
function probeBatch(ranges: readonly AddressRange[], from: bigint, probes: readonly Probe[], avoid: ReadonlySet<string>): Candidate[] {
  const { first, span } = rangePositions(ranges, from)!;
  const seen = new Set(avoid);
  const batch: Candidate[] = [];
  for (const { distance, length } of probes) {
    for (const candidate of take(candidatesFrom(ranges, first + ((from - first + distance) % span)), length, seen)) {
      seen.add(candidate.ip);
      batch.push(candidate);
    }
  }
  return batch;
}

/**
 * One transaction of `get`s over a window of candidates. All taken: Consul applies it and returns every value,
 * each checked. Some free: Consul rolls it back and names every operation whose key does not exist, but returns
 * no values, so the taken ones are read in a second transaction and checked too (the seed: a key in the pool
 * folder that is not a valid Allocation is an error, 102). A window entirely free, the common case after this
 * host's hint, costs one round trip; only a window mixing free and taken addresses costs two.
 *
 * A candidate with an old spelling (oldAllocationKey: an IPv6 address whose zero groups are all single, which
 * releases before RFC 5952 keys wrote as `…::1`) is read under both keys in the same transaction, and is free only
 * when neither exists: an upgraded cluster holds live allocations there. Other addresses, IPv4 and most IPv6 ones,
 * cost what they did. A probe batch that overflows one transaction with them is sent as several, side by side.
 */
async function freeAmong(kv: ConsulKv, pool: string, batch: readonly Candidate[], otherSpellings: Set<string>): Promise<Candidate[]> {
  const keysOf = batch.map(({ ip }) => [allocationKey(pool, ip), oldAllocationKey(pool, ip)].filter((key): key is string => key !== undefined));
  const keys = keysOf.flat();
  const chunks: string[][] = [];
  for (let i = 0; i < keys.length; i += maxTxnOps) chunks.push(keys.slice(i, i + maxTxnOps));
  const existing = new Set((await Promise.all(chunks.map((chunk) => existingKeys(kv, pool, chunk)))).flat());
  for (const [, oldKey] of keysOf) if (oldKey !== undefined && existing.has(oldKey)) otherSpellings.add(oldKey);
  // In walk order, so the spread pick and round robin see the window as it is.
  return batch.filter((_, index) => keysOf[index]!.every((key) => !existing.has(key)));
}

/** Which of these keys exist, each value checked; one transaction of `get`s, then one more per round of keys found gone. */
async function existingKeys(kv: ConsulKv, pool: string, keys: readonly string[]): Promise<string[]> {
  let asked = keys;
  while (asked.length > 0) {
    const outcome = await kv.txn(asked.map((key) => ({ verb: 'get', key })));
    if (outcome.applied) {
      for (const entry of outcome.entries) parseAllocation(pool, entry.key, entry.value);
      return [...asked];
    }
    // Each rolled-back read names at least one more key missing (released meanwhile): at most one round per key.
    const missing = missingOps(kv, pool, outcome.errors, asked.length);
    if (missing.size === 0) throw new CniError(ErrorCode.KvFailure, `Consul failed a read of ${allocationPrefix(pool)}`, `${kv.server}: a transaction of reads was rolled back without naming why`);
    asked = asked.filter((_, index) => !missing.has(index));
  }
  return [];
}

/** The search's one warning naming the keys in another spelling it found holding addresses (at most five, then a count). */
function warnOtherSpellings(log: Log, pool: string, keys: readonly string[]): void {
  const named = keys.slice(0, 5).join(', ') + (keys.length > 5 ? `, and ${keys.length - 5} more` : '');
  log.warn(
    `${keys.length === 1 ? 'key' : `${keys.length} keys`} ${named} in pool ${pool} name${keys.length === 1 ? 's an address' : ' addresses'} in a spelling other than RFC 5952's ` +
      '(written by a release before RFC 5952 keys, or by hand): taken all the same; consul-ipam rekey moves them to their canonical keys',
  );
}

/** The operations of a rolled-back transaction of `get`s whose key does not exist; any other failure is an error. */
function missingOps(kv: ConsulKv, pool: string, errors: ReadonlyArray<{ readonly opIndex: number; readonly what: string }>, size: number): Set<number> {
  const missing = new Set<number>();
  for (const { opIndex, what } of errors) {
    if (/permission denied/i.test(what)) {
      throw new CniError(ErrorCode.PermissionDenied, `Consul denied a read of ${allocationPrefix(pool)}: permission denied (check ipam.consul_token)`, `${kv.server}: ${what}`);
    }
    if (!/doesn't exist|does not exist/i.test(what) || opIndex < 0 || opIndex >= size) {
      throw new CniError(ErrorCode.KvFailure, `Consul failed a read of ${allocationPrefix(pool)}`, `${kv.server}: operation ${opIndex}: ${what}`);
    }
    missing.add(opIndex);
  }
  return missing;
}

/**
 * Every allocated address of the pool, each allocation checked (a key not named after an address, or a value
 * that is not an Allocation, is 102): the listing is what ADD comes across, and the seed makes every broken
 * key an error. A key naming an address in another spelling holds that address (with a warning naming it).
 * Values are read too (`?recurse`), which costs more than key names alone, but only on this path: a host's first
 * ADD, without a hint, in a pool crowded from its start.
 */
async function listTaken(kv: ConsulKv, pool: string, otherSpellings: Set<string>): Promise<Set<string>> {
  const prefix = allocationPrefix(pool);
  const taken = new Set<string>();
  for (const entry of await kv.list(prefix)) {
    if (entry.key === prefix) continue; // the folder key that Consul's UI creates
    const { ip, canonical } = parseAllocation(pool, entry.key, entry.value);
    taken.add(ip);
    if (!canonical) otherSpellings.add(entry.key);
  }
  return taken;
}
