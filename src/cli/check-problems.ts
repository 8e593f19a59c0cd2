/**
 * What `consul-ipam check` finds in one pool: pure, from the pool's ranges, its keys as Consul listed them and
 * the names of the cluster's nodes, so every problem kind is table-tested without a cluster.
 */
import { canonicalIp } from '../cni/codecs';
import type { KvEntry } from '../services/consul-client';
import { isReserved, rangeHolding, type AddressRange } from '../services/ip-math';
import { allocationKey } from '../services/kv-layout';
import { isReleasable, type PoolCheck, type Problem, type ProblemAllocation } from './check-report';
import { sortAllocations, type AllocationEntry } from './pool-read';
import { poolUsage } from './pool-size';
import { addressNote } from './pool-show';

/** The cluster's nodes, matched by name as Consul matches them: without regard to case. */
export class NodeNames {
  private readonly names: ReadonlySet<string>;

  constructor(readonly listed: readonly string[]) {
    this.names = new Set(listed.map((name) => name.toLowerCase()));
  }

  has(host: string): boolean {
    return this.names.has(host.toLowerCase());
  }
}

/** One pool to check: its name, its ranges (undefined when the pool key is invalid, with why), its keys. */
export interface PoolInput {
  readonly name: string;
  readonly ranges?: readonly AddressRange[];
  readonly error?: string;
  readonly entries: readonly KvEntry[];
}

const list = (items: readonly string[], max = 5): string =>
  `${items.slice(0, max).join(', ')}${items.length > max ? `, and ${items.length - max} more` : ''}`;

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Finds every problem of one pool. Nothing here throws on a broken key: each is a finding. */
export function checkPool(pool: PoolInput, nodes: NodeNames): PoolCheck {
  const { name, ranges } = pool;
  const raw = new Map(pool.entries.map((entry) => [entry.key, entry]));
  const sorted = sortAllocations(name, pool.entries);
  const found = new Map<string, { base: Omit<ProblemAllocation, 'problems' | 'release'>; problems: Problem[] }>();
  const flag = (key: string, problem: Problem, allocation?: AllocationEntry): void => {
    const entry = raw.get(key)!;
    const base = {
      key,
      value: entry.value,
      modifyIndex: entry.modifyIndex,
      ...(allocation === undefined
        ? {}
        : { ip: allocation.ip, target: allocation.target, ...(allocation.ifname === undefined ? {} : { ifname: allocation.ifname }), ...(allocation.host === undefined ? {} : { host: allocation.host }) }),
    };
    const seen = found.get(key) ?? { base, problems: [] };
    seen.problems.push(problem);
    found.set(key, seen);
  };
  const notes: string[] = [];

  // Keys the plugin refuses, by why: no address at all, an address spelled otherwise, a broken value.
  for (const { key, error } of sorted.invalid) {
    const tail = key.slice(`ipam/${name}/`.length);
    const canonical = canonicalIp(tail);
    if (canonical === undefined) {
      flag(key, { kind: 'invalid-key', detail: 'not named after an IP address: it holds no address' });
    } else if (canonical !== tail) {
      flag(key, {
        kind: 'non-canonical-key',
        detail: `names ${canonical} in another spelling than its canonical key ${allocationKey(name, canonical)}; the plugin treats the address as taken and DEL releases it, but other implementations do not see it: move it with consul-ipam rekey`,
      });
    } else {
      flag(key, { kind: 'invalid-value', detail: `${error}: the address is held, and no DEL recognises the key as its container's` });
    }
  }

  // Hosts: only judged when at least one host of the pool is a node, else host_id is not the node name here.
  const hosts = [...new Set(sorted.valid.flatMap((a) => (a.host === undefined ? [] : [a.host])))].sort();
  const members = hosts.filter((host) => nodes.has(host));
  const judgeHosts = hosts.length > 0 && members.length > 0;
  if (hosts.length > 0 && members.length === 0) {
    notes.push(
      `no host reported dead: none of the ${plural(hosts.length, 'host')} recorded in pool ${name} (${list(hosts)}) is a node of the Consul cluster ` +
        `(the catalog lists ${plural(nodes.listed.length, 'node')}${nodes.listed.length === 0 ? '' : `: ${list([...nodes.listed].sort())}`}), so host_id is not the Consul node name ` +
        `here, or the token may not read the catalog (node:read)`,
    );
  }
  const hostless = sorted.valid.filter((a) => a.host === undefined).length;
  if (hostless > 0) notes.push(`${plural(hostless, 'allocation')} record no host (written by another implementation): their host cannot be checked`);

  for (const allocation of sorted.valid) {
    const key = allocationKey(name, allocation.ip);
    if (judgeHosts && allocation.host !== undefined && !nodes.has(allocation.host)) {
      flag(key, { kind: 'dead-host', detail: `host ${allocation.host} is not a node of the Consul cluster` }, allocation);
    }
    if (ranges !== undefined) {
      const range = rangeHolding(ranges, allocation.ip);
      if (range === undefined || isReserved(range, allocation.ip)) {
        flag(key, { kind: 'outside-ranges', detail: `the pool's current ranges do not hand it out: ${addressNote(ranges, allocation.ip)}` }, allocation);
      }
    }
  }

  // Several addresses for one container interface on one host: all but the one written last.
  const byInterface = new Map<string, AllocationEntry[]>();
  for (const allocation of sorted.valid) {
    if (allocation.ifname === undefined) continue; // another implementation's: the interface is unknown
    const id = JSON.stringify([allocation.host ?? null, allocation.target, allocation.ifname]);
    byInterface.set(id, [...(byInterface.get(id) ?? []), allocation]);
  }
  for (const group of byInterface.values()) {
    if (group.length < 2) continue;
    const kept = group.reduce((a, b) => (b.modifyIndex > a.modifyIndex ? b : a));
    const where = `${kept.target} ${kept.ifname}${kept.host === undefined ? '' : ` on ${kept.host}`}`;
    for (const extra of group.filter((a) => a !== kept)) {
      flag(
        allocationKey(name, extra.ip),
        { kind: 'duplicate', detail: `${where} holds ${group.length} addresses; ${kept.ip} is kept (written last, ModifyIndex ${kept.modifyIndex})` },
        extra,
      );
    }
  }

  const problems = [...found.values()]
    .map(({ base, problems: list }) => ({ ...base, problems: list, release: isReleasable(list) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const usage = ranges === undefined ? undefined : poolUsage(ranges, sorted.taken);
  return {
    name,
    ...(pool.error === undefined ? {} : { error: pool.error }),
    ...(usage === undefined ? {} : { size: usage.size.toString() }),
    allocated: sorted.taken.length,
    ...(usage === undefined ? {} : { free: usage.free.toString() }),
    notes,
    problems,
  };
}
