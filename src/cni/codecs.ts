/**
 * io-ts codecs for the values that arrive as text: IP addresses, CIDRs, URLs, names that become Consul keys.
 * Each decodes to canonical text, so one address always has one spelling (and one KV key).
 */
import * as t from 'io-ts';
import * as ip6addr from 'ip6addr';
import { ifnameProblem, isContainerId } from './environment';

/** Canonical text of an address: dotted quad for IPv4, RFC 5952 for IPv6 (lower case, longest zero run elided). */
export function canonicalIp(text: string): string | undefined {
  if (typeof text !== 'string' || text.includes('/') || text.trim() !== text) return undefined;
  try {
    const addr = ip6addr.parse(text);
    return addr.toString({ format: addr.kind() === 'ipv4' ? 'v4' : 'v6', zeroElide: true });
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
    const network = ip6addr.createCIDR(ip, prefix).address();
    const networkText = network.toString({ format: network.kind() === 'ipv4' ? 'v4' : 'v6' });
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
