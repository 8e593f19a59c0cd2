import { fromPromise } from 'xstate';
import { CniError, ErrorCode } from '../cni/errors';
import { connectConsul, gotOptions, type ConsulKv, type ConsulOptions } from './consul-client';
import type { Log } from './logger';

export interface PickServerInput {
  readonly consul: ConsulOptions;
  readonly log: Log;
}

/**
 * Runs after parsing: tries ipam.consul_servers in order and keeps the first that answers with a leader,
 * for every later request of this invocation. None does → code 11 (try again later), naming each server and why.
 */
export const pickServerLogic = fromPromise<ConsulKv, PickServerInput>(async ({ input: { consul, log } }) => {
  const options = gotOptions(consul);
  const reasons: string[] = [];
  for (const server of consul.servers) {
    const kv = await connectConsul(server, options, log);
    try {
      const leader = await kv.leader();
      if (leader !== '') {
        log.debug(`using Consul server ${server} (leader ${leader})`);
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
