/**
 * `pool set NAME --range ...`: writes ipam/NAME. The JSON about to be written goes through the strict
 * parsePoolDefinition first: the CLI never writes a pool the plugin would refuse to read, nor one it would
 * only serve leniently, as the original does (host bits, bounds or gateway outside the subnet, overlaps).
 */
import type { ConsulKv } from '../services/consul-client';
import { isReserved, rangeAllocating, rangeHolding, type AddressRange } from '../services/ip-math';
import { parsePoolDefinition, poolKey, readPoolDefinition } from '../services/kv-layout';
import { OperationFailure, UsageError } from './cli-errors';
import type { Command } from './command';
import { checkPoolName, describeRange, rangeJson, readAllocations, type PoolAllocations } from './pool-read';
import { poolSize } from './pool-size';
import { parseRangeArguments } from './range-argument';

/** A live allocation the new ranges would not accept, and why. */
export interface Misfit {
  readonly ip: string;
  readonly target?: string;
  readonly why: string;
}

/**
 * Allocations the plugin would no longer accept as addresses of the pool: outside the subnet of every range,
 * or on a network, broadcast or gateway address (the rule ADD applies to a requested static IP).
 */
export function misfits(ranges: readonly AddressRange[], allocations: PoolAllocations): Misfit[] {
  const targets = new Map(allocations.valid.map((entry) => [entry.ip, entry.target]));
  return allocations.taken.flatMap((ip) => {
    const range = rangeHolding(ranges, ip);
    const target = targets.get(ip);
    const why =
      range === undefined
        ? 'is outside every range'
        : isReserved(range, ip)
          ? `would be ${ip === range.gateway ? 'the gateway' : 'the network or broadcast address'} of ${range.subnet}`
          : undefined;
    return why === undefined ? [] : [{ ip, why, ...(target === undefined ? {} : { target }) }];
  });
}

const count = (n: number): string => `${n} live allocation${n === 1 ? '' : 's'}`;

const describeMisfit = ({ ip, target, why }: Misfit): string => `${ip}${target ? ` (${target})` : ''} ${why}`;

/** Allocations that ADD could hand out under the old ranges and no longer can: they stay, as static addresses. */
function leftAsStatic(before: readonly AddressRange[] | undefined, after: readonly AddressRange[], allocations: PoolAllocations): string[] {
  if (before === undefined) return [];
  return allocations.taken.filter((ip) => rangeAllocating(before, ip) !== undefined && rangeAllocating(after, ip) === undefined && rangeHolding(after, ip) !== undefined);
}

function parseCurrent(name: string, value: string | null): AddressRange[] | undefined {
  try {
    return readPoolDefinition(name, value).ranges; // as the plugin serves it today
  } catch {
    return undefined; // a broken pool is simply replaced
  }
}

async function write(kv: ConsulKv, name: string, json: string, cas: number): Promise<void> {
  if (await kv.put(poolKey(name), json, cas)) return;
  throw new OperationFailure(
    'conflict',
    cas === 0
      ? `pool ${name} was created by someone else while this command ran; nothing written`
      : `pool ${name} was changed by someone else while this command ran (${poolKey(name)} is no longer at index ${cas}); nothing written`,
    'see consul-ipam pool show and run the command again',
  );
}

/** `consul-ipam pool set NAME --range SUBNET[,START,END,GATEWAY] ... [--force]` */
export const poolSetCommand: Command = {
  words: ['pool', 'set'],
  args: ['NAME'],
  options: ['range', 'force'],
  summary: 'create a pool or replace its IP Ranges',
  help: `Writes ipam/NAME, the JSON array of IP Ranges the plugin allocates from, replacing the ranges it held.
Nothing else is created: allocations live under ipam/NAME/ and are written by the plugin.

Options:
  --range SUBNET[,START,END,GATEWAY]  one IP Range, repeat for several. START..END bounds the addresses handed
                                      out (default: the whole subnet less the network and broadcast address).
                                      Fields may be left empty: --range 10.0.20.0/23,,,10.0.20.1
  --force                             write even when live allocations would fall outside every range

Each range is checked as the plugin reads it: a subnet without host bits, addresses of its family and inside
it, START not after END; no two ranges may share an address. A pool is not shrunk below a live allocation
(outside every subnet, or on a network, broadcast or gateway address) unless --force is given.
The write is a check-and-set on the version read (a new pool: only if still absent), so a change made by
someone else in the meantime is never overwritten.

Example:
  consul-ipam pool set web --range 10.0.20.0/23,10.0.21.100,10.0.21.150,10.0.20.1`,

  async run({ args, values, connect }) {
    const name = checkPoolName(args[0]);
    const parsed = parseRangeArguments(values.range ?? []);
    const json = JSON.stringify(parsed.map((p) => p.definition));
    let ranges: AddressRange[];
    try {
      ranges = parsePoolDefinition(name, json);
    } catch (error) {
      throw new UsageError(`these ranges do not make a pool the plugin can read: ${(error as Error).message}`);
    }
    const summary = {
      pool: name,
      ranges: ranges.map(rangeJson),
      size: poolSize(ranges).toString(),
    };
    const described = `${summary.size} addresses in ${ranges.map(describeRange).join('; ')}`;

    const kv = await connect();
    const current = await kv.get(poolKey(name));
    if (current !== undefined && current.value === json) {
      return { text: `pool ${name} unchanged: ${described}`, json: { ...summary, action: 'unchanged' } };
    }
    const allocations = await readAllocations(kv, name);
    const outside = misfits(ranges, allocations);
    if (outside.length > 0 && values.force !== true) {
      throw new OperationFailure(
        'refused',
        `refusing to shrink pool ${name}: ${count(outside.length)} would no longer fit: ${outside.map(describeMisfit).join(', ')}`,
        'release with consul-ipam release first, or pass --force to write the pool anyway',
      );
    }
    const stranded = leftAsStatic(current === undefined ? undefined : parseCurrent(name, current.value), ranges, allocations);
    await write(kv, name, json, current?.modifyIndex ?? 0);

    const warnings = [
      ...(outside.length > 0 ? [`--force: pool ${name} written although ${count(outside.length)} no longer fit${outside.length === 1 ? "s" : ""}: ${outside.map(describeMisfit).join(', ')}`] : []),
      ...(stranded.length > 0 ? [`now outside rangeStart..rangeEnd, kept as static addresses: ${stranded.join(', ')}`] : []),
    ];
    const action = current === undefined ? 'created' : 'updated';
    return {
      text: `${action} pool ${name}: ${described}`,
      json: { ...summary, action, ...(outside.length > 0 ? { forced: outside } : {}) },
      warnings,
    };
  },
};
