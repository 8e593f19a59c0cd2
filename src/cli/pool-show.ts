/** `pool show NAME`: a pool's ranges and every allocation under it, sorted by address. */
import { CniError } from '../cni/errors';
import { isReserved, rangeAllocating, rangeHolding, type AddressRange } from '../services/ip-math';
import { allocationPrefix, oddityWarning, poolKey, readPoolDefinition } from '../services/kv-layout';
import { OperationFailure } from './cli-errors';
import type { Command } from './command';
import { checkPoolName, rangeJson, readAllocations } from './pool-read';
import { poolUsage } from './pool-size';
import { renderTable } from './table';

/** Where an allocated address stands in the pool's ranges; undefined for an ordinary one. */
export function addressNote(ranges: readonly AddressRange[], ip: string): string | undefined {
  const range = rangeHolding(ranges, ip);
  if (range === undefined) return 'outside every range';
  if (isReserved(range, ip)) return ip === range.gateway ? 'the gateway' : 'network or broadcast address';
  return rangeAllocating(ranges, ip) === undefined ? 'static (outside rangeStart..rangeEnd)' : undefined;
}

/** `consul-ipam pool show NAME` */
export const poolShowCommand: Command = {
  words: ['pool', 'show'],
  args: ['NAME'],
  options: [],
  summary: "a pool's ranges and its allocations (ip -> container)",
  help: `Shows the IP Ranges of ipam/NAME and each allocation under ipam/NAME/, sorted by address: the container
(target) it belongs to, and the interface and host when the writer recorded them. The ranges are those the
plugin serves; what pool set would refuse about them (host bits set, bounds outside the subnet, overlapping
ranges) is a warning. Keys the plugin would refuse (not named after an address, or not holding
{"target": ...}), and keys naming an address in another spelling (see consul-ipam rekey), are listed apart
with the reason.`,

  async run({ args, connect }) {
    const name = checkPoolName(args[0]);
    const kv = await connect();
    const entry = await kv.get(poolKey(name));
    if (entry === undefined) {
      const left = (await kv.keys(allocationPrefix(name))).filter((key) => key !== allocationPrefix(name)).length;
      throw new OperationFailure(
        'not-found',
        `pool ${name} does not exist: there is no key ${poolKey(name)} in Consul KV`,
        left > 0 ? `${left} key${left === 1 ? '' : 's'} remain under ${allocationPrefix(name)}` : '',
      );
    }
    let ranges: AddressRange[] = [];
    let oddities: readonly string[] = [];
    let poolError: string | undefined;
    try {
      ({ ranges, oddities } = readPoolDefinition(name, entry.value)); // as the plugin serves it
    } catch (error) {
      poolError = error instanceof CniError ? error.message : String(error);
    }
    const allocations = await readAllocations(kv, name);
    const usage = poolError === undefined ? poolUsage(ranges, allocations.taken) : undefined;
    const listed = allocations.valid.map(({ ip, target, ifname, host }) => {
      const note = poolError === undefined ? addressNote(ranges, ip) : undefined;
      return { ip, target, ...(ifname === undefined ? {} : { ifname }), ...(host === undefined ? {} : { host }), ...(note === undefined ? {} : { note }) };
    });

    const json = {
      name,
      ...(poolError === undefined ? { ranges: ranges.map(rangeJson) } : { error: poolError }),
      ...(oddities.length === 0 ? {} : { oddities }),
      ...(usage === undefined
        ? { allocated: allocations.taken.length }
        : { size: usage.size.toString(), allocated: usage.allocated, free: usage.free.toString(), usedPercent: usage.usedPercent }),
      allocations: listed,
      invalid: allocations.invalid,
    };

    const lines = [
      usage === undefined
        ? `pool ${name}: invalid: ${poolError}`
        : `pool ${name}: ${usage.size} addresses, ${usage.allocated} allocated, ${usage.free} free${usage.usedPercent === null ? '' : ` (${usage.usedPercent.toFixed(2)}% used)`}`,
    ];
    if (poolError === undefined) {
      lines.push('', 'ranges:');
      const rangeRows = ranges.map((range) => [range.subnet, range.start, range.end, range.gateway ?? '-', rangeJson(range).size]);
      lines.push(indent(renderTable([{ heading: 'SUBNET' }, { heading: 'START' }, { heading: 'END' }, { heading: 'GATEWAY' }, { heading: 'SIZE', right: true }], rangeRows)));
    }
    lines.push('', listed.length === 0 ? 'allocations: none' : 'allocations:');
    if (listed.length > 0) {
      const rows = listed.map((a) => [a.ip, a.target, a.ifname ?? '-', a.host ?? '-', a.note ?? '']);
      lines.push(indent(renderTable([{ heading: 'IP' }, { heading: 'TARGET' }, { heading: 'IFNAME' }, { heading: 'HOST' }, { heading: 'NOTE' }], rows)));
    }
    if (allocations.invalid.length > 0) {
      lines.push('', 'keys listed apart (the plugin refuses them, or they spell an address otherwise: see consul-ipam rekey):');
      lines.push(indent(renderTable([{ heading: 'KEY' }, { heading: 'PROBLEM' }], allocations.invalid.map((i) => [i.key, i.error]))));
    }
    return { text: lines.join('\n'), json, warnings: oddities.length === 0 ? [] : [oddityWarning(name, oddities)] };
  },
};

const indent = (text: string): string =>
  text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
