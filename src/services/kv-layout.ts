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
import { canonicalIp, ContainerId, InterfaceName, IpAddress, NetworkName, Subnet } from '../cni/codecs';
import { describeDecodeErrors, showValue, summarizeProblems } from '../cni/decode-report';
import { CniError, ErrorCode } from '../cni/errors';
import { normalizeRange, rangesOverlap, type AddressRange } from './ip-math';

export const poolKey = (pool: string): string => `ipam/${pool}`;
export const allocationPrefix = (pool: string): string => `ipam/${pool}/`;
export const allocationKey = (pool: string, ip: string): string => `ipam/${pool}/${ip}`;

const RangeObject = t.intersection(
  [t.type({ subnet: Subnet }, 'an IP Range object'), t.partial({ rangeStart: IpAddress, rangeEnd: IpAddress, gateway: IpAddress })],
  'an IP Range object',
);
const RangeList = t.refinement(t.array(RangeObject), (list) => list.length > 0, 'a non-empty JSON array of IP Range objects');

/** Parses and checks the value of ipam/<pool>. Errors name the pool, the field and the value. */
export function parsePoolDefinition(pool: string, value: string | null): AddressRange[] {
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
  const ranges = decoded.right.map((definition, index) => {
    try {
      return normalizeRange(definition);
    } catch (error) {
      throw new CniError(ErrorCode.InvalidPool, `pool key ${key} does not hold valid IP Ranges: ${key}[${index}]: ${(error as Error).message}`);
    }
  });
  ranges.forEach((a, i) =>
    ranges.slice(i + 1).forEach((b, j) => {
      if (rangesOverlap(a, b)) {
        throw new CniError(ErrorCode.InvalidPool, `pool key ${key} does not hold valid IP Ranges: ${key}[${i}] and ${key}[${i + 1 + j}] overlap`);
      }
    }),
  );
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

/** The address an allocation key is named after; a key not named after one in canonical form is an invalid Allocation. */
export function allocationIp(pool: string, key: string): string {
  const prefix = allocationPrefix(pool);
  const ip = key.startsWith(prefix) ? key.slice(prefix.length) : '';
  if (canonicalIp(ip) !== ip) {
    throw new CniError(ErrorCode.InvalidAllocation, `key ${key} in pool ${pool} is not named after an IP address in canonical form`);
  }
  return ip;
}

/** Parses an allocation key and its value; the key must end in a canonical address. */
export function parseAllocation(pool: string, key: string, value: string | null): { ip: string; allocation: Allocation } {
  const ip = allocationIp(pool, key);
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
    allocation: { target, ...(ifname === undefined ? {} : { ifname }), ...(host === undefined ? {} : { host }), ...(network === undefined ? {} : { network }) },
  };
}

/** Whether an allocation belongs to this container and interface. One written without ifname matches any interface. */
export function belongsTo(allocation: Allocation, containerId: string, ifname: string): boolean {
  return allocation.target === containerId && (allocation.ifname === undefined || allocation.ifname === ifname);
}
