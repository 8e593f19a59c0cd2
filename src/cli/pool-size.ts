/**
 * How many addresses a pool can hand out automatically, and how many of those are taken. BigInt throughout:
 * an IPv6 /64 holds 2^64 addresses, far past Number's exact integers.
 */
import * as ip6addr from 'ip6addr';
import { canonicalIp } from '../cni/codecs';
import { addressValue, isReserved, rangeAllocating, type AddressRange } from '../services/ip-math';

export { addressValue };

/** Orders addresses as numbers, IPv4 before IPv6 ("10.0.21.99" before "10.0.21.100"). */
export function compareAddresses(a: string, b: string): number {
  const family = Number(a.includes(':')) - Number(b.includes(':'));
  if (family !== 0) return family;
  const [x, y] = [addressValue(a), addressValue(b)];
  return x < y ? -1 : x > y ? 1 : 0;
}

const textOf = (addr: ip6addr.Addr): string => canonicalIp(addr.toString())!;

/**
 * Addresses of rangeStart..rangeEnd that ADD may hand out: all of them but the network address, the IPv4
 * broadcast address and the gateway (the same isReserved the plugin skips), each counted once.
 */
export function rangeSize(range: AddressRange): bigint {
  const cidr = ip6addr.createCIDR(range.subnet);
  const special = [textOf(cidr.address()), ...(range.family === 4 ? [textOf(cidr.broadcast())] : []), ...(range.gateway ? [range.gateway] : [])];
  const [start, end] = [addressValue(range.start), addressValue(range.end)];
  const skipped = new Set(
    special.filter((ip) => {
      const value = addressValue(ip);
      return start <= value && value <= end && isReserved(range, ip);
    }),
  );
  return end - start + 1n - BigInt(skipped.size);
}

/** A pool's size: its ranges never overlap, so their sizes add up. */
export function poolSize(ranges: readonly AddressRange[]): bigint {
  return ranges.reduce((sum, range) => sum + rangeSize(range), 0n);
}

/** Whether an allocated address is one of those counted by poolSize (a static IP outside rangeStart..rangeEnd is not). */
export function countsAgainstSize(ranges: readonly AddressRange[], ip: string): boolean {
  const range = rangeAllocating(ranges, ip);
  return range !== undefined && !isReserved(range, ip);
}

/** How full a pool is. */
export interface PoolUsage {
  /** Addresses ADD may hand out. */
  readonly size: bigint;
  /** Allocation keys named after an address, wherever the address lies. */
  readonly allocated: number;
  /** Addresses of `size` not allocated yet. */
  readonly free: bigint;
  /** Share of `size` allocated, in percent with two decimals (rounded down); null for an empty pool. */
  readonly usedPercent: number | null;
}

/** The usage of a pool from its ranges and the addresses its allocation keys are named after. */
export function poolUsage(ranges: readonly AddressRange[], allocatedIps: readonly string[]): PoolUsage {
  const size = poolSize(ranges);
  const taken = BigInt(new Set(allocatedIps.filter((ip) => countsAgainstSize(ranges, ip))).size);
  return {
    size,
    allocated: allocatedIps.length,
    free: size - taken,
    usedPercent: size === 0n ? null : Number((taken * 10000n) / size) / 100,
  };
}
