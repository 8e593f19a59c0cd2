/**
 * `pool list`: every pool under ipam/ with its size and use. One `?keys` listing finds the pools (keys
 * ipam/<name> with no further "/") and counts their allocation keys by name, then each pool key is read:
 * allocation values are never downloaded, so a large pool costs only its key names.
 */
import { canonicalIp } from '../cni/codecs';
import { CniError } from '../cni/errors';
import { oddityWarning, poolKey, readPoolDefinition } from '../services/kv-layout';
import type { Command } from './command';
import { describeRange, rangeJson } from './pool-read';
import type { AddressRange } from '../services/ip-math';
import { poolUsage, type PoolUsage } from './pool-size';
import { renderPrometheus } from './prometheus';
import { UsageError } from './cli-errors';
import { renderTable } from './table';

/** One row of `pool list --json`: a readable pool, or one whose key the plugin would refuse. */
export type PoolSummary =
  | {
      readonly name: string;
      readonly ranges: ReturnType<typeof rangeJson>[];
      readonly size: string;
      readonly allocated: number;
      readonly free: string;
      readonly usedPercent: number | null;
      /** What `pool set` would refuse about the key, served as the original serves it (see readPoolDefinition). */
      readonly oddities?: readonly string[];
    }
  | { readonly name: string; readonly error: string; readonly allocated: number };

/** Pool names and the addresses allocated in each (each once, whichever spelling its key has), from the key names under ipam/. */
export function poolsFromKeys(keys: readonly string[]): Map<string, string[]> {
  const pools = new Map<string, Set<string>>();
  for (const key of keys) {
    const match = /^ipam\/([^/]+)$/.exec(key);
    if (match) pools.set(match[1]!, pools.get(match[1]!) ?? new Set());
  }
  for (const key of keys) {
    const match = /^ipam\/([^/]+)\/(.+)$/.exec(key);
    const ip = match ? canonicalIp(match[2]!) : undefined;
    if (ip !== undefined) pools.get(match![1]!)?.add(ip);
  }
  return new Map([...pools].map(([name, taken]) => [name, [...taken]]));
}

/** A pool as read: its ranges and use, or why the plugin would refuse its key. */
type ReadPool =
  | { readonly name: string; readonly ranges: AddressRange[]; readonly usage: PoolUsage; readonly oddities: readonly string[] }
  | { readonly name: string; readonly error: string; readonly allocated: number };

const percent = (value: number | null): string => (value === null ? '-' : `${value.toFixed(2)}%`);

/** `consul-ipam pool list` */
export const poolListCommand: Command = {
  words: ['pool', 'list'],
  args: [],
  options: ['prometheus'],
  summary: 'every pool: size, allocated, free, % used',
  help: `Lists every pool under ipam/: its IP Ranges, its size (addresses ADD can hand out: rangeStart..rangeEnd
without the network, broadcast and gateway addresses), how many addresses are allocated, how many of the
size are free, and the share used. A pool whose key the plugin would refuse is listed with the reason; one it
serves though pool set would refuse it (host bits set, bounds outside the subnet, overlapping ranges) is
listed as the plugin serves it, with a warning naming what is odd.
With --json: an array of objects; size and free are decimal strings, as IPv6 pools exceed 2^53.

Options:
  --prometheus  print the figures in the Prometheus text format instead, for node_exporter's textfile
                collector: consul_ipam_pool_{size,allocated,free}_addresses{pool="NAME"} and
                consul_ipam_pool_valid (0 for a pool key the plugin refuses; it has no size or free)

Example:
  consul-ipam pool list --prometheus > /var/lib/node_exporter/consul_ipam.prom.$$ &&
    mv /var/lib/node_exporter/consul_ipam.prom.$$ /var/lib/node_exporter/consul_ipam.prom`,

  async run({ values, connect }) {
    if (values.prometheus && values.json) throw new UsageError('--prometheus and --json each choose the output format: use one of them');
    const kv = await connect();
    const pools = poolsFromKeys(await kv.keys('ipam/'));
    const names = [...pools.keys()].sort();
    const entries = await Promise.all(names.map((name) => kv.get(poolKey(name))));
    const read = names.flatMap((name, i): ReadPool[] => {
      const entry = entries[i];
      if (entry === undefined) return []; // deleted since the listing
      const taken = pools.get(name) ?? [];
      try {
        // As the plugin reads it: a pool it serves is listed with its figures, and what is odd about it as a warning.
        const { ranges, oddities } = readPoolDefinition(name, entry.value);
        return [{ name, ranges, usage: poolUsage(ranges, taken), oddities }];
      } catch (error) {
        return [{ name, error: error instanceof CniError ? error.message : String(error), allocated: taken.length }];
      }
    });

    const json: PoolSummary[] = read.map((pool) =>
      'error' in pool
        ? pool
        : {
            name: pool.name,
            ranges: pool.ranges.map(rangeJson),
            size: pool.usage.size.toString(),
            allocated: pool.usage.allocated,
            free: pool.usage.free.toString(),
            usedPercent: pool.usage.usedPercent,
            ...(pool.oddities.length === 0 ? {} : { oddities: pool.oddities }),
          },
    );
    const warnings = read.flatMap((pool) => ('error' in pool || pool.oddities.length === 0 ? [] : [oddityWarning(pool.name, pool.oddities)]));
    const columns = [
      { heading: 'POOL' },
      { heading: 'SIZE', right: true },
      { heading: 'ALLOCATED', right: true },
      { heading: 'FREE', right: true },
      { heading: 'USED', right: true },
      { heading: 'RANGES' },
    ];
    const rows = read.map((pool) =>
      'error' in pool
        ? [pool.name, '-', String(pool.allocated), '-', '-', `invalid: ${pool.error}`]
        : [
            pool.name,
            pool.usage.size.toString(),
            String(pool.usage.allocated),
            pool.usage.free.toString(),
            percent(pool.usage.usedPercent),
            pool.ranges.map(describeRange).join('; '),
          ],
    );
    if (values.prometheus) {
      const figures = read.map((pool) => ('error' in pool ? pool : { name: pool.name, allocated: pool.usage.allocated, size: pool.usage.size, free: pool.usage.free }));
      return { text: renderPrometheus(figures), json, warnings };
    }
    const text = read.length === 0 ? 'no pools under ipam/ (a token that may not read ipam/ sees none either)' : renderTable(columns, rows);
    return { text, json, warnings };
  },
};
