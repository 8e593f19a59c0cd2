/** Reading one pool's allocations, and showing ranges, shared by the commands that need them. */
import { canonicalIp, KeySegment } from '../cni/codecs';
import { CniError } from '../cni/errors';
import type { ConsulKv, KvEntry } from '../services/consul-client';
import type { AddressRange } from '../services/ip-math';
import { allocationKey, allocationPrefix, parseAllocation, type Allocation } from '../services/kv-layout';
import { UsageError } from './cli-errors';
import { compareAddresses, rangeSize } from './pool-size';

/** A pool name as the plugin accepts it in prevResult.pools, so a pool made here is one the plugin can use. */
export function checkPoolName(name: string | undefined): string {
  if (name === undefined || name === '') throw new UsageError('the pool NAME is missing');
  if (!KeySegment.is(name)) throw new UsageError(`pool name ${JSON.stringify(name)} is not valid: expected ${KeySegment.name}`);
  return name;
}

/** A valid allocation key, with the index a cas delete must match. */
export interface AllocationEntry extends Allocation {
  readonly ip: string;
  readonly modifyIndex: number;
}

/** A key under ipam/<pool>/ that the plugin would refuse, and why. */
export interface InvalidEntry {
  readonly key: string;
  readonly error: string;
}

/** Everything under ipam/<pool>/, sorted by address. */
export interface PoolAllocations {
  readonly valid: readonly AllocationEntry[];
  readonly invalid: readonly InvalidEntry[];
  /** Addresses of every key named after one, in any spelling, even when its value is broken: the address is taken either way. Each once. */
  readonly taken: readonly string[];
}

/** The folder key ipam/<pool>/ that the seed suggests creating is not an allocation. */
const allocationEntries = (pool: string, entries: readonly KvEntry[]): KvEntry[] => entries.filter((entry) => entry.key !== allocationPrefix(pool));

/**
 * Sorts a pool's allocation entries into valid and invalid; nothing here throws on a broken key. A key naming an
 * address in another spelling is listed as invalid (its fix is `consul-ipam rekey`), but its address is taken:
 * the plugin treats it so.
 */
export function sortAllocations(pool: string, entries: readonly KvEntry[]): PoolAllocations {
  const valid: AllocationEntry[] = [];
  const invalid: InvalidEntry[] = [];
  const taken = new Set<string>();
  for (const entry of allocationEntries(pool, entries)) {
    const ip = canonicalIp(entry.key.slice(allocationPrefix(pool).length));
    if (ip !== undefined) taken.add(ip);
    try {
      const { allocation, canonical } = parseAllocation(pool, entry.key, entry.value);
      if (canonical) valid.push({ ip: ip!, ...allocation, modifyIndex: entry.modifyIndex });
      else invalid.push({ key: entry.key, error: `named after ${ip} in another spelling than its canonical key ${allocationKey(pool, ip!)}` });
    } catch (error) {
      invalid.push({ key: entry.key, error: error instanceof CniError ? error.message : String(error) });
    }
  }
  valid.sort((a, b) => compareAddresses(a.ip, b.ip));
  invalid.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { valid, invalid, taken: [...taken].sort(compareAddresses) };
}

/** Reads every key under ipam/<pool>/ (`?recurse` is textual, so the trailing slash keeps ipam/web2/ out). */
export async function readAllocations(kv: ConsulKv, pool: string): Promise<PoolAllocations> {
  return sortAllocations(pool, await kv.list(allocationPrefix(pool)));
}

/** "10.0.20.0/23 (10.0.21.100-10.0.21.150, gateway 10.0.20.1)", for the text outputs. */
export function describeRange(range: AddressRange): string {
  return `${range.subnet} (${range.start}-${range.end}${range.gateway ? `, gateway ${range.gateway}` : ''})`;
}

/** A range as --json shows it: the effective bounds (defaults filled in) and its size as a decimal string. */
export function rangeJson(range: AddressRange): { subnet: string; rangeStart: string; rangeEnd: string; gateway?: string; size: string } {
  return {
    subnet: range.subnet,
    rangeStart: range.start,
    rangeEnd: range.end,
    ...(range.gateway ? { gateway: range.gateway } : {}),
    size: rangeSize(range).toString(),
  };
}
