import { fromPromise } from 'xstate';
import type { Candidate } from './ip-math';
import type { ConsulKv } from './consul-client';
import { keepClaimed, rememberHeld, rememberLastReserved, rememberPool, unmarkClaiming } from './host-store';
import { CniError, ErrorCode } from '../cni/errors';
import { allocationKey, allocationPrefix, belongsTo, oldAllocationKey, parseAllocation, type Allocation } from './kv-layout';
import type { LoadedPool } from './load-pool';
import type { Log } from './logger';

export interface ClaimIpInput {
  readonly kv: ConsulKv;
  readonly pool: LoadedPool;
  readonly candidate: Candidate;
  /** `next`: a free address, written only if still absent (cas=0). `requested`: a static IP, written unconditionally, as the seed says. */
  readonly mode: 'next' | 'requested';
  readonly containerId: string;
  readonly ifname: string;
  readonly hostId: string;
  /** The network's `name`, when it is a valid one: recorded so that GC of this network, and only it, collects the address. */
  readonly network?: string;
  readonly dataDir: string;
  /** How many addresses right after the candidate chooseIp found free: kept with the hint (take-next.ts). */
  readonly freeAfter?: number;
  readonly log: Log;
}

/** Whether the address is now ours; false means another writer took it first. */
export interface Claim {
  readonly won: boolean;
}

/**
 * Runs in ADD once an address is chosen: writes ipam/<pool>/<ip>. The host notes the address before the
 * write, so a retried ADD finds it even if this process dies right after Consul applied it. A resent `cas=0`
 * write that answers false is read back: if the key is ours (the first try was applied), we won.
 *
 * An address with an old spelling (oldAllocationKey) is written in one transaction that also guards that key,
 * still one request: `cas` index 0 beside `check-not-exists` on the old key, so a live allocation an earlier
 * release wrote there, or one written since chooseIp read it, makes the claim lost like any taken key. A static IP,
 * written unconditionally, deletes the old key in the same transaction: one address, one allocation.
 */
export const claimIpLogic = fromPromise<Claim, ClaimIpInput>(async ({ input }) => {
  const { kv, pool, candidate, mode, containerId, ifname, dataDir, log } = input;
  const key = allocationKey(pool.name, candidate.ip);
  const allocation = allocationFor(input, key);
  await rememberHeld(dataDir, pool.name, containerId, ifname, candidate.ip).catch((error: Error) =>
    log.warn(`cannot note ${candidate.ip} for ${containerId} under ${dataDir}: ${error.message}; a retried ADD may not find it`),
  );
  const requestsBefore = kv.requests;
  // chooseIp marked the address on this host. A claim that may have been applied keeps its marker, touched once
  // Consul has answered, until this host releases the address: a neighbour that read the pool before the write
  // then knows not to claim it (markClaiming). A claim known lost drops it: neighbours may try the address again.
  const settle = (mayHaveWritten: boolean) => (mayHaveWritten ? keepClaimed : unmarkClaiming)(dataDir, pool.name, candidate.ip).catch(() => undefined);
  let won: boolean;
  try {
    won = await write(kv, pool.name, key, oldAllocationKey(pool.name, candidate.ip), JSON.stringify(allocation), mode);
    // A false answer to a write sent once means another writer holds the key. Only a write the client had to
    // resend (its first try may have been applied) can have lost to itself: read the key back then.
    if (!won && kv.requests - requestsBefore > 1) {
      const entry = await kv.get(key);
      won = entry !== undefined && belongsTo(parseAllocation(pool.name, entry.key, entry.value).allocation, containerId, ifname);
      log.debug(`cas=0 write of ${key} lost; the key ${won ? 'is ours after all' : 'belongs to another container'}`);
    }
  } catch (error) {
    await settle(true); // the write may have been applied
    throw error;
  }
  const settled = settle(won);
  const hint =
    won && mode === 'next'
      ? rememberLastReserved(dataDir, pool.name, pool.identity, candidate.ip, input.freeAfter)
          .then(() => (pool.copy && input.freeAfter ? rememberPool(dataDir, pool.name, pool.copy) : undefined))
          .catch((error: Error) => log.warn(`cannot save the round-robin hint under ${dataDir}: ${error.message}`))
      : undefined;
  await Promise.all([settled, hint]);
  return { won };
});

/** The value of an allocation this container and interface claim; without a network name GC never releases it (warned). */
export function allocationFor(input: Pick<ClaimIpInput, 'containerId' | 'ifname' | 'hostId' | 'network' | 'log'>, key: string): Allocation {
  const { containerId, ifname, hostId, network, log } = input;
  if (network === undefined) log.warn(`the network config has no valid name: GC will never release ${key}`);
  return { target: containerId, ifname, host: hostId, ...(network === undefined ? {} : { network }) };
}

/** The claim's one request: a plain PUT (cas=0 for `next`), or with an old key to guard, a transaction. True when applied. */
async function write(kv: ConsulKv, pool: string, key: string, oldKey: string | undefined, value: string, mode: ClaimIpInput['mode']): Promise<boolean> {
  if (oldKey === undefined) return kv.put(key, value, mode === 'next' ? 0 : undefined);
  const outcome = await kv.txn(
    mode === 'next'
      ? [
          { verb: 'cas', key, index: 0, value },
          { verb: 'check-not-exists', key: oldKey },
        ]
      : [
          { verb: 'set', key, value },
          { verb: 'delete', key: oldKey },
        ],
  );
  if (outcome.applied) return true;
  // Rolled back: the key exists (`index is stale`) or the old one does (`exists`): taken. Anything else is a failure.
  for (const { what } of outcome.errors) {
    if (/permission denied/i.test(what)) {
      throw new CniError(ErrorCode.PermissionDenied, `Consul denied a write of ${key}: permission denied (check ipam.consul_token)`, `${kv.server}: ${what}`);
    }
    if (!/index is stale|exists/i.test(what)) throw new CniError(ErrorCode.KvFailure, `Consul failed a write of ${key} in ${allocationPrefix(pool)}`, `${kv.server}: ${what}`);
  }
  return false;
}
