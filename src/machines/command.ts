/** What every command machine takes and gives. */
import type { CniEnvironment } from '../cni/environment';
import type { CniError } from '../cni/errors';
import type { IpamResult } from '../cni/result';
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
