/** Reaching Consul the way the plugin does: the same servers tried in the same order, the same client. */
import { createActor, toPromise } from 'xstate';
import type { ConsulKv, ConsulOptions } from '../services/consul-client';
import type { Log } from '../services/logger';
import { pickServerLogic } from '../services/pick-server';

/** The first server of `options.servers` that answers with a leader; fails naming each server and why. */
export function connect(options: ConsulOptions, log: Log): Promise<ConsulKv> {
  return toPromise(createActor(pickServerLogic, { input: { consul: options, log } }).start());
}
