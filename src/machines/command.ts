/** What every command machine takes and gives, and the few helpers they share. */
import type { CniEnvironment } from '../cni/environment';
import { CniError, ErrorCode } from '../cni/errors';
import type { IpamResult } from '../cni/result';
import { sniffVersion } from '../cni/stdin';
import type { Log } from '../services/logger';

/** Input of ADD, DEL and CHECK: what the runtime gave the process, and the collaborators it runs with. */
export interface CommandInput {
  readonly env: CniEnvironment;
  readonly stdin: string;
  readonly log: Log;
}

/** How a command ended. Machines never throw: failure is data, and only bin/ turns it into stdout and an exit code. */
export type CommandOutput =
  /** `result` is printed on stdout; GC and STATUS print nothing on success. */
  | { readonly type: 'ok'; readonly result?: IpamResult }
  | { readonly type: 'error'; readonly error: CniError; readonly cniVersion?: string };

/** Reads a context field that an earlier state set; a missing one is a bug in the machine, reported as code 109. Every machine's one definition. */
export function present<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new CniError(ErrorCode.Unexpected, `a command machine reached a state without its ${name}`);
  return value;
}

/**
 * The output at a final state: the error recorded on the way if there is one (in the config's cniVersion, or
 * the one sniffed from stdin when the config did not parse), else `ok` with the result.
 */
export function finalOutput(
  context: { readonly input: CommandInput; readonly config?: { readonly cniVersion: string }; readonly error?: CniError },
  result: () => IpamResult | undefined,
): CommandOutput {
  const cniVersion = context.config?.cniVersion ?? sniffVersion(context.input.stdin);
  if (context.error) return { type: 'error', error: context.error, ...(cniVersion ? { cniVersion } : {}) };
  const ok = result();
  return ok ? { type: 'ok', result: ok } : { type: 'ok' };
}

/** What the steps of a command are told about the container and this host (ipam.data_dir), once the config is read. */
export function thisContainer(context: { readonly input: CommandInput; readonly config?: { readonly dataDir: string } }) {
  const { env, log } = context.input;
  return { containerId: env.containerId, ifname: env.ifname, dataDir: present(context.config, 'config').dataDir, log };
}
