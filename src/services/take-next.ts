import { fromPromise } from 'xstate';
import type { Assigned } from '../cni/result';
import { allocationFor } from './claim-ip';
import { connectConsul, gotOptions, type ConsulKv, type ConsulOptions, type TxnOp } from './consul-client';
import { forgetHeld, keepClaimed, markClaiming, recall, recallPool, rememberHeld, rememberLastReserved, unmarkClaiming } from './host-store';
import { candidatesFrom, positionOf, take, type Candidate } from './ip-math';
import { allocationKey, oldAllocationKey, poolKey, readPoolDefinition } from './kv-layout';
import type { Log } from './logger';

export interface TakeNextInput {
  readonly consul: ConsulOptions;
  /** The one pool this ADD takes an address from (no static IP asked for). */
  readonly pool: string;
  readonly containerId: string;
  readonly ifname: string;
  readonly hostId: string;
  readonly network?: string;
  readonly dataDir: string;
  readonly log: Log;
}

/**
 * `took`: the address is the container's, written in one request. `declined`: nothing is known to be written;
 * ADD goes the full way (pick a server, read the pool, search, claim), avoiding `lost` if another writer has it.
 */
export type TakeNext =
  | { readonly kind: 'took'; readonly pool: string; readonly assigned: Assigned }
  | { readonly kind: 'declined'; readonly why: string; readonly lost?: string; readonly suspect?: string };

/**
 * Runs in ADD right after parsing, on a host that has served the pool before: claims the address after the
 * host's hint in a single Consul transaction, without reading the pool or a window of candidates first.
 *
 * What makes that safe is in the transaction: `check-index` on ipam/<pool> at the ModifyIndex of the copy this
 * host keeps (host-store's PoolCopy) and `cas` index 0 on the address's key (with `check-not-exists` on its old
 * spelling, as claimIp does). Consul applies all or none: the address is written only if the pool is, at that
 * moment, the version its ranges were computed from, and only if no one holds it. So the claim is never weaker
 * than the full way's, whose pool read may be stale. The transaction also reads the pool key back: a copy whose
 * text differs from it (the index matched, so it was altered on this host) has its claim taken back at once.
 *
 * What makes it cheap is the hint's `free`: how many addresses after the hint the last window read found free.
 * Only those are tried, so a host whose next addresses are taken does not pay a lost write per ADD: once the run
 * is used up, the next ADD reads a window again (three requests) and learns a new one. With homes (contention.ts)
 * hosts rarely meet, so on a warm host about 31 of 32 ADDs cost one request.
 *
 * Anything unusual — no copy or hint, a copy that does not decode, this container already noted, every address
 * of the run marked by a neighbour, the pool changed, the address taken, any failure talking to Consul — declines,
 * and the full way decides, with its own errors. A failure that may have left the write applied keeps the note
 * and marker: the full way's recallHost then finds the address in Consul and returns it.
 */
export const takeNextLogic = fromPromise<TakeNext, TakeNextInput>(async ({ input }) => {
  const { pool, dataDir, containerId, ifname, log } = input;
  const declined = (why: string, lost?: string, suspect?: string): TakeNext => {
    log.debug(`no claim in one request: ${why}`);
    return { kind: 'declined', why, ...(lost === undefined ? {} : { lost }), ...(suspect === undefined ? {} : { suspect }) };
  };
  const copy = await recallPool(dataDir, pool, log);
  if (copy === undefined) return declined('this host keeps no copy of the pool key');
  let ranges;
  try {
    ({ ranges } = readPoolDefinition(pool, copy.value));
  } catch (error) {
    log.warn(`ignoring this host's copy of ${poolKey(pool)}: ${(error as Error).message} (it is replaced when next written)`);
    return declined('the copy of the pool key does not decode');
  }
  const memory = await recall(dataDir, { name: pool, identity: copy.createIndex, ranges }, containerId, ifname, log);
  if (memory.held !== undefined) return declined(`the host notes ${memory.held.ip} for ${containerId}/${ifname}: Consul is asked whether it holds it`);
  if (memory.lastReserved === undefined || memory.freeAfter === undefined) return declined('no address after the hint is known free');
  // Each address of the run is tried for a marker in turn: in a storm on this host, neighbours hold the first
  // ones (a marker costs a few microseconds; going the full way, three requests).
  const run = take(candidatesFrom(ranges, positionOf(ranges, memory.lastReserved)! + 1n), memory.freeAfter);
  let chosen: { candidate: Candidate; index: number } | undefined;
  for (const [index, candidate] of run.entries()) {
    // Read at 0: a marker left by a gone process means taken (a won claim keeps its marker), never stale.
    if ((await markClaiming(dataDir, pool, candidate.ip, 0)) === 'marked') {
      chosen = { candidate, index };
      break;
    }
  }
  if (chosen === undefined) return declined(`running neighbours are claiming the next ${run.length} free addresses`);
  const { candidate, index } = chosen;
  const key = allocationKey(pool, candidate.ip);
  let kv: ConsulKv | undefined;
  let outcome;
  try {
    const value = JSON.stringify(allocationFor(input, key));
    await rememberHeld(dataDir, pool, containerId, ifname, candidate.ip).catch((error: Error) =>
      log.warn(`cannot note ${candidate.ip} for ${containerId} under ${dataDir}: ${error.message}; a retried ADD may not find it`),
    );
    const oldKey = oldAllocationKey(pool, candidate.ip);
    const ops: TxnOp[] = [
      { verb: 'check-index', key: poolKey(pool), index: copy.modifyIndex },
      { verb: 'get', key: poolKey(pool) },
      { verb: 'cas', key, index: 0, value },
      ...(oldKey === undefined ? [] : [{ verb: 'check-not-exists' as const, key: oldKey }]),
    ];
    kv = await connectConsul(input.consul.servers[0]!, gotOptions(input.consul), log);
    outcome = await kv.txn(ops, { retry: false });
  } catch (error) {
    // The write may have been applied: the note and the marker stay, and the full way asks Consul.
    await keepClaimed(dataDir, pool, candidate.ip).catch(() => undefined);
    const details = 'details' in (error as object) ? ` (${(error as { details: string }).details})` : '';
    return declined(`the claim of ${key} failed: ${(error as Error).message}${details}`, undefined, input.consul.servers[0]);
  }
  if (!outcome.applied) {
    await unmarkClaiming(dataDir, pool, candidate.ip).catch(() => undefined);
    await forgetHeld(dataDir, pool, containerId, ifname).catch(() => undefined);
    const why = outcome.errors.map(({ opIndex, what }) => `operation ${opIndex}: ${what}`).join('; ');
    if (outcome.errors.some(({ opIndex }) => opIndex <= 1)) return declined(`${poolKey(pool)} changed since this host read it (${why})`);
    return declined(`another writer holds ${candidate.ip} (${why})`, candidate.ip);
  }
  // Unchanged since the copy's ModifyIndex, the key must hold the copy's very text: one that differs was altered
  // on this host (damaged, or written by someone who can write data_dir), and the address may lie outside the
  // pool's real ranges. What was just written is taken back, and the full way decides from Consul's ranges.
  // The `get`'s entry: `check-index` answers with the same key, without its value.
  const current = outcome.entries.filter((entry) => entry.key === poolKey(pool)).at(-1);
  if (current?.value !== copy.value) {
    const written = outcome.entries.find((entry) => entry.key === key);
    const released = written !== undefined && (await kv!.deleteCas(key, written.modifyIndex).catch(() => false));
    await (released ? unmarkClaiming : keepClaimed)(dataDir, pool, candidate.ip).catch(() => undefined);
    if (released) await forgetHeld(dataDir, pool, containerId, ifname).catch(() => undefined);
    log.warn(
      `ignoring this host's copy of ${poolKey(pool)} under ${dataDir}: it differs from Consul's at the same ModifyIndex ${copy.modifyIndex} (damaged or altered); ` +
        (released ? `${key}, claimed from it, is released again` : `${key}, claimed from it, could not be released: consul-ipam check reports it if it lies outside the pool`),
    );
    return declined('the copy of the pool key is not what Consul holds');
  }
  await keepClaimed(dataDir, pool, candidate.ip).catch(() => undefined);
  // The key's ModifyIndex goes into the container's note: DEL releases it in one request (release-noted.ts).
  const written = outcome.entries.find((entry) => entry.key === key);
  if (written !== undefined) await rememberHeld(dataDir, pool, containerId, ifname, candidate.ip, written.modifyIndex).catch(() => undefined);
  await rememberLastReserved(dataDir, pool, copy.createIndex, candidate.ip, memory.freeAfter - index - 1).catch((error: Error) =>
    log.warn(`cannot save the round-robin hint under ${dataDir}: ${error.message}`),
  );
  log.debug(`claimed ${key} in one request (${memory.freeAfter - index - 1} more known free after it)`);
  return { kind: 'took', pool, assigned: candidate };
});
