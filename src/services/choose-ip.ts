import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { homePosition, jumpAhead, spreadIndex } from './contention';
import type { ConsulKv } from './consul-client';
import { markClaiming, markFirstUnmarked, neighbourMarks, rememberLastReserved, rememberPool, unmarkClaiming } from './host-store';
import { addressAt, candidatesFrom, poolSpan, positionOf, rangePositions, take, type AddressRange, type Candidate } from './ip-math';
import { allocationKey, allocationPrefix, oldAllocationKey, parseAllocation } from './kv-layout';
import type { LoadedPool } from './load-pool';
import type { Log } from './logger';
import { defaultProbePlan, probePlan, type Probe } from './probe-plan';

export interface ChooseIpInput {
  readonly kv: ConsulKv;
  readonly pool: LoadedPool;
  /** The round-robin hint: the search starts after it. */
  readonly after?: string;
  /**
   * How many addresses right after `after` the hint records as free: read by this host's last window, or by a
   * neighbour's moments ago (publishRun). On a first try they are claimed from without a read; cas=0 still decides.
   */
  readonly knownFree?: number;
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
 * Windows read one after another along the walk while running neighbours on this host hold every free address
 * of the last: a storm of this many times 32 ADDs at once on one host finds its addresses in order.
 */
const neighbourWindows = 8;

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
export const chooseIpLogic = fromPromise<Choice, ChooseIpInput>(({ input }) => chooseAddress(input));

/** chooseIp's work, also run by take-next.ts on the host's copy of the pool key. A `free` candidate is marked on this host. */
export async function chooseAddress(input: ChooseIpInput): Promise<Choice> {
  // Keys in another spelling the search meets hold their addresses; they are named in one warning at its end.
  const otherSpellings = new Set<string>();
  try {
    return await search(input, otherSpellings);
  } finally {
    if (otherSpellings.size > 0) warnOtherSpellings(input.log, input.pool.name, [...otherSpellings].sort());
  }
}

/** chooseIp's search; `otherSpellings` collects the keys in another spelling it finds holding addresses. */
async function search(input: ChooseIpInput, otherSpellings: Set<string>): Promise<Choice> {
  const { kv, pool, after, lost, log, dataDir, hostId, random = Math.random } = input;
  const avoid = new Set(input.avoid);
  /**
   * The spread pick among the free candidates, skipping those a neighbouring process of this host is claiming,
   * or may have taken since they were read (markClaiming). `rounds` above 1 is for when nothing else of the pool
   * is left to look at: running neighbours' claims are decided within milliseconds (and may fail), so ask again a
   * few times rather than take the pool for full. `held` counts the candidates they held in the last round.
   */
  const pick = async (free: readonly Candidate[], readAt: number, rounds: number): Promise<{ candidate?: Candidate; held: number }> => {
    const takenSince = new Set<string>(); // taken by a neighbour since the read: not asked about again
    let held = 0;
    let round = 0;
    for (; round < rounds && free.length > takenSince.size; round++) {
      if (round > 0) await new Promise((resolve) => setTimeout(resolve, 25));
      // In the spread pick's order, less what a neighbour took since the read.
      const order = rotate(free, spreadIndex(free.length, lost, random)).filter(({ ip }) => !takenSince.has(ip));
      held = 0;
      // A candidate with no marker at all is taken first, by link(2) alone; the markers in place are judged
      // below only when every candidate carries one (a stale one may then be taken over).
      const unmarked = await markFirstUnmarked(dataDir, pool.name, order.map(({ ip }) => ip));
      if (unmarked !== undefined) {
        const passed = order.findIndex(({ ip }) => ip === unmarked);
        if (passed > 0) log.debug(`marked ${unmarked} in round ${round + 1}; passed over ${passed} marked by neighbours`);
        return { candidate: order[passed]!, held };
      }
      for (const candidate of order) {
        const mark = await markClaiming(dataDir, pool.name, candidate.ip, readAt);
        if (mark === 'marked') {
          if (held + takenSince.size > 0) log.debug(`marked ${candidate.ip} in round ${round + 1}; passed over ${held} held by running neighbours, ${takenSince.size} taken since the read`);
          return { candidate, held };
        }
        if (mark === 'taken') takenSince.add(candidate.ip);
        else held++;
      }
    }
    if (free.length > 0) log.debug(`none of ${free.length} free marked in ${round} rounds: ${held} held by running neighbours, ${takenSince.size} taken since the read`);
    return { held };
  };
  /**
   * The first of `candidates` with no marker on it, marked by this process (link(2) alone): a window's before
   * its read, or the known-free run's, which is not read at all. Any marker (a neighbour's that the walk did not
   * yet see, a won claim's, or one to judge as stale against a read) leaves its address to `pick` after a read.
   */
  const reserve = async (candidates: readonly Candidate[]): Promise<Candidate | undefined> => {
    const ip = await markFirstUnmarked(dataDir, pool.name, candidates.map((candidate) => candidate.ip));
    return candidates.find((candidate) => candidate.ip === ip);
  };
  const span = poolSpan(pool.ranges);
  let jump = BigInt(jumpAhead(lost, random, windowSize));
  if (jump >= span) jump = 0n; // a pool smaller than the jump: start over from the hint
  const from = startPosition(pool.ranges, after, hostId) + jump;
  if ((input.knownFree ?? 0) > 0 && lost === 0 && avoid.size === 0 && after !== undefined) {
    // Only an address with no marker is taken here, by link(2) alone: with no read, a marker on the run is a
    // running neighbour's claim or a won claim's, never stale, and judging each one (pick: a dozen calls) would
    // only say so. In a storm on this host most runs are all marked; the window read below decides then.
    const run = take(candidatesFrom(pool.ranges, from), input.knownFree!);
    const candidate = await reserve(run);
    if (candidate) {
      log.debug(`${candidate.ip} is in the run the host's hint records free: claimed without a read`);
      return { kind: 'free', candidate, freeAfter: run.length - run.indexOf(candidate) - 1 };
    }
  }
  const candidates = candidatesFrom(pool.ranges, from);
  // Windows look past addresses running neighbours of this host have marked: in a storm on this host, they are
  // claiming the first addresses of the same walk at this very moment.
  let neighbourHolds: (ip: string) => boolean = () => false;
  let walked = 0; // positions of the walk passed, skipped ones included
  const walk: Iterator<Candidate> = {
    next: () => {
      for (;;) {
        const next = candidates.next();
        if (next.done === true) return next;
        walked++;
        if (!neighbourHolds(next.value.ip)) return next;
      }
    },
  };
  for (let windows = 0; windows < neighbourWindows; windows++) {
    neighbourHolds = neighbourMarks(dataDir, pool.name);
    const before = walked;
    const window = take(walk, windowSize, avoid);
    const gaps = walked - before > window.length;
    // Nothing left to walk: a pool with no address but those lost earlier is full; marked ones are judged below.
    if (window.length === 0) {
      if (windows === 0 && !gaps) return { kind: 'full' };
      break;
    }
    // A window shorter than the others ran to the end of the cycle: the rest of the pool was walked already.
    const last = window.length < windowSize;
    const readAt = Date.now();
    // On a first try the window's first unmarked address is marked before the read: neighbours reading the same
    // window at the same moment each mark another, rather than all reach for the same ones after their reads.
    const reserved = lost === 0 ? await reserve(window) : undefined;
    const free = await freeAmong(kv, pool.name, window, otherSpellings).catch(async (error: unknown) => {
      if (reserved !== undefined) await unmarkClaiming(dataDir, pool.name, reserved.ip);
      throw error;
    });
    log.debug(`window from ${window[0]!.ip}: ${free.length} of ${window.length} free`);
    if (avoid.size === 0) await publishRun(input, window, free);
    const reservedFree = reserved !== undefined && free.some(({ ip }) => ip === reserved.ip);
    if (reserved !== undefined && !reservedFree) await unmarkClaiming(dataDir, pool.name, reserved.ip);
    const { candidate, held } = reservedFree ? { candidate: reserved, held: 0 } : await pick(free, readAt, last ? 4 : 1);
    // A window that skipped addresses (lost earlier, or marked) has gaps: the run after the candidate is not what the walk meets.
    if (candidate) return { kind: 'free', candidate, freeAfter: avoid.size === 0 && !gaps ? freeRunAfter(window, free, candidate) : 0 };
    // The first window was the whole pool: every address of it was checked (a marked one left out may be free:
    // the listing below judges each marker).
    if (last && windows === 0 && !gaps) return { kind: 'full' };
    // Free addresses all held by running neighbours (a storm on this host): the next window along the walk holds
    // the addresses they have not reached yet. Taken in Consul, the window is a run of allocations: probes.
    if (last || held === 0) break;
  }
  for (const probes of probePlan(rangePositions(pool.ranges, from)!.span, { ...defaultProbePlan, firstWindow: walked })) {
    const batch = probeBatch(pool.ranges, from, probes, avoid);
    const readAt = Date.now();
    const free = await freeAmong(kv, pool.name, batch, otherSpellings);
    log.debug(`probes at ${probes.map((p) => `+${p.distance}`).join(' ')}: ${free.length} of ${batch.length} free`);
    const { candidate } = await pick(free, readAt, 1);
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
    const { candidate } = await pick(free, listedAt, 4);
    if (candidate) return { kind: 'free', candidate, freeAfter: 0 };
  }
  return { kind: 'full' };
}

/**
 * Tells this host's other processes what a window read found: the hint is set to the address before the window,
 * with how far along the walk its free addresses run (addresses left out as marked count in: their markers keep
 * them), beside the copy of the pool key. An ADD of this host that looks from now on claims one of those without
 * a read (take-next.ts, or the `knownFree` run here): each is marked first, and written only if still absent. In
 * a storm on one host, which reads the same window many times over, that saves most of its reads. A claim then
 * moves the hint past the address it wins, as before. Best effort: a write that fails only loses the shortcut.
 */
async function publishRun(input: ChooseIpInput, window: readonly Candidate[], free: readonly Candidate[]): Promise<void> {
  const { pool, dataDir, log } = input;
  const freeIps = new Set(free.map(({ ip }) => ip));
  const taken = window.findIndex(({ ip }) => !freeIps.has(ip));
  if (taken === 0 || window.length === 0 || pool.copy === undefined) return;
  const span = poolSpan(pool.ranges);
  const start = positionOf(pool.ranges, window[0]!.ip)!;
  const end = taken < 0 ? positionOf(pool.ranges, window.at(-1)!.ip)! + 1n : positionOf(pool.ranges, window[taken]!.ip)!;
  const run = Number((((end - start) % span) + span) % span);
  if (run === 0) return;
  try {
    await rememberPool(dataDir, pool.name, pool.copy);
    await rememberLastReserved(dataDir, pool.name, pool.identity, addressAt(pool.ranges, start - 1n)!, run);
  } catch (error) {
    log.debug(`cannot tell this host's other ADDs about the free addresses from ${window[0]!.ip}: ${(error as Error).message}`);
  }
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

/** The list from `start` on, then its beginning: the order the spread pick tries candidates in. */
const rotate = <T>(list: readonly T[], start: number): T[] => [...list.slice(start), ...list.slice(0, start)];

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
