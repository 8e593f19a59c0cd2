import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { connectConsul, gotOptions, transientRetryDelay, type ConsulKv, type ConsulOptions } from './consul-client';
import type { Log } from './logger';

export interface PickServerInput {
  readonly consul: ConsulOptions;
  readonly log: Log;
  /**
   * A key the command reads first anyway (ADD and CHECK: the pool definition; DEL: the runtime's first
   * address). It is read with ?stale, which every server answers at once from its own state along with whether
   * it knows a leader, and an answer with a value is kept for the command's own first read: one request fewer
   * than asking /v1/status/leader first. The commands check what a stale answer could get wrong (see DEL's
   * findAllocations and releaseAllocations). Without it (GC, STATUS), /v1/status/leader is asked.
   */
  readonly probeKey?: string;
}

/**
 * Runs after parsing: tries ipam.consul_servers in order and keeps the first that answers as Consul does
 * (with its headers) and with a leader, for every later request of this invocation; a server that answers
 * otherwise (another service on that port) is passed over. When a pass finds servers up but none ready (an
 * election, or a server refusing this host more connections), it waits and tries again within about 3 s.
 * None usable → code 11 (try again later), naming each server and why.
 */
export const pickServerLogic = fromPromise<ConsulKv, PickServerInput>(async ({ input: { consul, log, probeKey } }) => {
  const options = gotOptions(consul);
  for (let pass = 1; ; pass++) {
    const reasons: string[] = [];
    let busy = false;
    for (const [index, server] of consul.servers.entries()) {
      // The servers listed after this one, then those before it, take over if it goes away mid-invocation.
      const fallbacks = [...consul.servers.slice(index + 1), ...consul.servers.slice(0, index)];
      const kv = await connectConsul(server, options, log, fallbacks);
      try {
        const leader = probeKey === undefined ? await kv.leader() : await probeRead(kv, probeKey);
        if (leader !== '') {
          log.debug(`using Consul server ${server} (${probeKey === undefined ? `leader ${leader}` : `it knows a leader and answered a read of ${probeKey}`})`);
          return kv;
        }
        reasons.push(`${server}: no cluster leader`);
        busy = true;
      } catch (error) {
        const reason = error instanceof CniError ? error.details || error.message : `${server}: ${String(error)}`;
        reasons.push(reason);
        // A server that answers 5xx or knows no leader is up: a leader may be elected in a moment. One that
        // answers 429 or closes the connection at once (Consul 1.8 over limits.http_max_conns_per_client) is
        // up and busy: this host's other plugin processes are done with it in a moment.
        busy ||= /no cluster leader|answered (5\d\d|429)|ECONNRESET/i.test(reason);
      }
      log.warn(`Consul server ${server} is not usable: ${reasons[reasons.length - 1]}`);
    }
    const delay = busy ? transientRetryDelay(pass) : 0;
    if (delay === 0) throw new CniError(ErrorCode.TryAgainLater, 'no Consul server could be reached', reasons.join('; '));
    log.warn(`no Consul server is ready yet (no leader, or busy); retrying in ${delay} ms`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
});

/**
 * The servers with `suspect` moved last: the one a one-request claim or release could not talk to (take-next.ts,
 * release-noted.ts), so that the full way does not wait on it first again.
 */
export function withSuspectLast(consul: ConsulOptions, suspect: string | undefined): ConsulOptions {
  if (suspect === undefined || !consul.servers.includes(suspect)) return consul;
  return { ...consul, servers: [...consul.servers.filter((server) => server !== suspect), suspect] };
}

/**
 * Reads the probe key; a server that answers as Consul at all (even 403, which the command's own read
 * reports properly) has a leader. Transport failures, 5xx, 429 and answers that are not Consul's (all code
 * 11) move on to the next server.
 */
async function probeRead(kv: ConsulKv, key: string): Promise<string> {
  try {
    await kv.get(key, { retry: false, probe: true });
  } catch (error) {
    if (error instanceof CniError && error.code !== ErrorCode.TryAgainLater) return 'answered';
    throw error;
  }
  return 'answered';
}
