import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { connectConsul, gotOptions, type ConsulKv, type ConsulOptions } from './consul-client';
import type { Log } from './logger';

export interface PickServerInput {
  readonly consul: ConsulOptions;
  readonly log: Log;
  /**
   * A key the command reads first anyway. Reading it proves a leader (Consul answers a default read with 500
   * when it has none) and the answer is kept for that first read: one request fewer than asking
   * /v1/status/leader. Without it, /v1/status/leader is asked.
   */
  readonly probeKey?: string;
}

/**
 * Runs after parsing: tries ipam.consul_servers in order and keeps the first that answers with a leader,
 * for every later request of this invocation. None does → code 11 (try again later), naming each server and why.
 */
export const pickServerLogic = fromPromise<ConsulKv, PickServerInput>(async ({ input: { consul, log, probeKey } }) => {
  const options = gotOptions(consul);
  const reasons: string[] = [];
  for (const server of consul.servers) {
    const kv = await connectConsul(server, options, log);
    try {
      const leader = probeKey === undefined ? await kv.leader() : await probeRead(kv, probeKey);
      if (leader !== '') {
        log.debug(`using Consul server ${server} (${probeKey === undefined ? `leader ${leader}` : `it answered a read of ${probeKey}`})`);
        return kv;
      }
      reasons.push(`${server}: no cluster leader`);
    } catch (error) {
      reasons.push(error instanceof CniError ? error.details || error.message : `${server}: ${String(error)}`);
    }
    log.warn(`Consul server ${server} is not usable: ${reasons[reasons.length - 1]}`);
  }
  throw new CniError(ErrorCode.TryAgainLater, 'no Consul server could be reached', reasons.join('; '));
});

/**
 * Reads the probe key; a server that answers at all (even 403, which the command's own read reports
 * properly) has a leader. Transport failures and 5xx move on to the next server.
 */
async function probeRead(kv: ConsulKv, key: string): Promise<string> {
  try {
    await kv.get(key, { retry: false, keep: true });
  } catch (error) {
    if (error instanceof CniError && error.code !== ErrorCode.TryAgainLater) return 'answered';
    throw error;
  }
  return 'answered';
}
