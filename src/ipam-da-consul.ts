/**
 * Entry point of the ipam-da-consul executable (bundled into dist/ by scripts/build.mjs).
 * The verbose flavour is the same code built with IPAM_DA_CONSUL_FLAVOUR=verbose: it logs at debug level to a file.
 */
import { version } from '../package.json';
import { captureNoStackTraces, runPlugin } from './cni/plugin';
import { runCommandMachine } from './machines/run-command';
import { readProcessStdin } from './cni/stdin';
import { defaultVerboseLogFile } from './services/logger';

declare const IPAM_DA_CONSUL_FLAVOUR: string | undefined;
const verbose = typeof IPAM_DA_CONSUL_FLAVOUR !== 'undefined' && IPAM_DA_CONSUL_FLAVOUR === 'verbose';
// The log file can be moved (tests, hosts with another layout) without rebuilding.
const logFile = verbose ? process.env.IPAM_DA_CONSUL_LOG_FILE || defaultVerboseLogFile : undefined;

if (!verbose) captureNoStackTraces();

void runPlugin(
  { name: 'ipam-da-consul', version, ...(logFile ? { logFile } : {}) },
  { env: process.env, readStdin: readProcessStdin, writeStdout: (text) => process.stdout.write(text) },
  runCommandMachine,
).then(
  (code) => {
    // Everything this run started has finished (stdout to a pipe is written synchronously on Linux); exiting
    // now spares waiting for idle keep-alive sockets and the thread pool to wind down.
    process.exit(code);
  },
  (error: unknown) => {
    // runPlugin never throws; should it, the runtime still gets a CNI error and no stack trace.
    process.stdout.write(`${JSON.stringify({ cniVersion: '1.0.0', code: 109, msg: 'unexpected failure', details: String(error) })}\n`);
    process.exitCode = 1;
  },
);
