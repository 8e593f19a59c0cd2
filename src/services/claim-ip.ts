import { fromPromise } from 'xstate';
import type { Candidate } from './ip-math';
import type { ConsulKv } from './consul-client';
import { noteClaimed, rememberHeld, rememberLastReserved, unmarkClaiming } from './host-store';
import { allocationKey, belongsTo, parseAllocation, type Allocation } from './kv-layout';
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
 */
export const claimIpLogic = fromPromise<Claim, ClaimIpInput>(async ({ input }) => {
  const { kv, pool, candidate, mode, containerId, ifname, hostId, network, dataDir, log } = input;
  const key = allocationKey(pool.name, candidate.ip);
  const allocation: Allocation = { target: containerId, ifname, host: hostId, ...(network === undefined ? {} : { network }) };
  if (network === undefined) log.warn(`the network config has no valid name: GC will never release ${key}`);
  await rememberHeld(dataDir, pool.name, containerId, ifname, candidate.ip).catch((error: Error) =>
    log.warn(`cannot note ${candidate.ip} for ${containerId} under ${dataDir}: ${error.message}; a retried ADD may not find it`),
  );
  const requestsBefore = kv.requests;
  // chooseIp marked the address on this host; once Consul has answered, neighbours may look at it again. If the
  // write may have been applied, they must first learn that their reads of the pool may be out of date.
  const unmark = async (mayHaveWritten: boolean) => {
    if (mayHaveWritten) await noteClaimed(dataDir, pool.name).catch(() => undefined);
    await unmarkClaiming(dataDir, pool.name, candidate.ip).catch(() => undefined);
  };
  const written = await kv.put(key, JSON.stringify(allocation), mode === 'next' ? 0 : undefined).catch(async (error: unknown) => {
    await unmark(true);
    throw error;
  });
  const unmarked = unmark(written || kv.requests - requestsBefore > 1);
  let won = written;
  // A false answer to a write sent once means another writer holds the key. Only a write the client had to
  // resend (its first try may have been applied) can have lost to itself: read the key back then.
  if (!written && kv.requests - requestsBefore > 1) {
    const entry = await kv.get(key);
    won = entry !== undefined && belongsTo(parseAllocation(pool.name, entry.key, entry.value).allocation, containerId, ifname);
    log.debug(`cas=0 write of ${key} lost; the key ${won ? 'is ours after all' : 'belongs to another container'}`);
  }
  const hint =
    won && mode === 'next'
      ? rememberLastReserved(dataDir, pool.name, pool.identity, candidate.ip).catch((error: Error) =>
          log.warn(`cannot save the round-robin hint under ${dataDir}: ${error.message}`),
        )
      : undefined;
  await Promise.all([unmarked, hint]);
  return { won };
});
