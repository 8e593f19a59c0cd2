/**
 * The two ways a consul-ipam run can fail, and how each is told to the operator.
 *
 * A usage error (exit 2) means the command line itself is wrong: nothing was sent to Consul. An operational
 * failure (exit 1) means the command was understood but could not be done: Consul unreachable, permission
 * denied, pool missing, a change refused. Errors from the plugin's own modules arrive as CniError and are
 * operational; their wording names the plugin's config fields, which are translated to this CLI's options.
 */
import { CniError, ErrorCode } from '../cni/errors';

/** Thrown when the command line is wrong (unknown option, bad argument value); exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Why an operation failed, as `--json` reports it: stable words a script can test. */
export type FailureReason =
  | 'unreachable'
  | 'permission-denied'
  | 'not-found'
  | 'conflict'
  | 'refused'
  | 'invalid-data'
  | 'consul-error'
  | 'io'
  | 'unexpected';

/** Thrown when an understood command could not be carried out; exit code 1. */
export class OperationFailure extends Error {
  override readonly name = 'OperationFailure';

  constructor(
    readonly reason: FailureReason,
    message: string,
    readonly details = '',
  ) {
    super(message);
  }
}

/** What the operator is told: one line of text, and the same as data for `--json`. */
export interface Report {
  readonly exitCode: 1 | 2;
  readonly reason: FailureReason | 'usage';
  readonly message: string;
  readonly details?: string;
}

const reasonOfCode: Partial<Record<number, FailureReason>> = {
  [ErrorCode.TryAgainLater]: 'unreachable',
  [ErrorCode.PermissionDenied]: 'permission-denied',
  [ErrorCode.PoolNotFound]: 'not-found',
  [ErrorCode.InvalidPool]: 'invalid-data',
  [ErrorCode.InvalidAllocation]: 'invalid-data',
  [ErrorCode.KvFailure]: 'consul-error',
  [ErrorCode.IoFailure]: 'io',
};

/** The plugin's messages name its config fields ("check ipam.consul_token"); here they are options. */
export function cliWording(text: string): string {
  return text.replace(/ipam\.consul_(token_file|token|ca_file|cert_file|key_file|servers)\b/g, (_, field: string) =>
    field === 'servers' ? '--consul' : `--${field.replace('_file', '-file')}`,
  );
}

/** Turns anything caught into a report; an unforeseen error gives its message, never its stack. */
export function reportOf(error: unknown): Report {
  if (error instanceof UsageError) return { exitCode: 2, reason: 'usage', message: cliWording(error.message) };
  const withDetails = (details: string) => (details === '' ? {} : { details: cliWording(details) });
  if (error instanceof OperationFailure) {
    return { exitCode: 1, reason: error.reason, message: error.message, ...withDetails(error.details) };
  }
  if (error instanceof CniError) {
    const reason = reasonOfCode[error.code] ?? 'unexpected';
    return { exitCode: 1, reason, message: cliWording(error.message), ...withDetails(error.details) };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { exitCode: 1, reason: 'unexpected', message: `unexpected failure: ${message}` };
}

/** The one stderr line: "consul-ipam: <message> (<details>)". */
export function reportLine(report: Report): string {
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ');
  return `consul-ipam: ${oneLine(report.message)}${report.details ? ` (${oneLine(report.details)})` : ''}`;
}
