/**
 * Entry point of the ipam-ds-static executable: the pool selector delegate. It returns `ipam.pools` from
 * the network config as `pools`, for the allocation delegate after it, and copies `prevResult.ips` through
 * so that DEL and CHECK reach the allocator with the addresses to release or verify. The same on ADD, DEL
 * and CHECK, as the original (https://github.com/passcod/cni-plugins/tree/main/ipam-ds-static), and on GC
 * (CNI 1.1, which the original predates): the allocator collects only in the pools named, so a selector that
 * named none would leave GC nothing to do. ipam-delegated passes the output on and prints nothing for GC.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { version } from '../package.json';
import { parseConfigObject, readVersion } from './cni/config-object';
import { invalidConfigError } from './cni/decode-report';
import { toCniError } from './cni/errors';
import { readProcessStdin, runPlugin, type PluginOutcome } from './cni/plugin';
import { Pools, requestedIpOf } from './cni/pool';

declare const IPAM_DA_CONSUL_FLAVOUR: string | undefined;
const name = 'ipam-ds-static';
const verbose = typeof IPAM_DA_CONSUL_FLAVOUR !== 'undefined' && IPAM_DA_CONSUL_FLAVOUR === 'verbose';
const logFile = verbose ? process.env.IPAM_DS_STATIC_LOG_FILE || `/var/log/cni/${name}.log` : undefined;

const StaticConfig = t.type(
  { ipam: t.type({ pools: Pools }, 'an object') },
  'an object',
);

/** The selector's result: an IPAM result with no addresses of its own, and the pools. */
interface SelectorResult {
  readonly cniVersion: string;
  readonly ips: readonly unknown[];
  readonly routes: readonly [];
  readonly dns: Record<string, never>;
  readonly pools: readonly unknown[];
}

/** ADD, DEL, CHECK and GC alike: decode ipam.pools, copy prevResult.ips through. */
function selectPools(stdin: string): SelectorResult {
  const raw = parseConfigObject(stdin);
  const cniVersion = readVersion(raw);
  const decoded = StaticConfig.decode(raw);
  if (isLeft(decoded)) {
    throw invalidConfigError(decoded.left, '');
  }
  decoded.right.ipam.pools.forEach((pool, index) => requestedIpOf(pool, `ipam.pools[${index}]`));
  const prevResult = raw.prevResult as { ips?: unknown } | undefined;
  const ips = typeof prevResult === 'object' && prevResult !== null && Array.isArray(prevResult.ips) ? prevResult.ips : [];
  // The pools are passed on as written, validated but not rewritten, as the original passes them.
  return { cniVersion, ips, routes: [], dns: {}, pools: (raw.ipam as { pools: unknown[] }).pools };
}

void runPlugin(
  { name, version, ...(logFile ? { logFile } : {}) },
  { env: process.env, readStdin: readProcessStdin, writeStdout: (text) => process.stdout.write(text) },
  async (env, stdin): Promise<PluginOutcome> => {
    // STATUS has nothing to wait for: the selector holds no state. GC gets the pools, for the allocator after it.
    if (env.command === 'STATUS') return { type: 'ok' };
    try {
      return { type: 'ok', result: selectPools(stdin) };
    } catch (error) {
      return { type: 'error', error: toCniError(error) };
    }
  },
).then((code) => {
  process.exitCode = code;
});
