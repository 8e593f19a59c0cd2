import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { homePosition, jumpAhead, spreadIndex } from './contention';
import type { ConsulKv } from './consul-client';
import { claimedSince, markClaiming, unmarkClaiming } from './host-store';
import { candidatesFrom, poolSpan, positionOf, rangePositions, type AddressRange, type Candidate } from './ip-math';
import { allocationKey, allocationPrefix, parseAllocation } from './kv-layout';
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

export type Choice = { readonly kind: 'free'; readonly candidate: Candidate } | { readonly kind: 'full' };

/** Candidates checked per Consul transaction (Consul before 1.14 takes at most 64 operations). */
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
  const { kv, pool, after, lost, log, dataDir, hostId, random = Math.random } = input;
  const avoid = new Set(input.avoid);
  /**
   * The spread pick among the free candidates, skipping those a neighbouring process of this host is claiming.
   * When neighbours hold every one, their claims are decided within milliseconds (and may fail): ask again a
   * few times before moving on, rather than take the pool for full.
   */
  const pick = async (free: readonly Candidate[], readAt: number): Promise<Candidate | undefined> => {
    const takenSince = new Set<string>(); // found taken when read again: not asked about twice
    for (let round = 0; round < 4 && free.length > takenSince.size; round++) {
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, 25));
      const start = spreadIndex(free.length, lost, random);
      for (let i = 0; i < free.length; i++) {
        const candidate = free[(start + i) % free.length]!;
        if (takenSince.has(candidate.ip) || !(await markClaiming(dataDir, pool.name, candidate.ip))) continue;
        // The window was read before the mark: a neighbour may have won this address and dropped its marker
        // since. If one claimed anything since the read, read the key again, so this host never sends a cas=0
        // write it has already lost to itself.
        if (!(await claimedSince(dataDir, pool.name, readAt))) return candidate;
        if ((await kv.get(allocationKey(pool.name, candidate.ip), { fresh: true })) === undefined) return candidate;
        takenSince.add(candidate.ip);
        await unmarkClaiming(dataDir, pool.name, candidate.ip).catch(() => undefined);
      }
    }
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
  const free = await freeAmong(kv, pool.name, first);
  log.debug(`window from ${first[0]!.ip}: ${free.length} of ${first.length} free`);
  const candidate = await pick(free, firstReadAt);
  if (candidate) return { kind: 'free', candidate };
  // The window ran to the end of the cycle: every address of the pool was checked.
  if (first.length < windowSize) return { kind: 'full' };
  for (const probes of probePlan(rangePositions(pool.ranges, from)!.span, { ...defaultProbePlan, firstWindow: windowSize })) {
    const batch = probeBatch(pool.ranges, from, probes, avoid);
    const readAt = Date.now();
    const free = await freeAmong(kv, pool.name, batch);
    log.debug(`probes at ${probes.map((p) => `+${p.distance}`).join(' ')}: ${free.length} of ${batch.length} free`);
    const candidate = await pick(free, readAt);
    if (candidate) return { kind: 'free', candidate };
  }
  const listedAt = Date.now();
  const taken = await listTaken(kv, pool.name);
  log.debug(`window and probes taken; listed and checked ${taken.size} allocations of ${pool.name}`);
  for (const key of avoid) taken.add(key);
  // Window by window to the end of the cycle: free addresses all marked by neighbours (more ADDs running on
  // this host than a window holds) do not make the pool full.
  const rest = candidatesFrom(pool.ranges, from);
  for (let free = take(rest, windowSize, taken); free.length > 0; free = take(rest, windowSize, taken)) {
    const candidate = await pick(free, listedAt);
    if (candidate) return { kind: 'free', candidate };
  }
  return { kind: 'full' };
});

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

/** Takes up to n candidates not in `skip` from a lazy sequence. */
function take(candidates: Iterator<Candidate>, n: number, skip: ReadonlySet<string>): Candidate[] {
  const out: Candidate[] = [];
  while (out.length < n) {
    const next = candidates.next();
    if (next.done) break;
    if (!skip.has(next.value.ip)) out.push(next.value);
  }
  return out;
}

/**
 * One transaction of `get`s over a window of candidates. All taken: Consul applies it and returns every value,
 * each checked. Some free: Consul rolls it back and names every operation whose key does not exist, but returns
 * no values, so the taken ones are read in a second transaction and checked too (the seed: a key in the pool
 * folder that is not a valid Allocation is an error, 102). A window entirely free, the common case after this
 * host's hint, costs one round trip; only a window mixing free and taken addresses costs two.
 */
async function freeAmong(kv: ConsulKv, pool: string, batch: readonly Candidate[]): Promise<Candidate[]> {
  const outcome = await kv.txn(batch.map(({ ip }) => ({ verb: 'get', key: allocationKey(pool, ip) })));
  if (outcome.applied) {
    for (const entry of outcome.entries) parseAllocation(pool, entry.key, entry.value);
    return [];
  }
  const missing = missingOps(kv, pool, outcome.errors, batch.length);
  let taken = batch.filter((_, index) => !missing.has(index));
  const free = batch.filter((_, index) => missing.has(index));
  // Each rolled-back check names at least one more key released meanwhile: at most one round per candidate.
  while (taken.length > 0) {
    const check = await kv.txn(taken.map(({ ip }) => ({ verb: 'get', key: allocationKey(pool, ip) })));
    if (check.applied) {
      for (const entry of check.entries) parseAllocation(pool, entry.key, entry.value);
      break;
    }
    const released = missingOps(kv, pool, check.errors, taken.length);
    free.push(...taken.filter((_, index) => released.has(index)));
    taken = taken.filter((_, index) => !released.has(index));
  }
  // Back in walk order, so the spread pick and round robin see the window as it is.
  return batch.filter((candidate) => free.includes(candidate));
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
 * key an error. Values are read too (`?recurse`), which costs more than key names alone, but only on this
 * path: a host's first ADD, without a hint, in a pool crowded from its start.
 */
async function listTaken(kv: ConsulKv, pool: string): Promise<Set<string>> {
  const prefix = allocationPrefix(pool);
  const taken = new Set<string>();
  for (const entry of await kv.list(prefix)) {
    if (entry.key === prefix) continue; // the folder key that Consul's UI creates
    taken.add(parseAllocation(pool, entry.key, entry.value).ip);
  }
  return taken;
}
