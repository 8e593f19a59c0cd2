/** What every consul-ipam command looks like to the entry point. */
import type { ConsulKv } from '../services/consul-client';
import type { OptionName, OptionValues } from './options';

/** What a command is given: its arguments, the options, and a way to reach Consul once the arguments are checked. */
export interface CommandInput {
  readonly args: readonly string[];
  readonly values: OptionValues;
  /** The servers the options name, in the order they are tried (for a report to say where it looked). */
  readonly servers: readonly string[];
  /** Picks the first server with a leader; called only after the arguments passed their checks. */
  connect(): Promise<ConsulKv>;
}

/** What a command prints on success: text for people, data for --json, and warnings for stderr. */
export interface CommandOutput {
  readonly text: string;
  readonly json: unknown;
  readonly warnings?: readonly string[];
  /** 1 when the command ran to its end but some of its work failed (the output says which); else 0. */
  readonly exitCode?: 0 | 1;
}

/** One command: how it is called, its help, and what it does. */
export interface Command {
  /** The words that name it, e.g. ["pool", "set"]. */
  readonly words: readonly string[];
  /** Its positional arguments, e.g. ["NAME", "IP"]. */
  readonly args: readonly string[];
  /** Any number of further arguments of this kind may follow `args`, e.g. "POOL" for `check [POOL...]`. */
  readonly rest?: string;
  /**
   * The option that selects this form of a command whose words another form shares: `release --from-report
   * REPORT` is not `release NAME IP`. The form is listed first among commands of the same words.
   */
  readonly selectedBy?: OptionName;
  /** The options it takes besides the global ones. */
  readonly options: readonly OptionName[];
  readonly summary: string;
  /** The text of `consul-ipam <command> --help`, after its usage line. */
  readonly help: string;
  run(input: CommandInput): Promise<CommandOutput>;
}
