/**
 * Entry point of the ipam-delegated executable: the meta IPAM plugin that runs the delegates of
 * ipam.delegates (a pool selector, then an allocator such as ipam-da-consul) and returns the last result.
 * The verbose flavour is the same code built with IPAM_DA_CONSUL_FLAVOUR=verbose: it logs at debug level to a file.
 */
import { version } from '../package.json';
import { captureNoStackTraces, readProcessStdin, runPlugin } from './cni/plugin';

declare const IPAM_DA_CONSUL_FLAVOUR: string | undefined;
const name = 'ipam-delegated';
const verbose = typeof IPAM_DA_CONSUL_FLAVOUR !== 'undefined' && IPAM_DA_CONSUL_FLAVOUR === 'verbose';
// The log file can be moved (tests, hosts with another layout) without rebuilding.
const logFile = verbose ? process.env.IPAM_DELEGATED_LOG_FILE || `/var/log/cni/${name}.log` : undefined;

if (!verbose) captureNoStackTraces();

void runPlugin(
  { name, version, ...(logFile ? { logFile } : {}) },
  { env: process.env, readStdin: readProcessStdin, writeStdout: (text) => process.stdout.write(text) },
  async (env, stdin, log) => {
    // Loaded only for a real command: the "about" run and VERSION stay fast (Nomad allows 3 s).
    const [{ createActor, toPromise }, { delegatedCommandMachine }] = await Promise.all([
      import('xstate'),
      import('./machines/delegated-command.machine'),
    ]);
    const actor = createActor(delegatedCommandMachine, { input: { env, stdin, log, processEnv: process.env } });
    actor.subscribe({
      next: (snapshot) => log.debug(`${delegatedCommandMachine.id}: ${JSON.stringify(snapshot.value)} (delegate #${snapshot.context.index + 1})`),
      error: () => undefined, // toPromise below reports it
    });
    actor.start();
    return toPromise(actor);
  },
).then((code) => {
  process.exitCode = code;
});
