import { fromPromise } from 'xstate';
import type { Assigned } from '../cni/result';
import { allocationFor } from './claim-ip';
import { chooseAddress, type Choice } from './choose-ip';
import { connectConsul, gotOptions, type ConsulKv, type ConsulOptions, type TxnOp } from './consul-client';
import { forgetHeld, keepClaimed, recall, recallPool, rememberHeld, rememberLastReserved, unmarkClaiming } from './host-store';
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
 * host's hint in a single Consul transaction, without reading the pool key (nor, mostly, a window of candidates) first.
 *
 * What makes that safe is in the transaction: `check-index` on ipam/<pool> at the ModifyIndex of the copy this
 * host keeps (host-store's PoolCopy) and `cas` index 0 on the address's key (with `check-not-exists` on its old
 * spelling, as claimIp does). Consul applies all or none: the address is written only if the pool is, at that
 * moment, the version its ranges were computed from, and only if no one holds it. So the claim is never weaker
 * than the full way's, whose pool read may be stale. The transaction also reads the pool key back: a copy whose
 * text differs from it (the index matched, so it was altered on this host) has its claim taken back at once.
 *
 * What makes it cheap is the hint's `free`: how many addresses after the hint the last window read found free
 * (this host's last, or a neighbour's moments ago: choose-ip's publishRun). Those are claimed from without a
 * read. Once they are used up, or marked by running neighbours, chooseIp's search reads windows on the copy's
 * ranges: two requests instead of the full way's three, since the pool key need not be read. With homes
 * (contention.ts) hosts rarely meet, so on a warm host about 31 of 32 ADDs cost one request, the 32nd two.
 *
 * Anything unusual — no copy, a copy that does not decode, this container already noted, no free address in the
 * copy's ranges, the pool changed, the address taken, any failure talking to Consul — declines,
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
  // chooseIp's search on the copy's ranges: the run the hint records free is tried first, without a read (in a
  // storm on this host, running neighbours mark its first addresses); once it is used up, windows are read as on
  // the full way, minus its read of the pool key. Its reads are not resent: a failing server is left to the full
  // way, which tries the others.
  let kv: ConsulKv;
  let choice: Choice;
  try {
    kv = await connectConsul(input.consul.servers[0]!, gotOptions(input.consul), log, [], { oneShot: true });
    const once: ConsulKv = Object.create(kv, { txn: { value: (ops: readonly TxnOp[]) => kv.txn(ops, { retry: false }) } });
    const poolFromCopy = { name: pool, ranges, identity: copy.createIndex, copy };
    choice = await chooseAddress({
      kv: once,
      pool: poolFromCopy,
      ...(memory.lastReserved === undefined ? {} : { after: memory.lastReserved }),
      ...(memory.freeAfter === undefined ? {} : { knownFree: memory.freeAfter }),
      avoid: [],
      lost: 0,
      log,
      dataDir,
      hostId: input.hostId,
    });
  } catch (error) {
    return declined(`the search on this host's copy of the pool key failed: ${failure(error)}`, undefined, input.consul.servers[0]);
  }
  if (choice.kind === 'full') return declined(`no free address in the ranges of this host's copy of ${poolKey(pool)}`);
  const { candidate } = choice;
  const freeAfter = choice.freeAfter ?? 0;
  const key = allocationKey(pool, candidate.ip);
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
    outcome = await kv.txn(ops, { retry: false });
  } catch (error) {
    // The write may have been applied: the note and the marker stay, and the full way asks Consul.
    await keepClaimed(dataDir, pool, candidate.ip).catch(() => undefined);
    return declined(`the claim of ${key} failed: ${failure(error)}`, undefined, input.consul.servers[0]);
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
    const released = written !== undefined && (await kv.deleteCas(key, written.modifyIndex).catch(() => false));
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
  await rememberLastReserved(dataDir, pool, copy.createIndex, candidate.ip, freeAfter).catch((error: Error) =>
    log.warn(`cannot save the round-robin hint under ${dataDir}: ${error.message}`),
  );
  log.debug(`claimed ${key} from this host's copy of the pool key (${freeAfter} more known free after it)`);
  return { kind: 'took', pool, assigned: candidate };
});

/** An error's message, with the details a CniError carries (Consul's answer), for the decline's debug line. */
function failure(error: unknown): string {
  const details = 'details' in (error as object) ? ` (${(error as { details: string }).details})` : '';
  return `${(error as Error).message}${details}`;
}
