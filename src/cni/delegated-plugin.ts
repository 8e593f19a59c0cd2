/**
 * The process around ipam-delegated and ipam-ds-static: the same shape as ./plugin.ts (which runs
 * ipam-da-consul's machines), for plugins whose result is whatever JSON object they choose to print.
 *
 * Read the environment and stdin, answer the "about" run and VERSION without loading anything else, run
 * the command, print the result or the CNI error on stdout, pick the exit code. Only this module (and
 * ./plugin.ts) touch stdout and the exit code.
 *
 * Also ipam-delegated's config codec: the chain's config is decoded here, at the boundary, like ./config.ts
 * decodes ipam-da-consul's.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { Milliseconds, nonEmptyArray } from './codecs';
import { invalidConfigError, problemText } from './decode-report';
import { readEnvironment, type CniEnvironment } from './environment';
import { sniffVersion } from './stdin';
import { CniError, ErrorCode, toCniError } from './errors';
import { checkVersion, fallbackVersion, supportedVersions, type CniVersion } from './versions';
import type { PluginIo } from './plugin';
import type { Log } from '../services/logger';

/** What differs between the executables run by this module. */
export interface DelegatedPluginOptions {
  readonly name: string;
  readonly version: string;
  /** The verbose flavour logs at debug level to this file. */
  readonly logFile?: string;
}

/**
 * How a command ended. `result` is printed as JSON; it is absent for GC and STATUS, which print nothing
 * on success (CNI spec 1.1.0).
 */
export type PluginOutcome =
  | { readonly type: 'ok'; readonly result?: object }
  | { readonly type: 'error'; readonly error: CniError; readonly cniVersion?: string };

/** Runs ADD, DEL, CHECK, GC or STATUS; never throws, failure is an outcome. */
export type CommandRunner = (env: CniEnvironment, stdin: string, log: Log) => Promise<PluginOutcome>;

/** Runs one invocation of a plugin and returns the exit code. Never throws. */
export async function runDelegatedPlugin(options: DelegatedPluginOptions, io: PluginIo, run: CommandRunner): Promise<number> {
  let stdin = '';
  let log: Log | undefined;
  try {
    const env = readEnvironment(io.env);
    if (env === undefined) {
      // Nomad fingerprints every executable in its CNI bin dir this way: exit 0 and print a semver version.
      io.writeStdout(`CNI ${options.name} plugin v${options.version} (CNI spec ${supportedVersions.join(', ')})\n`);
      return 0;
    }
    stdin = await io.readStdin();
    if (env.command === 'VERSION') return printVersion(stdin, io);

    const { createLog } = await import('../services/logger');
    log = createLog({ name: options.name, ...(options.logFile ? { file: options.logFile } : {}) });
    log.debug(`${options.name} v${options.version} ${env.command} container=${env.containerId || '-'} ifname=${env.ifname || '-'}`);
    const outcome = await run(env, stdin, log);
    if (outcome.type === 'ok') {
      log.debug(`${env.command} succeeded: ${outcome.result === undefined ? '(no output)' : JSON.stringify(outcome.result)}`);
      if (outcome.result !== undefined) io.writeStdout(`${JSON.stringify(outcome.result)}\n`);
      return 0;
    }
    log.error(`${env.command} failed: ${outcome.error.message}${outcome.error.details ? ` (${outcome.error.details})` : ''}`);
    io.writeStdout(`${JSON.stringify(outcome.error.toJSON(outcome.cniVersion ?? sniffVersion(stdin) ?? fallbackVersion))}\n`);
    return 1;
  } catch (caught) {
    const error = toCniError(caught);
    log?.error(`failed: ${error.message}${error.details ? ` (${error.details})` : ''}`);
    io.writeStdout(`${JSON.stringify(error.toJSON(sniffVersion(stdin) ?? fallbackVersion))}\n`);
    return 1;
  } finally {
    await log?.shutdown();
  }
}

/** VERSION: the versions this plugin speaks, in the version the runtime asked with. */
function printVersion(stdin: string, io: PluginIo): number {
  const asked = stdin.trim() === '' ? fallbackVersion : sniffVersion(stdin);
  if (asked === undefined) throw new CniError(ErrorCode.DecodingFailure, 'VERSION: stdin is not a JSON object with a cniVersion string');
  checkVersion(asked);
  io.writeStdout(`${JSON.stringify({ cniVersion: asked, supportedVersions })}\n`);
  return 0;
}


/** Parses stdin as a JSON object; fails with code 6 when it is empty, not JSON, or not an object. */
export function parseConfigObject(stdin: string): Record<string, unknown> {
  if (stdin.trim() === '') throw new CniError(ErrorCode.DecodingFailure, 'no network config on stdin', 'expected a JSON object');
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (error) {
    throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is not valid JSON', (error as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is not a JSON object');
  }
  return raw as Record<string, unknown>;
}

const pluginNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$/;

/**
 * A delegate's name: it is looked up as a file in each CNI_PATH directory, so it must be one plain file
 * name. No "/", no leading "." (no "..", no hidden files), nothing a shell or a path could read differently.
 */
const PluginName = new t.Type<string, string, unknown>(
  'a plugin file name (letters, digits, "_", "." or "-", starting with a letter or digit)',
  (u): u is string => typeof u === 'string' && pluginNamePattern.test(u),
  (u, c) => (typeof u === 'string' && pluginNamePattern.test(u) ? t.success(u) : t.failure(u, c)),
  t.identity,
);

/** The part of the network config ipam-delegated reads; every other key is passed to the delegates untouched. */
const DelegatedNetworkConfig = t.type(
  {
    cniVersion: t.string,
    ipam: t.intersection(
      [
        t.type({ delegates: nonEmptyArray(PluginName, 'a non-empty array of plugin names') }, 'an object'),
        t.partial({ delegate_timeout_ms: Milliseconds }),
      ],
      'an object',
    ),
  },
  'an object',
);

/** This plugin's own name: a chain that lists it would exec itself, with the same config, forever. */
export const delegatedPluginName = 'ipam-delegated';

/** Default time a delegate may take before it is killed: Nomad sets no timeout, so a hung delegate would block the allocation. */
export const defaultDelegateTimeoutMs = 60_000;

/** What ipam-delegated needs from stdin, checked, with the config itself kept whole for the delegates. */
export interface DelegatedConfig {
  readonly cniVersion: CniVersion;
  readonly delegates: readonly string[];
  readonly delegateTimeoutMs: number;
  /** The network config exactly as received: each delegate gets it, with only prevResult changed. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Parses ipam-delegated's stdin; every failure is a CniError (6 not JSON, 1 bad version, 7 bad ipam.delegates). */
export function parseDelegatedConfig(stdin: string): DelegatedConfig {
  const raw = parseConfigObject(stdin);
  if (typeof raw.cniVersion !== 'string') {
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: ${problemText({ path: 'cniVersion', expected: 'a CNI version string', actual: raw.cniVersion })}`);
  }
  const cniVersion = checkVersion(raw.cniVersion);
  const decoded = DelegatedNetworkConfig.decode(raw);
  if (isLeft(decoded)) {
    throw invalidConfigError(decoded.left, '');
  }
  const { delegates, delegate_timeout_ms } = decoded.right.ipam;
  if (delegates.includes(delegatedPluginName)) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: ipam.delegates lists ${delegatedPluginName} itself`,
      'it would run itself with the same config without end; list the selector and allocation delegates instead',
    );
  }
  return { cniVersion, delegates, delegateTimeoutMs: delegate_timeout_ms ?? defaultDelegateTimeoutMs, raw };
}
