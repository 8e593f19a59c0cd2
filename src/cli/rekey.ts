/**
 * `rekey [POOL...] [--yes]`: moves each allocation whose key spells its address otherwise than its canonical
 * (RFC 5952) text to the canonical key. Releases of the plugin before RFC 5952 keys wrote IPv6 addresses whose
 * zero groups are all single in ip6addr's spelling (`fd00:1:2:3:4:5::1` for fd00:1:2:3:4:5:0:1); the plugin
 * treats such a key as taken and DEL releases it, but the original and other implementations read only the
 * canonical key. Each move is one transaction, so no moment has the address unheld or held twice:
 * https://developer.hashicorp.com/consul/api-docs/txn
 */
import { canonicalIp, KeySegment } from '../cni/codecs';
import { showValue } from '../cni/decode-report';
import { CniError } from '../cni/errors';
import type { ConsulKv, KvEntry, TxnOp } from '../services/consul-client';
import { allocationKey, allocationPrefix, parseAllocation, poolKey } from '../services/kv-layout';
import { OperationFailure } from './cli-errors';
import type { Command } from './command';
import { poolsFromKeys } from './pool-list';
import { checkPoolName } from './pool-read';
import { safeCell } from './table';

/** What became of one key in another spelling. */
export type RekeyOutcome =
  /** Moved: the canonical key now holds its value, the old key is gone. */
  | 'rekeyed'
  | 'would-rekey'
  /** The canonical key already held the same allocation: the old key, a copy, was deleted. */
  | 'merged'
  | 'would-merge'
  /** The canonical key holds another container's allocation: both are left for the operator. */
  | 'conflict'
  /** Changed, deleted or joined by a canonical key while this command ran: left alone. */
  | 'changed'
  | 'failed';

/** One key in another spelling, what was done with it, and why. */
export interface RekeyResult {
  readonly pool: string;
  readonly key: string;
  readonly canonicalKey: string;
  readonly modifyIndex: number;
  readonly outcome: RekeyOutcome;
  readonly detail: string;
}

/** Whether two values hold the same allocation: the same text, or the same container and interface. */
function sameAllocation(pool: string, a: KvEntry, b: KvEntry): boolean {
  if (a.value === b.value) return true;
  try {
    const x = parseAllocation(pool, a.key, a.value).allocation;
    const y = parseAllocation(pool, b.key, b.value).allocation;
    return x.target === y.target && x.ifname === y.ifname;
  } catch {
    return false;
  }
}

/** The owner of a value, for the text output. */
function owner(pool: string, entry: KvEntry): string {
  try {
    const { target, ifname, host } = parseAllocation(pool, entry.key, entry.value).allocation;
    return [safeCell(target), ifname === undefined ? undefined : safeCell(ifname), host === undefined ? undefined : `on ${safeCell(host)}`].filter(Boolean).join(' ');
  } catch {
    return `no valid Allocation: ${safeCell(showValue(entry.value))}`;
  }
}

/**
 * Plans and (unless a dry run) makes the moves of one pool. `entries` is its folder as listed; the keys are taken
 * in order, and what an earlier move wrote is what a later key of the same address is compared with.
 */
export async function rekeyPool(kv: ConsulKv, pool: string, entries: readonly KvEntry[], dryRun: boolean): Promise<RekeyResult[]> {
  const prefix = allocationPrefix(pool);
  const current = new Map(entries.map((entry) => [entry.key, entry]));
  const results: RekeyResult[] = [];
  const sorted = [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const old of sorted) {
    if (!old.key.startsWith(prefix)) continue;
    const ip = canonicalIp(old.key.slice(prefix.length));
    if (ip === undefined || allocationKey(pool, ip) === old.key) continue; // no address, or already canonical
    const canonicalKey = allocationKey(pool, ip);
    const record = (outcome: RekeyOutcome, detail: string) => results.push({ pool, key: old.key, canonicalKey, modifyIndex: old.modifyIndex, outcome, detail });
    const held = current.get(canonicalKey);
    if (held !== undefined && !sameAllocation(pool, old, held)) {
      record('conflict', `${canonicalKey} holds ${owner(pool, held)}, ${old.key} holds ${owner(pool, old)}: two containers hold ${ip}; release the one no longer running (consul-ipam release), then run rekey again`);
      continue;
    }
    // The old key is moved only as it was listed (check-index: a delete-cas alone passes on a key already gone,
    // which would bring back an allocation a DEL just released), and the canonical key only made if absent (cas 0)
    // or kept as it was read.
    const guardOld: TxnOp[] = [
      { verb: 'check-index', key: old.key, index: old.modifyIndex },
      { verb: 'delete-cas', key: old.key, index: old.modifyIndex },
    ];
    const ops: TxnOp[] =
      held === undefined
        ? [{ verb: 'cas', key: canonicalKey, index: 0, ...(old.value === null ? {} : { value: old.value }) }, ...guardOld]
        : [{ verb: 'check-index', key: canonicalKey, index: held.modifyIndex }, ...guardOld];
    const verb = held === undefined ? 'rekey' : 'merge';
    const why = held === undefined ? `moved to ${canonicalKey} (${owner(pool, old)})` : `${canonicalKey} already holds the same allocation (${owner(pool, old)}); the copy is deleted`;
    if (dryRun) {
      record(`would-${verb}`, why);
      if (held === undefined) current.set(canonicalKey, { ...old, key: canonicalKey });
      continue;
    }
    try {
      const outcome = await kv.txn(ops);
      if (!outcome.applied) {
        const what = outcome.errors.map((e) => e.what).join('; ');
        if (/permission denied/i.test(what)) record('failed', `Consul denied the move: ${what}`);
        else record('changed', `changed while this command ran, left alone (${what}); run rekey again`);
        continue;
      }
      record(held === undefined ? 'rekeyed' : 'merged', why);
      const made = outcome.entries.find((entry) => entry.key === canonicalKey);
      if (held === undefined) current.set(canonicalKey, { ...old, key: canonicalKey, modifyIndex: made?.modifyIndex ?? old.modifyIndex });
    } catch (error) {
      record('failed', error instanceof CniError ? `${error.message}${error.details ? ` (${error.details})` : ''}` : String(error));
    }
  }
  return results;
}

const verbs: Record<RekeyOutcome, string> = {
  rekeyed: 'rekeyed',
  'would-rekey': 'would rekey',
  merged: 'merged',
  'would-merge': 'would merge',
  conflict: 'CONFLICT, left alone',
  changed: 'left alone',
  failed: 'FAILED',
};

/** `consul-ipam rekey [POOL...] [--yes]` */
export const rekeyCommand: Command = {
  words: ['rekey'],
  args: [],
  rest: 'POOL',
  options: ['yes'],
  summary: 'move allocations keyed in another spelling of their address to the canonical key',
  help: `Finds in each POOL (default: every pool under ipam/) the allocation keys that name an address in
another spelling than its canonical one (RFC 5952 for IPv6): releases of the plugin before RFC 5952 keys
wrote an IPv6 address whose zero groups are all single with its first zero group as "::"
(fd00:1:2:3:4:5::1 for fd00:1:2:3:4:5:0:1). consul-ipam check reports them as non-canonical-key.
The plugin treats such a key as taken and DEL releases it, but the original and other implementations
read only the canonical key, so move them once every host runs this release.

Each key is moved in one Consul transaction: the canonical key is created with the same value only if
absent, and the old key deleted only if its ModifyIndex is still the one read; a key changed meanwhile
is left alone and named. When the canonical key already holds the same allocation (the same container
and interface), the old key, a copy, is deleted. When it holds another container's, both are left alone
and named (conflict): two containers hold the address. Without --yes nothing is changed: the command says
what it would do.

Options:
  --yes  move the keys; without it, only say what would be moved

Example:
  consul-ipam rekey && consul-ipam rekey --yes`,

  async run({ args, values, connect }) {
    const named = [...new Set(args.map(checkPoolName))];
    const dryRun = values.yes !== true;
    const kv = await connect();
    const listed = named.length > 0 ? named : [...poolsFromKeys(await kv.keys('ipam/')).keys()].sort();
    const results: RekeyResult[] = [];
    for (const name of listed.filter((n) => KeySegment.is(n))) {
      if (named.includes(name) && (await kv.get(poolKey(name))) === undefined) {
        throw new OperationFailure('not-found', `pool ${name} does not exist: there is no key ${poolKey(name)} in Consul KV`);
      }
      results.push(...(await rekeyPool(kv, name, await kv.list(allocationPrefix(name)), dryRun)));
    }
    const count = (...outcomes: RekeyOutcome[]) => results.filter((r) => outcomes.includes(r.outcome)).length;
    const lines = [
      `${results.length} key${results.length === 1 ? '' : 's'} in another spelling in ${listed.length} pool${listed.length === 1 ? '' : 's'}`,
      ...results.map((r) => `${verbs[r.outcome]} ${safeCell(r.key)}: ${r.detail}`),
    ];
    if (results.length > 0) {
      lines.push(
        dryRun
          ? `would move ${count('would-rekey', 'would-merge')} of ${results.length}; nothing was changed: run again with --yes to move them`
          : `moved ${count('rekeyed', 'merged')} of ${results.length}; ${results.length - count('rekeyed', 'merged')} left alone`,
      );
    }
    return {
      text: lines.join('\n'),
      json: { dryRun, server: kv.server, results },
      warnings: count('conflict') > 0 ? [`${count('conflict')} address${count('conflict') === 1 ? ' is' : 'es are'} held under two spellings by different containers: see the CONFLICT lines`] : [],
      exitCode: count('failed') > 0 ? 1 : 0,
    };
  },
};
