/**
 * Where ADD looks when the window after its starting point is all taken: a pure plan, table-tested in
 * test/unit/probe-plan.test.ts, that chooseIp sends as a few Consul transactions of `get`s.
 *
 * A crowded pool is crowded in runs: each host fills its own stretch round robin from its home (see
 * homePosition), and a pool filled from rangeStart is one long run. A host starting inside a run needs the
 * run's end, which may be tens of thousands of addresses ahead: probes at doubling distances (32, 64, 128, …)
 * find it in log₂(run / 32) probes; then probes spread evenly over the pool (½, ¼ and ¾, ⅛ …) find a free
 * stretch anywhere else. Each probe checks a few consecutive candidates, many probes to a transaction
 * (Consul before 1.14 takes at most 64 operations). Only when the whole plan finds nothing does ADD list the
 * pool's key names, to find the last free addresses or prove the pool full.
 */
import { homeMinimumSpan } from './contention';

/** Candidates `length` long, starting `distance` positions after the start of the search. */
export interface Probe {
  readonly distance: bigint;
  readonly length: number;
}

export interface ProbePlanOptions {
  /** Positions already checked right after the start (chooseIp's first window). */
  readonly firstWindow: number;
  /** Consecutive candidates per probe. */
  readonly probeLength: number;
  /** Operations per transaction. */
  readonly opsPerTransaction: number;
  /** Transactions before giving up and listing the pool. */
  readonly transactions: number;
}

export const defaultProbePlan: ProbePlanOptions = { firstWindow: 32, probeLength: 8, opsPerTransaction: 64, transactions: 3 };

/**
 * The probes to send after the first window into a range of `span` positions, one array per transaction.
 * None in a range too small for homes: it is walked in order, as host-local does, and listing it is cheap.
 */
export function probePlan(span: bigint, options: ProbePlanOptions = defaultProbePlan): Probe[][] {
  if (span < homeMinimumSpan) return [];
  const { firstWindow, probeLength, opsPerTransaction, transactions } = options;
  const perTransaction = Math.max(1, Math.floor(opsPerTransaction / probeLength));
  const limit = perTransaction * transactions;
  const length = BigInt(probeLength);
  const distances: bigint[] = [];
  // A probe overlapping the first window or another probe would check the same addresses twice.
  const add = (distance: bigint) => {
    if (distances.length >= limit || distance < BigInt(firstWindow) || distance >= span) return;
    if (distances.some((d) => distance < d + length && d < distance + length)) return;
    distances.push(distance);
  };
  for (let distance = BigInt(firstWindow); distance < span && distances.length < limit; distance *= 2n) add(distance);
  for (let shift = 1n; distances.length < limit && span >> shift >= length; shift++) {
    for (let multiple = 1n; multiple < 1n << shift; multiple += 2n) add((span * multiple) >> shift);
  }
  const plan: Probe[][] = [];
  for (let i = 0; i < distances.length; i += perTransaction) {
    plan.push(distances.slice(i, i + perTransaction).map((distance) => ({ distance, length: probeLength })));
  }
  return plan;
}
