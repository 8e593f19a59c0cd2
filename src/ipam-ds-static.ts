/**
 * Entry point of the ipam-ds-static executable: the pool selector delegate. It returns `ipam.pools` from
 * the network config as `pools`, for the allocation delegate after it (on ADD narrowed and ordered by
 * `CNI_ARGS` `IPAM_POOL`), and copies `prevResult.ips` through so that DEL and CHECK reach the allocator with
 * the addresses to release or verify. As the original (https://github.com/passcod/cni-plugins/tree/main/ipam-ds-static)
 * on ADD, DEL and CHECK, and on GC (CNI 1.1, which the original predates): the allocator collects only in the
 * pools named, so a selector that named none would leave GC nothing to do. ipam-delegated passes the output on
 * and prints nothing for GC. The lifecycle is src/machines/ds-static-command.machine.ts.
 */
import { version } from '../package.json';
import { captureNoStackTraces, readProcessStdin, runPlugin, type PluginOutcome } from './cni/plugin';

declare const IPAM_DA_CONSUL_FLAVOUR: string | undefined;
const name = 'ipam-ds-static';
const verbose = typeof IPAM_DA_CONSUL_FLAVOUR !== 'undefined' && IPAM_DA_CONSUL_FLAVOUR === 'verbose';
const logFile = verbose ? process.env.IPAM_DS_STATIC_LOG_FILE || `/var/log/cni/${name}.log` : undefined;

if (!verbose) captureNoStackTraces();

void runPlugin(
  { name, version, ...(logFile ? { logFile } : {}) },
  { env: process.env, readStdin: readProcessStdin, writeStdout: (text) => process.stdout.write(text) },
  async (env, stdin, log): Promise<PluginOutcome> => {
    // STATUS has nothing to wait for: the selector holds no state.
    if (env.command === 'STATUS') return { type: 'ok' };
    // Loaded only for a real command: the "about" run and VERSION stay fast (Nomad allows 3 s).
    const [{ createActor, toPromise }, { dsStaticCommandMachine }] = await Promise.all([import('xstate'), import('./machines/ds-static-command.machine')]);
    const actor = createActor(dsStaticCommandMachine, { input: { env, stdin, log } });
    actor.subscribe({
      next: (snapshot) => log.debug(`${dsStaticCommandMachine.id}: ${JSON.stringify(snapshot.value)}`),
      error: () => undefined, // toPromise below reports it
    });
    actor.start();
    return toPromise(actor);
  },
).then((code) => {
  process.exitCode = code;
});
