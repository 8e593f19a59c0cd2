/**
 * `check [POOL...]`: reads the pools and the cluster's catalog and reports what no DEL or GC will ever clean
 * up, changing nothing. With -o the report is written for `release --from-report`, which acts on exactly it.
 * https://developer.hashicorp.com/consul/api-docs/catalog#list-nodes
 */
import { renameSync, writeFileSync } from 'node:fs';
import { KeySegment } from '../cni/codecs';
import { CniError } from '../cni/errors';
import { oddityWarning, poolKey, allocationPrefix, readPoolDefinition } from '../services/kv-layout';
import type { AddressRange } from '../services/ip-math';
import { OperationFailure, UsageError } from './cli-errors';
import type { Command } from './command';
import { checkPool, NodeNames } from './check-problems';
import type { CheckReport, PoolCheck } from './check-report';
import { poolsFromKeys } from './pool-list';
import { checkPoolName } from './pool-read';
import { renderTable, safeCell } from './table';

/** Writes the report whole or not at all: a cron job's release must never read half a report. */
function writeReport(file: string, report: CheckReport): void {
  const partial = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(partial, `${JSON.stringify(report, null, 2)}\n`);
    renameSync(partial, file);
  } catch (error) {
    throw new OperationFailure('io', `cannot write the report to ${file}`, (error as Error).message);
  }
}

/** The text for people: per pool its use, its problem keys in a table, and what could not be judged. */
function describe(report: CheckReport, file: string | undefined): string {
  const lines = [`checked ${report.pools.length} pool${report.pools.length === 1 ? '' : 's'} at ${report.createdAt} through ${report.server} (${report.nodes.length} Consul node${report.nodes.length === 1 ? '' : 's'})`];
  for (const pool of report.pools) {
    const use = pool.error === undefined ? `${pool.size} addresses, ${pool.allocated} allocated, ${pool.free} free` : `invalid: ${pool.error}; ${pool.allocated} allocated`;
    lines.push('', `pool ${pool.name}: ${use}${pool.problems.length === 0 ? '; no problems' : ''}`);
    if (pool.problems.length > 0) {
      const rows = pool.problems.map((p) => [
        safeCell(p.key),
        p.problems.map((q) => q.kind).join(','),
        safeCell(p.target ?? '-'),
        safeCell(p.ifname ?? '-'),
        safeCell(p.host ?? '-'),
        p.release ? 'yes' : 'no',
        p.problems.map((q) => q.detail).join('; '),
      ]);
      const columns = ['KEY', 'PROBLEM', 'TARGET', 'IFNAME', 'HOST', 'RELEASE', 'DETAIL'].map((heading) => ({ heading }));
      lines.push(...renderTable(columns, rows).split('\n').map((line) => `  ${line}`));
    }
    lines.push(...pool.notes.map((note) => `  note: ${note}`));
  }
  const all = report.pools.flatMap((pool) => pool.problems);
  const releasable = all.filter((p) => p.release).length;
  lines.push('', `${all.length} problem key${all.length === 1 ? '' : 's'}, ${releasable} to release with consul-ipam release --from-report ${file ?? 'REPORT'} --yes (after --grace, default 10m)`);
  if (file !== undefined) lines.push(`report written to ${file}`);
  else if (releasable > 0) lines.push('run again with -o REPORT to write the report that release --from-report reads');
  return lines.join('\n');
}

/** `consul-ipam check [POOL...] [-o REPORT]` */
export const checkCommand: Command = {
  words: ['check'],
  args: [],
  rest: 'POOL',
  options: ['output'],
  summary: 'find leaked and broken allocations; changes nothing',
  help: `Reads each POOL (default: every pool under ipam/) and the Consul catalog, changes nothing, and reports per
pool its size, allocated and free addresses and every key with a problem:
  dead-host          its host is not a node of the Consul cluster (no node of that name in the catalog)
  duplicate          one container interface holds several addresses; the one written last is kept
  invalid-value      named after an address but not holding {"target": ...}
  outside-ranges     the pool's current ranges do not hand the address out (outside them, or now a
                     network, broadcast or gateway address)
  non-canonical-key  an address spelled otherwise than its canonical text (releases before RFC 5952
                     keys wrote fd00:1:2:3:4:5::1 for fd00:1:2:3:4:5:0:1): taken, but move it with
                     consul-ipam rekey
  invalid-key        not named after an address
Hosts are matched with Consul node names (host_id defaults to the hostname, as does the node name), without
regard to case. When none of a pool's hosts is a node, no host is reported dead and a note says why.
A crashed host stays a node until Consul reaps it (72h) or \`consul force-leave -prune NODE\` removes it.

Options:
  -o, --output REPORT  also write the report (JSON: time, servers, each problem key with its value and
                       ModifyIndex) for consul-ipam release --from-report

Example:
  consul-ipam check -o /var/lib/consul-ipam/report.json`,

  async run({ args, values, servers, connect }) {
    const named = [...new Set(args.map(checkPoolName))];
    if (values.output === '') throw new UsageError('-o needs a file name, got an empty string');
    const kv = await connect();
    const nodes = new NodeNames(await kv.nodes());
    const listed = named.length > 0 ? named : [...poolsFromKeys(await kv.keys('ipam/')).keys()].sort();
    // A pool key whose name the plugin refuses is not followed: its name would become part of a key path.
    const skipped = listed.filter((name) => !KeySegment.is(name));
    const pools: PoolCheck[] = [];
    const oddities: string[] = [];
    for (const name of listed.filter((n) => KeySegment.is(n))) {
      const entry = await kv.get(poolKey(name));
      if (entry === undefined) {
        if (named.includes(name)) throw new OperationFailure('not-found', `pool ${name} does not exist: there is no key ${poolKey(name)} in Consul KV`);
        continue; // deleted since the listing
      }
      let ranges: AddressRange[] | undefined;
      let error: string | undefined;
      try {
        // As the plugin serves it: a pool it serves is checked against the ranges it hands out.
        const read = readPoolDefinition(name, entry.value);
        ranges = read.ranges;
        if (read.oddities.length > 0) oddities.push(oddityWarning(name, read.oddities));
      } catch (caught) {
        error = caught instanceof CniError ? caught.message : String(caught);
      }
      const entries = await kv.list(allocationPrefix(name));
      pools.push(checkPool({ name, entries, ...(ranges === undefined ? {} : { ranges }), ...(error === undefined ? {} : { error }) }, nodes));
    }
    // Taken after the last read: the time from it to a release is then never shorter than the report's age.
    const createdAt = new Date().toISOString();
    const report: CheckReport = { report: 'consul-ipam check', version: 1, createdAt, servers: [...servers], server: kv.server, nodes: [...nodes.listed].sort(), pools };
    if (values.output !== undefined) writeReport(values.output, report);
    const warnings = [
      ...skipped.map((name) => `pool key ${JSON.stringify(poolKey(name))} is not checked: its name is not one the plugin accepts (${KeySegment.name})`),
      ...oddities,
    ];
    return { text: describe(report, values.output), json: report, warnings };
  },
};
