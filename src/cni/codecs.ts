/**
 * io-ts codecs for the values that arrive as text: IP addresses, CIDRs, URLs, names that become Consul keys.
 * Each decodes to canonical text, so one address always has one spelling (and one KV key).
 */
import * as t from 'io-ts';
import type * as Ip6addr from 'ip6addr';
import { ifnameProblem, isContainerId } from './environment';

/**
 * ip6addr, loaded when an address is first parsed: its import (with jsprim, verror, json-schema) costs ~3.5 M
 * instructions, and ipam-ds-static's commands, the "about" run and VERSION parse none. The bundler keeps a
 * `require` inside a function lazy.
 */
let ip6addrModule: typeof Ip6addr | undefined;
const ip6addr = (): typeof Ip6addr => (ip6addrModule ??= require('ip6addr') as typeof Ip6addr);

/**
 * RFC 5952 text of an IPv6 address given as eight 16-bit groups: lower case, no leading zeros, `::` for the
 * longest run of two or more zero groups (the first of equal runs), never for a single zero group; an
 * IPv4-mapped address as `::ffff:a.b.c.d` (section 5). Rust's Ipv6Addr (the original's keys) prints the same,
 * so one address is one Consul key whichever implementation wrote it. ip6addr's zeroElide also elides a single
 * zero group (`fd00:1:2:3:4:5::1`), a second spelling: it is not used for text that becomes a key.
 */
export function formatIpv6(groups: readonly number[]): string {
  if (groups.length !== 8) throw new RangeError(`an IPv6 address has 8 groups, got ${groups.length}`);
  const [, , , , , g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  if (groups.slice(0, 5).every((g) => g === 0) && g5 === 0xffff) return `::ffff:${g6 >> 8}.${g6 & 255}.${g7 >> 8}.${g7 & 255}`;
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > best.length) best = { start: i, length: end - i };
    i = end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.length).join(':')}`;
}

/**
 * The second spelling of an address in canonical text: how releases of this plugin before RFC 5952 keys wrote it
 * (ip6addr's zeroElide), when that differs from formatIpv6's; undefined when there is none. Measured over every
 * pattern of zero groups (test/unit/ip-math.test.ts): the two agree wherever a run of two or more zero groups
 * exists, and differ exactly when the address has zero groups but none next to another, where zeroElide shortens
 * the first of them to `::` (`fd00:1:2:3:4:5::1` for fd00:1:2:3:4:5:0:1, `11::33:0:55:66:77:88` for
 * 11:0:33:0:55:66:77:88). IPv4 and IPv4-mapped addresses have none: those releases wrote them as IPv4.
 */
export function oldSpelling(ip: string): string | undefined {
  // Canonical text without `::` has no run of two zero groups; with a `.` it is IPv4 or IPv4-mapped.
  if (!ip.includes(':') || ip.includes('::') || ip.includes('.')) return undefined;
  const groups = ip.split(':');
  const first = groups.indexOf('0');
  return first < 0 ? undefined : `${groups.slice(0, first).join(':')}::${groups.slice(first + 1).join(':')}`;
}

/** Canonical text of a parsed address: dotted quad for IPv4, RFC 5952 (formatIpv6) for IPv6. */
export function formatIp(addr: Ip6addr.Addr): string {
  if (addr.kind() === 'ipv4') return addr.toString({ format: 'v4' });
  return formatIpv6(groupsOf(addr));
}

function groupsOf(addr: Ip6addr.Addr): number[] {
  return addr
    .toString({ format: 'v6', zeroElide: false, zeroPad: true })
    .split(':')
    .map((group) => parseInt(group, 16));
}

/**
 * Canonical text of an address written as text. IPv6 text stays IPv6 even when it maps an IPv4 address
 * (`::ffff:10.0.0.1`, as Rust prints it): ip6addr reads that as IPv4, which would make it another address's key.
 */
export function canonicalIp(text: string): string | undefined {
  if (typeof text !== 'string' || text.includes('/') || text.trim() !== text) return undefined;
  try {
    const addr = ip6addr().parse(text);
    return text.includes(':') ? formatIpv6(groupsOf(addr)) : formatIp(addr);
  } catch {
    return undefined;
  }
}

/** An IPv4 or IPv6 address without prefix length, decoded to its canonical text. */
export const IpAddress = new t.Type<string, string, unknown>(
  'an IP address',
  (u): u is string => typeof u === 'string' && canonicalIp(u) === u,
  (u, c) => {
    const ip = typeof u === 'string' ? canonicalIp(u) : undefined;
    return ip === undefined ? t.failure(u, c) : t.success(ip);
  },
  t.identity,
);

/** An address with its prefix length ("10.0.21.5/23"), as CNI results carry them. */
export const IpWithPrefix = new t.Type<{ ip: string; prefix: number }, string, unknown>(
  'an IP address with prefix length (like 10.0.21.5/23)',
  (u): u is { ip: string; prefix: number } => typeof u === 'object' && u !== null && 'ip' in u && 'prefix' in u,
  (u, c) => {
    if (typeof u !== 'string') return t.failure(u, c);
    const [address, prefixText, extra] = u.split('/');
    const ip = address === undefined ? undefined : canonicalIp(address);
    const prefix = Number(prefixText);
    const max = ip?.includes(':') ? 128 : 32;
    if (ip === undefined || extra !== undefined || !/^\d{1,3}$/.test(prefixText ?? '') || prefix > max) return t.failure(u, c);
    return t.success({ ip, prefix });
  },
  ({ ip, prefix }) => `${ip}/${prefix}`,
);

/** A subnet in CIDR notation whose host bits are zero ("10.0.20.0/23"), decoded to canonical text. */
export const Subnet = new t.Type<string, string, unknown>(
  'a subnet in CIDR notation with no host bits set (like 10.0.20.0/23)',
  (u): u is string => typeof u === 'string',
  (u, c) => {
    const decoded = IpWithPrefix.validate(u, c);
    if (decoded._tag === 'Left') return decoded;
    const { ip, prefix } = decoded.right;
    const networkText = formatIp(ip6addr().createCIDR(ip, prefix).address());
    return networkText === ip ? t.success(`${ip}/${prefix}`) : t.failure(u, c, `host bits are set: did you mean ${networkText}/${prefix}?`);
  },
  t.identity,
);

/** An http:// or https:// base URL, decoded without a trailing slash. */
export const HttpUrl = new t.Type<string, string, unknown>(
  'an http:// or https:// URL',
  (u): u is string => typeof u === 'string',
  (u, c) => {
    if (typeof u !== 'string') return t.failure(u, c);
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      return t.failure(u, c);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return t.failure(u, c);
    if (url.search || url.hash || url.username || url.password) return t.failure(u, c, 'expected no query, fragment or credentials (use ipam.consul_token)');
    return t.success(url.toString().replace(/\/+$/, ''));
  },
  t.identity,
);

/**
 * A name that becomes one segment of a Consul key (ipam/<name>): letters, digits, "_", "." and "-",
 * starting with a letter or digit, so no "/", "..", "?", "%" or control character can reach a key path.
 */
export const KeySegment = new t.Type<string, string, unknown>(
  'a name of letters, digits, "_", "." or "-" starting with a letter or digit (at most 128)',
  (u): u is string => typeof u === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$/.test(u),
  (u, c) => (typeof u === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$/.test(u) ? t.success(u) : t.failure(u, c)),
  t.identity,
);

/** Text that passes `valid`, with a codec name that says what was expected; the rule itself lives elsewhere, once. */
function textCodec(name: string, valid: (text: string) => boolean): t.Type<string, string, unknown> {
  const is = (u: unknown): u is string => typeof u === 'string' && valid(u);
  return new t.Type<string, string, unknown>(name, is, (u, c) => (is(u) ? t.success(u) : t.failure(u, c)), t.identity);
}

/** A container ID spelled as CNI_CONTAINERID must be (the rule of src/cni/environment.ts): never "/" or "..". */
export const ContainerId = textCodec('a container ID (a letter or digit, then letters, digits, "_", "." or "-")', isContainerId);

/** A network's `name`: the spec gives it the container ID's rule. */
export const NetworkName = textCodec('a network name (a letter or digit, then letters, digits, "_", "." or "-")', isContainerId);

/** An interface name spelled as CNI_IFNAME must be: at most 15 characters, no "/", ":" or white space, not "." or "..". */
export const InterfaceName = textCodec('an interface name (at most 15 characters, no "/", ":" or white space, not "." or "..")', (u) => ifnameProblem(u) === undefined);

/** A whole number of milliseconds, at least 1. */
export const Milliseconds = new t.Type<number, number, unknown>(
  'a whole number of milliseconds, at least 1',
  (u): u is number => Number.isInteger(u) && (u as number) >= 1,
  (u, c) => (Number.isInteger(u) && (u as number) >= 1 ? t.success(u as number) : t.failure(u, c)),
  t.identity,
);

/** A whole number, 0 or more. */
export const Count = new t.Type<number, number, unknown>(
  'a whole number, 0 or more',
  (u): u is number => Number.isInteger(u) && (u as number) >= 0,
  (u, c) => (Number.isInteger(u) && (u as number) >= 0 ? t.success(u as number) : t.failure(u, c)),
  t.identity,
);

/** A non-empty array of the given codec. */
export function nonEmptyArray<C extends t.Mixed>(codec: C, name: string) {
  return t.refinement(t.array(codec), (items) => items.length > 0, name);
}
