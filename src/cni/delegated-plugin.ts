/**
 * ipam-delegated's config codec, and the stdin parsing it shares with ipam-ds-static: the chain's config is
 * decoded here, at the boundary, like ./config.ts decodes ipam-da-consul's. Both run in ./plugin.ts's runner.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { Milliseconds, nonEmptyArray } from './codecs';
import { parseConfigObject, readVersion } from './config-object';
import { invalidConfigError } from './decode-report';
import { CniError, ErrorCode } from './errors';
import type { CniVersion } from './versions';

const pluginNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$/;
// A path: no control character (no NUL, no newline), as an operator writes one in a network config.
const pluginPathPattern = /^[^\u0000-\u001f\u007f]{1,4096}$/;

/** Whether a delegate is named by a path (it holds a "/"), which is run from that path, as the original does. */
export const isPluginPath = (name: string): boolean => name.includes('/');

/**
 * A delegate: a plain file name, looked up in each CNI_PATH directory (no leading ".", so no ".." nor hidden
 * files), or a path holding a "/", run from that path (relative to the working directory), as the original's
 * ipam-delegated does (`which_in`): existing configs name delegates that way.
 */
const PluginName = new t.Type<string, string, unknown>(
  'a plugin file name (letters, digits, "_", "." or "-", starting with a letter or digit) or a path to one',
  (u): u is string => typeof u === 'string' && (pluginNamePattern.test(u) || (isPluginPath(u) && pluginPathPattern.test(u))),
  (u, c) => (typeof u === 'string' && (pluginNamePattern.test(u) || (isPluginPath(u) && pluginPathPattern.test(u))) ? t.success(u) : t.failure(u, c)),
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
  const cniVersion = readVersion(raw);
  const decoded = DelegatedNetworkConfig.decode(raw);
  if (isLeft(decoded)) {
    throw invalidConfigError(decoded.left, '');
  }
  const { delegates, delegate_timeout_ms } = decoded.right.ipam;
  if (delegates.some((name) => name === delegatedPluginName || (isPluginPath(name) && name.split('/').pop() === delegatedPluginName))) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: ipam.delegates lists ${delegatedPluginName} itself`,
      'it would run itself with the same config without end; list the selector and allocation delegates instead',
    );
  }
  return { cniVersion, delegates, delegateTimeoutMs: delegate_timeout_ms ?? defaultDelegateTimeoutMs, raw };
}
