/**
 * The process around every CNI executable of this package (ipam-da-consul, ipam-delegated, ipam-ds-static):
 * read the environment and stdin, run the command, print the result or the error on stdout, pick the exit
 * code. Only this module touches stdout and the exit code.
 *
 * Start-up time is the product (a runtime execs us for every container), so each command loads only what it
 * uses: the "about" run and VERSION load no machine, no HTTP client and no logger.
 */
import { readEnvironment, type CniEnvironment } from './environment';
import { CniError, ErrorCode, toCniError } from './errors';
import { fallbackVersion, supportedVersions, checkVersion, versionsFor } from './versions';
import { sniffVersion } from './stdin';

/** Re-exported for the other executables' entry points. */
export { readProcessStdin } from './stdin';
import type { Log } from '../services/logger';

/** What differs between the executables built from this code. */
export interface PluginOptions {
  readonly name: string;
  readonly version: string;
  /** The verbose flavour logs at debug level to this file. */
  readonly logFile?: string;
}

/** What the process gets and gives; the real process in production, a fake one in unit tests. */
export interface PluginIo {
  readonly env: NodeJS.ProcessEnv;
  readStdin(): Promise<string>;
  writeStdout(text: string): void;
}

/**
 * How a command ended. `result` is printed as JSON; it is absent for GC and STATUS, which print nothing on
 * success (CNI spec 1.1.0).
 */
export type PluginOutcome =
  | { readonly type: 'ok'; readonly result?: object }
  | { readonly type: 'error'; readonly error: CniError; readonly cniVersion?: string };

/** Runs ADD, DEL, CHECK, GC or STATUS for one executable; never throws, failure is an outcome. */
export type CommandRunner = (env: CniEnvironment, stdin: string, log: Log) => Promise<PluginOutcome>;

/**
 * For the standard flavour's processes: capture no stack traces. Nothing prints one (every failure reaches the
 * runtime as CNI error JSON), yet capturing costs every Error made, and got makes one for each 404 or 409 that
 * Consul answers an ADD's probes with (~2% of an ADD). The verbose flavour keeps them, for debugging.
 */
export function captureNoStackTraces(): void {
  Error.stackTraceLimit = 0;
}

/** Runs one invocation with the executable's command runner and returns the exit code. Never throws. */
export async function runPlugin(options: PluginOptions, io: PluginIo, run: CommandRunner): Promise<number> {
  let stdin = '';
  let log: Log | undefined;
  try {
    if (!io.env.CNI_COMMAND) {
      // Nomad fingerprints every executable in its CNI bin dir this way: exit 0 and print a semver version.
      io.writeStdout(`CNI ${options.name} plugin v${options.version} (CNI spec ${supportedVersions.join(', ')} and later 1.x)\n`);
      return 0;
    }
    // Stdin first, so that an error in the environment is printed in the config's cniVersion.
    stdin = await io.readStdin();
    const env = readEnvironment(io.env)!;
    if (env.command === 'VERSION') return printVersion(stdin, io);

    const { createLog } = await import('../services/logger');
    log = createLog({ name: options.name, ...(options.logFile ? { file: options.logFile } : {}) });
    log.debug(`${options.name} v${options.version} ${env.command} container=${env.containerId || '-'} ifname=${env.ifname || '-'}`);
    const output = await run(env, stdin, log);
    if (output.type === 'ok') {
      log.debug(`${env.command} succeeded: ${output.result === undefined ? '(no output)' : JSON.stringify(output.result)}`);
      if (output.result !== undefined) io.writeStdout(`${JSON.stringify(output.result)}\n`);
      return 0;
    }
    log.error(`${env.command} failed: ${output.error.message}${output.error.details ? ` (${output.error.details})` : ''}`);
    io.writeStdout(`${JSON.stringify(output.error.toJSON(output.cniVersion ?? sniffVersion(stdin) ?? fallbackVersion))}\n`);
    return 1;
  } catch (caught) {
    const error = toCniError(caught);
    try {
      log?.error(`failed: ${error.message}${error.details ? ` (${error.details})` : ''}`);
    } catch {
      // The logger itself may be what failed; the error still reaches the runtime on stdout.
    }
    io.writeStdout(`${JSON.stringify(error.toJSON(sniffVersion(stdin) ?? fallbackVersion))}\n`);
    return 1;
  } finally {
    await log?.shutdown().catch(() => undefined);
  }
}

/** VERSION: the versions this plugin speaks, in the version the runtime asked with. */
function printVersion(stdin: string, io: PluginIo): number {
  const asked = stdin.trim() === '' ? fallbackVersion : sniffVersion(stdin);
  if (asked === undefined) throw new CniError(ErrorCode.DecodingFailure, 'VERSION: stdin is not a JSON object with a cniVersion string');
  io.writeStdout(`${JSON.stringify({ cniVersion: asked, supportedVersions: versionsFor(checkVersion(asked)) })}\n`);
  return 0;
}

