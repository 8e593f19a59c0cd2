/**
 * The Consul KV layout, shared with every other implementation of ipam-da-consul. Do not change it.
 *
 *   ipam/<pool>        JSON array of IP Ranges {subnet, rangeStart?, rangeEnd?, gateway?}
 *   ipam/<pool>/<ip>   JSON Allocation {"target": "<CNI_CONTAINERID>"}, one key per allocated address
 *
 * We also write `ifname`, `host` and `network` beside `target`; other implementations read `target` and ignore them.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/Either';
import { canonicalIp, oldSpelling, ContainerId, InterfaceName, IpAddress, IpWithPrefix, NetworkName } from '../cni/codecs';
import { describeDecodeErrors, showValue, summarizeProblems } from '../cni/decode-report';
import { CniError, ErrorCode } from '../cni/errors';
import { normalizeRange, rangesOverlap, type AddressRange } from './ip-math';

export const poolKey = (pool: string): string => `ipam/${pool}`;
export const allocationPrefix = (pool: string): string => `ipam/${pool}/`;
export const allocationKey = (pool: string, ip: string): string => `ipam/${pool}/${ip}`;

/**
 * The key an address (canonical text) had under releases of this plugin before RFC 5952 keys, when its spelling
 * then differs from its key now (oldSpelling): an upgraded cluster may hold a live allocation there.
 */
export function oldAllocationKey(pool: string, ip: string): string | undefined {
  const old = oldSpelling(ip);
  return old === undefined ? undefined : allocationKey(pool, old);
}

const RangeObject = t.intersection(
  // Host bits are the lenient reading's to judge (normalizeRange): the original masks them.
  [t.type({ subnet: IpWithPrefix }, 'an IP Range object'), t.partial({ rangeStart: IpAddress, rangeEnd: IpAddress, gateway: IpAddress })],
  'an IP Range object',
);
const RangeList = t.array(RangeObject, 'a JSON array of IP Range objects');

/** A pool's ranges as served, and what about them the strict writer (`consul-ipam pool set`) would refuse. */
export interface PoolDefinition {
  readonly ranges: AddressRange[];
  /** Each oddity served as the original serves it: host bits, bounds or gateway outside the subnet, overlaps, no ranges. */
  readonly oddities: readonly string[];
}

/**
 * Reads the value of ipam/<pool> as the original does: host bits of a subnet are masked, rangeStart..rangeEnd
 * is cut to the subnet, a gateway outside the subnet is returned as given, overlapping ranges hand out each
 * address once, and `[]` is a pool with no address (ADD reports it full). Those are returned as `oddities`.
 * What the original could not read either is code 101 naming the pool, the field and the value.
 */
export function readPoolDefinition(pool: string, value: string | null): PoolDefinition {
  const key = poolKey(pool);
  let json: unknown;
  try {
    json = JSON.parse(value ?? '');
  } catch {
    throw new CniError(ErrorCode.InvalidPool, `pool key ${key} is not JSON`, `got ${showValue(value)}`);
  }
  const decoded = RangeList.decode(json);
  if (isLeft(decoded)) {
    const { first, details } = summarizeProblems(describeDecodeErrors(decoded.left, key));
    throw new CniError(ErrorCode.InvalidPool, `pool key ${key} does not hold valid IP Ranges: ${first}`, details);
  }
  const oddities: string[] = decoded.right.length === 0 ? ['it holds no IP Ranges, so it has no address to give'] : [];
  const ranges = decoded.right.map((definition, index) => {
    const noted: string[] = [];
    try {
      const range = normalizeRange({ ...definition, subnet: `${definition.subnet.ip}/${definition.subnet.prefix}` }, noted);
      oddities.push(...noted.map((why) => `${key}[${index}]: ${why}`));
      return range;
    } catch (error) {
      throw new CniError(ErrorCode.InvalidPool, `pool key ${key} does not hold valid IP Ranges: ${key}[${index}]: ${(error as Error).message}`);
    }
  });
  ranges.forEach((a, i) =>
    ranges.slice(i + 1).forEach((b, j) => {
      if (rangesOverlap(a, b)) oddities.push(`${key}[${i}] and ${key}[${i + 1 + j}] overlap (each address is handed out once)`);
    }),
  );
  return { ranges, oddities };
}

/** The one warning naming a pool key served leniently (readPoolDefinition's oddities): what the plugin logs and consul-ipam shows. */
export function oddityWarning(pool: string, oddities: readonly string[]): string {
  return `pool key ${poolKey(pool)} is served as the original serves it, though consul-ipam pool set would refuse it: ${oddities.join('; ')}`;
}

/** Strict: the ranges of a pool value only if nothing about them is odd (what `consul-ipam pool set` may write); else code 101. */
export function parsePoolDefinition(pool: string, value: string | null): AddressRange[] {
  const { ranges, oddities } = readPoolDefinition(pool, value);
  if (oddities.length > 0) {
    throw new CniError(ErrorCode.InvalidPool, `pool key ${poolKey(pool)} does not hold valid IP Ranges: ${oddities.join('; ')}`);
  }
  return ranges;
}

/**
 * An Allocation as stored; `ifname`, `host` and `network` are absent when another implementation (or an older
 * version of this one: `network` came last) wrote it.
 */
export interface Allocation {
  readonly target: string;
  readonly ifname?: string;
  readonly host?: string;
  /** The `name` of the network whose ADD wrote it: GC collects only its own network's allocations. */
  readonly network?: string;
}

// Read back from KV, which anyone allowed to write ipam/ may fill: target, ifname and network are decoded with
// the rules stdin's CNI_CONTAINERID, CNI_IFNAME and `name` obey, because they become paths under data_dir.
const AllocationObject = t.intersection(
  [t.type({ target: ContainerId }, 'an Allocation object'), t.partial({ ifname: InterfaceName, host: t.string, network: NetworkName })],
  'an Allocation object',
);

/** The address an allocation key names, in canonical text, and whether the key spells it so. */
export interface KeyAddress {
  readonly ip: string;
  /** False for a key in another spelling (our releases before RFC 5952 keys, a hand-made key): it holds the address all the same. */
  readonly canonical: boolean;
}

/**
 * The address an allocation key is named after, in any spelling that parses as one (`fd00:1:2:3:4:5::1` holds
 * fd00:1:2:3:4:5:0:1): one address is taken whichever way its key spells it. A key naming no address is an
 * invalid Allocation (102).
 */
export function keyAddress(pool: string, key: string): KeyAddress {
  const prefix = allocationPrefix(pool);
  const tail = key.startsWith(prefix) ? key.slice(prefix.length) : '';
  const ip = canonicalIp(tail);
  if (ip === undefined) throw new CniError(ErrorCode.InvalidAllocation, `key ${key} in pool ${pool} is not named after an IP address`);
  return { ip, canonical: ip === tail };
}

/** Parses an allocation key (any spelling of an address: see keyAddress) and its value. */
export function parseAllocation(pool: string, key: string, value: string | null): { ip: string; canonical: boolean; allocation: Allocation } {
  const { ip, canonical } = keyAddress(pool, key);
  let json: unknown;
  try {
    json = JSON.parse(value ?? '');
  } catch {
    throw new CniError(ErrorCode.InvalidAllocation, `key ${key} does not hold a valid Allocation: not JSON`, `got ${showValue(value)}`);
  }
  const decoded = AllocationObject.decode(json);
  if (isLeft(decoded)) {
    const { first } = summarizeProblems(describeDecodeErrors(decoded.left, ''));
    throw new CniError(ErrorCode.InvalidAllocation, `key ${key} does not hold a valid Allocation {"target": "<container id>", ...}: ${first}`, `got ${showValue(json)}`);
  }
  const { target, ifname, host, network } = decoded.right;
  return {
    ip,
    canonical,
    allocation: { target, ...(ifname === undefined ? {} : { ifname }), ...(host === undefined ? {} : { host }), ...(network === undefined ? {} : { network }) },
  };
}

/** Whether an allocation belongs to this container and interface. One written without ifname matches any interface. */
export function belongsTo(allocation: Allocation, containerId: string, ifname: string): boolean {
  return allocation.target === containerId && (allocation.ifname === undefined || allocation.ifname === ifname);
}
