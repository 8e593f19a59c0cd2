/**
 * Address arithmetic over ip6addr: pure functions, table-tested in test/unit/ip-math.test.ts.
 * Addresses travel as canonical text (see canonicalIp) so that one address is always one Consul key.
 */
import * as ip6addr from 'ip6addr';
import { canonicalIp, formatIp } from '../cni/codecs';

/** An IP Range of a pool, checked and with its defaults filled in. */
export interface AddressRange {
  /** Canonical CIDR, e.g. "10.0.20.0/23". */
  readonly subnet: string;
  readonly prefix: number;
  readonly family: 4 | 6;
  /** First and last address handed out automatically (inclusive). */
  readonly start: string;
  readonly end: string;
  readonly gateway?: string;
}

/** The IP Range object as it is stored in the pool key (the host-local format). */
export interface RangeDefinition {
  readonly subnet: string;
  readonly rangeStart?: string;
  readonly rangeEnd?: string;
  readonly gateway?: string;
}

const text = formatIp;

/**
 * Checks a range definition and fills in its defaults, as host-local does: rangeStart defaults to the
 * first address after the network address, rangeEnd to the last before the IPv4 broadcast address.
 *
 * Strict (no `served` list: what `consul-ipam pool set` writes), anything odd throws an Error whose message
 * says what is wrong. Lenient (a `served` list: what the plugin reads), it serves what the original serves and
 * notes each oddity in `served`: host bits of the subnet are masked, rangeStart..rangeEnd is cut to the
 * subnet (the original walks the subnet's addresses and keeps those between the bounds), and a gateway
 * outside the subnet is returned as given. A family mix-up, start after end, or bounds that leave no address
 * of the subnet throw either way.
 */
export function normalizeRange(definition: RangeDefinition, served?: string[]): AddressRange {
  const oddity = (why: string): void => {
    if (served === undefined) throw new Error(why);
    served.push(why);
  };
  const cidr = ip6addr.createCIDR(definition.subnet);
  const prefix = cidr.prefixLength();
  const kind = cidr.address().kind();
  const family = kind === 'ipv4' ? 4 : 6;
  const subnet = `${text(cidr.address())}/${prefix}`;
  const [given] = definition.subnet.split('/');
  if (canonicalIp(given ?? '') !== text(cidr.address())) oddity(`subnet ${definition.subnet} has host bits set: did you mean ${subnet}?`);
  const address = (name: string, value: string): string => {
    const ip = canonicalIp(value);
    if (ip === undefined || ip6addr.parse(ip).kind() !== kind || (ip.includes(':') ? 6 : 4) !== family) {
      throw new Error(`${name} ${value} is not an address of subnet ${subnet}`);
    }
    if (!cidr.contains(ip)) oddity(`${name} ${value} is not an address of subnet ${subnet}`);
    return ip;
  };
  const first = text(cidr.first());
  const last = text(cidr.last());
  const startGiven = definition.rangeStart === undefined ? first : address('rangeStart', definition.rangeStart);
  const endGiven = definition.rangeEnd === undefined ? last : address('rangeEnd', definition.rangeEnd);
  if (ip6addr.compare(startGiven, last) > 0 || ip6addr.compare(endGiven, first) < 0) {
    throw new Error(`rangeStart..rangeEnd ${startGiven}-${endGiven} holds no address of subnet ${subnet}`);
  }
  if (ip6addr.compare(startGiven, endGiven) > 0) throw new Error(`rangeStart ${startGiven} comes after rangeEnd ${endGiven}`);
  const start = ip6addr.compare(startGiven, first) < 0 ? first : startGiven;
  const end = ip6addr.compare(endGiven, last) > 0 ? last : endGiven;
  const gateway = definition.gateway === undefined ? undefined : address('gateway', definition.gateway);
  const range = { subnet, prefix, family, start, end } as const;
  return gateway === undefined ? range : { ...range, gateway };
}

/**
 * What every candidate is checked against, worked out once per range: ADD checks tens of candidates, and
 * ip6addr parses an address's text anew at each call (~1 ms of every ADD before this was kept).
 */
interface RangeFacts {
  readonly cidr: ip6addr.CIDR;
  /** An IPv4 range's subnet as values (first and last address), so that membership is two comparisons. */
  readonly subnetValues?: { readonly first: number; readonly last: number };
  readonly network: string;
  /** The IPv4 broadcast address; none for IPv6 and for /31 and /32. */
  readonly broadcast?: string;
  readonly startValue: bigint;
  readonly endValue: bigint;
  /** How many positions rangeStart..rangeEnd holds. */
  readonly size: bigint;
}

const factsOfRange = new WeakMap<AddressRange, RangeFacts>();

function factsOf(range: AddressRange): RangeFacts {
  let facts = factsOfRange.get(range);
  if (facts === undefined) {
    const cidr = ip6addr.createCIDR(range.subnet);
    const broadcast = range.family === 4 && range.prefix < 31 ? text(cidr.broadcast()!) : undefined;
    const startValue = addressValue(range.start);
    const endValue = addressValue(range.end);
    const network = text(cidr.address());
    const first = range.family === 4 ? ipv4Value(network) : undefined;
    const subnetValues = first === undefined ? undefined : { first, last: first + 2 ** (32 - range.prefix) - 1 };
    facts = { cidr, ...(subnetValues ? { subnetValues } : {}), network, ...(broadcast ? { broadcast } : {}), startValue, endValue, size: endValue - startValue + 1n };
    factsOfRange.set(range, facts);
  }
  return facts;
}

/** Whether two ranges share an address (a pool must not list one address twice). */
export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.family === b.family && factsOf(a).startValue <= factsOf(b).endValue && factsOf(b).startValue <= factsOf(a).endValue;
}

/** The network address, the IPv4 broadcast address and the gateway are never given to a container. */
export function isReserved(range: AddressRange, ip: string): boolean {
  if (ip === range.gateway) return true;
  const facts = factsOf(range);
  if (ip === facts.network) return range.prefix < (range.family === 4 ? 31 : 127);
  return ip === facts.broadcast;
}

/** The range whose subnet holds ip (static IPs may lie outside rangeStart..rangeEnd). */
export function rangeHolding(ranges: readonly AddressRange[], ip: string): AddressRange | undefined {
  // The family is the text's: ip6addr reads an IPv4-mapped IPv6 address as IPv4.
  const v4 = ipv4Value(ip);
  return ranges.find((range) => {
    if (familyOf(ip) !== String(range.family)) return false;
    const { cidr, subnetValues } = factsOf(range);
    return v4 !== undefined && subnetValues !== undefined ? subnetValues.first <= v4 && v4 <= subnetValues.last : cidr.contains(ip);
  });
}

/**
 * The value of an IPv4 address in canonical dotted-quad text (no leading zeros), undefined for any other text.
 * A storm's ADD walks, marks and places hundreds of candidates; ip6addr parses each text anew (and V8 ends up
 * optimising its code in a process that lives 100 ms); here the four groups of digits are read directly. Other
 * spellings go through ip6addr as before.
 */
function ipv4Value(ip: string): number | undefined {
  const match = ipv4Canonical.exec(ip);
  if (match === null) return undefined;
  const [a, b, c, d] = [match[1], match[2], match[3], match[4]].map(Number) as [number, number, number, number];
  return a > 255 || b > 255 || c > 255 || d > 255 ? undefined : ((a * 256 + b) * 256 + c) * 256 + d;
}

const ipv4Canonical = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** The canonical text of an IPv4 address's value (the inverse of ipv4Value). */
function ipv4Text(value: number): string {
  return `${Math.floor(value / 2 ** 24)}.${Math.floor(value / 2 ** 16) % 256}.${Math.floor(value / 256) % 256}.${value % 256}`;
}

/** The range whose rangeStart..rangeEnd holds ip. */
export function rangeAllocating(ranges: readonly AddressRange[], ip: string): AddressRange | undefined {
  const holding = ranges.filter((range) => rangeHolding([range], ip) !== undefined);
  if (holding.length === 0) return undefined;
  const value = addressValue(ip);
  return holding.find((range) => factsOf(range).startValue <= value && value <= factsOf(range).endValue);
}

/** One candidate address and the range it belongs to. */
export interface Candidate {
  readonly ip: string;
  readonly range: AddressRange;
}

/**
 * Every allocatable address in round-robin order, as host-local walks them: starting after `after`
 * (the last address this host handed out), to the end of the ranges, then wrapping to the first range's
 * start, ending with `after` itself. Without a usable `after`, from the first range's start.
 * Lazy: a /48 is never enumerated, callers take only what they need.
 */
export function* candidatesAfter(ranges: readonly AddressRange[], after?: string): Generator<Candidate> {
  if (ranges.length === 0) return;
  // Overlapping ranges (served as the original serves them): each address is yielded once, by the first
  // range that allocates it, so ADD never tries one address twice nor counts a pool full early.
  const overlapping = ranges.some((a, i) => ranges.slice(i + 1).some((b) => rangesOverlap(a, b)));
  const owns = (range: AddressRange, ip: string): boolean => !overlapping || rangeAllocating(ranges, ip) === range;
  const afterRange = after === undefined ? undefined : rangeAllocating(ranges, after);
  const first = afterRange === undefined ? 0 : ranges.indexOf(afterRange);
  for (let step = 0; step <= ranges.length; step++) {
    const range = ranges[(first + step) % ranges.length]!;
    const isFirst = step === 0;
    const isWrap = step === ranges.length;
    if (isWrap && afterRange === undefined) return;
    if (range.family === 4) {
      // By value: the text of each candidate is made once, without ip6addr (see ipv4Value).
      const from = Number(isFirst && afterRange !== undefined ? addressValue(after!) + 1n : factsOf(range).startValue);
      const stop = Number(isWrap ? addressValue(after!) : factsOf(range).endValue);
      for (let value = from; value <= stop; value++) {
        const ip = ipv4Text(value);
        if (!isReserved(range, ip) && owns(range, ip)) yield { ip, range };
      }
      continue;
    }
    let addr: ip6addr.Addr | null = ip6addr.parse(isFirst && afterRange !== undefined ? after! : range.start);
    if (isFirst && afterRange !== undefined) addr = addr.offset(1);
    const stop = ip6addr.parse(isWrap ? after! : range.end);
    while (addr !== null && addr.compare(stop) <= 0) {
      const ip = text(addr);
      if (!isReserved(range, ip) && owns(range, ip)) yield { ip, range };
      addr = addr.offset(1);
    }
  }
}

/** The address as an unsigned integer (32 bits for IPv4, 128 for IPv6), for counting, sorting and offsets. */
export function addressValue(ip: string): bigint {
  const v4 = ipv4Value(ip);
  if (v4 !== undefined) return BigInt(v4);
  const addr = ip6addr.parse(ip);
  if (addr.kind() === 'ipv4') return addr.toString({ format: 'v4' }).split('.').reduce((value, octet) => value * 256n + BigInt(octet), 0n);
  return BigInt(`0x${addr.toString({ format: 'v6', zeroElide: false, zeroPad: true }).replace(/:/g, '')}`);
}

/** The canonical text of an address of the given family from its value (the inverse of addressValue). */
function addressOfValue(value: bigint, family: 4 | 6): string {
  if (family === 4) return ipv4Text(Number(value));
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((value >> shift) & 0xffffn).toString(16));
  return text(ip6addr.parse(groups.join(':')));
}

/**
 * Positions in a pool: its ranges' rangeStart..rangeEnd laid end to end, reserved addresses included (they
 * are skipped when candidates are yielded), so that position k is found without walking k addresses: a /48
 * holds 2^80 of them.
 */
export function poolSpan(ranges: readonly AddressRange[]): bigint {
  return ranges.reduce((sum, range) => sum + factsOf(range).size, 0n);
}

/** The position of an address of rangeStart..rangeEnd, undefined for any other address. */
export function positionOf(ranges: readonly AddressRange[], ip: string): bigint | undefined {
  let before = 0n;
  for (const range of ranges) {
    if (rangeAllocating([range], ip) !== undefined) return before + addressValue(ip) - factsOf(range).startValue;
    before += factsOf(range).size;
  }
  return undefined;
}

/** The positions of the range that holds a position (taken modulo the span): its first one and how many. */
export function rangePositions(ranges: readonly AddressRange[], position: bigint): { readonly first: bigint; readonly span: bigint } | undefined {
  const total = poolSpan(ranges);
  if (total === 0n) return undefined;
  const target = ((position % total) + total) % total;
  let first = 0n;
  for (const range of ranges) {
    const span = factsOf(range).size;
    if (target < first + span) return { first, span };
    first += span;
  }
  return undefined;
}

/** The address at a position (taken modulo the span, so positions past the end wrap to the start). */
export function addressAt(ranges: readonly AddressRange[], position: bigint): string | undefined {
  const span = poolSpan(ranges);
  if (span === 0n) return undefined;
  let rest = ((position % span) + span) % span;
  for (const range of ranges) {
    const size = factsOf(range).size;
    if (rest < size) return addressOfValue(factsOf(range).startValue + rest, range.family);
    rest -= size;
  }
  return undefined;
}

/**
 * Every allocatable address in round-robin order from a position (inclusive): one full cycle, wrapping
 * past the end. Lazy, and as cheap for position 2^79 of a /48 as for position 0.
 */
export function candidatesFrom(ranges: readonly AddressRange[], position: bigint): Generator<Candidate> {
  return candidatesAfter(ranges, addressAt(ranges, position - 1n));
}

/** Takes up to n candidates not in `skip` from a lazy sequence (candidatesFrom's). */
export function take(candidates: Iterator<Candidate>, n: number, skip: ReadonlySet<string> = new Set()): Candidate[] {
  const out: Candidate[] = [];
  while (out.length < n) {
    const next = candidates.next();
    if (next.done) break;
    if (!skip.has(next.value.ip)) out.push(next.value);
  }
  return out;
}

/** The address's family as CNI 0.4.0 results spell it. */
export function familyOf(ip: string): '4' | '6' {
  return ip.includes(':') ? '6' : '4';
}
