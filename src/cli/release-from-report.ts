/**
 * `release --from-report REPORT`: frees exactly the releasable keys of a `consul-ipam check` report, each with a
 * `?cas=<ModifyIndex the report saw>` delete, so a key that changed since (re-allocated, rewritten) is left
 * alone and named. A report younger than --grace is refused: an address is freed only after two observations
 * a grace period apart, as Calico's `ipam release --from-report` does.
 * https://developer.hashicorp.com/consul/api-docs/kv#delete-key
 */
import { readFileSync } from 'node:fs';
import { showValue } from '../cni/decode-report';
import { CniError } from '../cni/errors';
import { OperationFailure, UsageError } from './cli-errors';
import { NodeNames } from './check-problems';
import { problemKinds, readReport, type ProblemAllocation } from './check-report';
import type { Command } from './command';
import { describeDuration, parseDuration } from './duration';
import { safeCell } from './table';

/** What became of one key of the report. */
export type Outcome =
  | 'released'
  | 'would-release'
  /** Its kinds are reported, never released. */
  | 'report-only'
  /** Deleted by someone else since the report. */
  | 'gone'
  /** Its ModifyIndex is no longer the report's: re-allocated or rewritten. */
  | 'changed'
  /** Its only releasable problem was a dead host, and the host is a node of the cluster again. */
  | 'host-back'
  | 'failed';

/** The default --grace: long enough for an ADD or DEL in flight at check time to have finished. */
export const defaultGrace = '10m';

/** One line per key: the verb, the key, its owner, why. */
function describeResult(result: { key: string; outcome: Outcome; detail: string; allocation: ProblemAllocation }): string {
  const { target, ifname, host } = result.allocation;
  const owner = target === undefined ? '' : ` (${[safeCell(target), ifname === undefined ? undefined : safeCell(ifname), host === undefined ? undefined : `on ${safeCell(host)}`].filter(Boolean).join(' ')})`;
  const verb = { released: 'released', 'would-release': 'would release', 'report-only': 'not released', gone: 'left alone', changed: 'left alone', 'host-back': 'left alone', failed: 'FAILED' }[result.outcome];
  return `${verb} ${safeCell(result.key)}${owner}: ${result.detail}`;
}

/** `consul-ipam release --from-report REPORT [--grace DURATION] [--yes]` */
export const releaseFromReportCommand: Command = {
  words: ['release'],
  selectedBy: 'from-report',
  args: [],
  options: ['from-report', 'grace', 'yes'],
  summary: 'free the leaked allocations of a check report (check-and-set deletes)',
  help: `Releases the problem keys of a report written by consul-ipam check -o REPORT that are releasable:
dead-host, duplicate (all but the address written last) and invalid-value. outside-ranges,
non-canonical-key and invalid-key are reported, never released (see consul-ipam check --help).
Each key is deleted only if its ModifyIndex is still the one in the report: a key re-allocated or rewritten
since is left alone and named, as is one whose host has become a Consul node again. Without --yes nothing is
deleted: each key is read and the command says what it would do.

Options:
  --from-report REPORT  the report to act on
  --grace DURATION      refuse a report younger than this (default ${defaultGrace}; like 30s, 10m, 1h30m, 0s):
                        an address is freed only after two observations this far apart
  --yes                 delete; without it, only say what would be deleted

Example:
  consul-ipam check -o report.json && sleep 600 && consul-ipam release --from-report report.json --yes`,

  async run({ values, connect }) {
    const file = values['from-report'] ?? '';
    if (file === '') throw new UsageError('--from-report needs the file name of a consul-ipam check report');
    const graceText = values.grace ?? defaultGrace;
    const grace = parseDuration('--grace', graceText);
    const dryRun = values.yes !== true;

    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new OperationFailure('io', `cannot read the report ${file}`, (error as Error).message);
    }
    const report = readReport(file, text);
    const age = Date.now() - Date.parse(report.createdAt);
    const ripe = new Date(Date.parse(report.createdAt) + grace).toISOString();
    const tooYoung = age < grace;
    if (tooYoung && !dryRun) {
      throw new OperationFailure(
        'refused',
        `the report ${file} is ${age < 0 ? 'from the future' : `${describeDuration(age)} old`}, younger than --grace ${graceText}; nothing released`,
        `it can be acted on from ${ripe}: two observations a grace period apart, so an ADD or DEL in flight at check time has finished`,
      );
    }

    const kv = await connect();
    const needsCatalog = report.allocations.some((a) => a.release && a.problems.some((p) => p.kind === 'dead-host'));
    const nodes = needsCatalog ? new NodeNames(await kv.nodes()) : undefined;
    const results: Array<{ key: string; pool: string; modifyIndex: number; kinds: string[]; outcome: Outcome; detail: string; allocation: ProblemAllocation }> = [];
    for (const allocation of report.allocations) {
      const kinds = allocation.problems.map((p) => p.kind);
      const record = (outcome: Outcome, detail: string) => results.push({ key: allocation.key, pool: allocation.pool, modifyIndex: allocation.modifyIndex, kinds, outcome, detail, allocation });
      if (!allocation.release) {
        record('report-only', `${kinds.join(', ')}: reported, never released`);
        continue;
      }
      try {
        const current = await kv.get(allocation.key, { fresh: true });
        if (current === undefined) {
          record('gone', 'already gone (released since the report)');
          continue;
        }
        if (current.modifyIndex !== allocation.modifyIndex) {
          record('changed', `changed since the report (ModifyIndex ${allocation.modifyIndex}, now ${current.modifyIndex}: ${showValue(current.value)})`);
          continue;
        }
        const reasons = allocation.problems.filter((p) => problemKinds[p.kind].releasable);
        const hostBack = allocation.host !== undefined && nodes?.has(allocation.host);
        if (hostBack && reasons.every((p) => p.kind === 'dead-host')) {
          record('host-back', `host ${safeCell(allocation.host!)} is a node of the Consul cluster again`);
          continue;
        }
        const why = reasons.map((p) => p.kind).join(', ');
        if (dryRun) {
          record('would-release', why);
          continue;
        }
        if (await kv.deleteCas(allocation.key, allocation.modifyIndex)) record('released', why);
        else record('changed', `changed while this command ran (no longer at ModifyIndex ${allocation.modifyIndex})`);
      } catch (error) {
        record('failed', error instanceof CniError ? `${error.message}${error.details ? ` (${error.details})` : ''}` : String(error));
      }
    }

    const count = (outcome: Outcome) => results.filter((r) => r.outcome === outcome).length;
    const acted = dryRun ? count('would-release') : count('released');
    const lines = [
      `report ${file}: made ${report.createdAt} (${age < 0 ? 'in the future' : `${describeDuration(age)} ago`}), ${results.length} problem key${results.length === 1 ? '' : 's'}`,
      ...results.map(describeResult),
      dryRun
        ? `would release ${acted} of ${results.length}; nothing was deleted: run again with --yes to release them${tooYoung ? `, from ${ripe} (the report is younger than --grace ${graceText})` : ''}`
        : `released ${acted} of ${results.length}; ${results.length - acted} left alone${count('failed') > 0 ? `, ${count('failed')} of them because Consul failed` : ''}`,
    ];
    const warnings = report.servers.length > 0 && !report.servers.includes(kv.server) ? [`the report was made against ${report.servers.join(', ')}; this run uses ${kv.server}`] : [];
    return {
      text: lines.join('\n'),
      json: {
        report: file,
        createdAt: report.createdAt,
        dryRun,
        grace: graceText,
        ...(tooYoung ? { actionableFrom: ripe } : {}),
        server: kv.server,
        results: results.map(({ allocation: _allocation, ...result }) => result),
      },
      warnings,
      exitCode: count('failed') > 0 ? 1 : 0,
    };
  },
};
