/**
 * The `--range SUBNET[,START,END,GATEWAY]` argument of `pool set`, turned into the IP Range object the plugin
 * reads from ipam/<pool> (the host-local format). Empty fields are left out: `10.0.20.0/23,,,10.0.20.1` is a
 * range with only a subnet and a gateway. Every address is written in canonical form, so the JSON holds one
 * spelling per address whichever implementation reads it.
 */
import { isLeft } from 'fp-ts/Either';
import { canonicalIp, Subnet } from '../cni/codecs';
import { normalizeRange, rangesOverlap, type AddressRange, type RangeDefinition } from '../services/ip-math';
import { UsageError } from './cli-errors';

/** One --range, as written to Consul and as the plugin will read it. */
export interface ParsedRange {
  readonly argument: string;
  readonly definition: RangeDefinition;
  readonly range: AddressRange;
}

const fieldNames = ['subnet', 'rangeStart', 'rangeEnd', 'gateway'] as const;

const familyName = (ip: string): string => (ip.includes(':') ? 'IPv6' : 'IPv4');

/** Parses one --range value; a UsageError names the argument, the field and the value. */
export function parseRangeArgument(argument: string): ParsedRange {
  const fail = (why: string): never => {
    throw new UsageError(`--range ${argument}: ${why}`);
  };
  const fields = argument.split(',').map((field) => field.trim());
  if (fields.length > fieldNames.length) fail(`expected SUBNET[,START,END,GATEWAY], got ${fields.length} comma-separated fields`);
  const [subnetText = '', ...addresses] = fields;
  if (subnetText === '') fail('the subnet is missing (expected SUBNET[,START,END,GATEWAY])');

  const subnet = Subnet.decode(subnetText);
  if (isLeft(subnet)) {
    const why = subnet.left[0]?.message ?? `expected ${Subnet.name}`;
    return fail(`subnet ${JSON.stringify(subnetText)} is not valid: ${why}`);
  }
  const subnetFamily = familyName(subnet.right.split('/')[0]!);

  const definition: { -readonly [K in keyof RangeDefinition]: RangeDefinition[K] } = { subnet: subnet.right };
  addresses.forEach((text, index) => {
    const field = fieldNames[index + 1]!;
    if (text === '') return;
    const ip = canonicalIp(text) ?? fail(`${field} ${JSON.stringify(text)} is not an IP address`);
    if (familyName(ip) !== subnetFamily) fail(`${field} ${ip} is ${familyName(ip)} but subnet ${subnet.right} is ${subnetFamily}`);
    definition[field] = ip;
  });

  try {
    // The plugin's own check: containment in the subnet, start before end, the defaults filled in.
    return { argument, definition, range: normalizeRange(definition) };
  } catch (error) {
    return fail((error as Error).message);
  }
}

/** Parses every --range of one `pool set` and refuses two that share an address, as the plugin would. */
export function parseRangeArguments(argumentsGiven: readonly string[]): ParsedRange[] {
  if (argumentsGiven.length === 0) throw new UsageError('pool set needs at least one --range SUBNET[,START,END,GATEWAY]');
  const parsed = argumentsGiven.map(parseRangeArgument);
  parsed.forEach((a, i) =>
    parsed.slice(i + 1).forEach((b) => {
      if (rangesOverlap(a.range, b.range)) {
        throw new UsageError(`--range ${a.argument} and --range ${b.argument} overlap (${a.range.start}-${a.range.end} and ${b.range.start}-${b.range.end})`);
      }
    }),
  );
  return parsed;
}
