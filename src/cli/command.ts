/** What every consul-ipam command looks like to the entry point. */
import type { ConsulKv } from '../services/consul-client';
import type { OptionName, OptionValues } from './options';

/** What a command is given: its arguments, the options, and a way to reach Consul once the arguments are checked. */
export interface CommandInput {
  readonly args: readonly string[];
  readonly values: OptionValues;
  /** Picks the first server with a leader; called only after the arguments passed their checks. */
  connect(): Promise<ConsulKv>;
}

/** What a command prints on success: text for people, data for --json, and warnings for stderr. */
export interface CommandOutput {
  readonly text: string;
  readonly json: unknown;
  readonly warnings?: readonly string[];
}

/** One command: how it is called, its help, and what it does. */
export interface Command {
  /** The words that name it, e.g. ["pool", "set"]. */
  readonly words: readonly string[];
  /** Its positional arguments, e.g. ["NAME", "IP"]. */
  readonly args: readonly string[];
  /** The options it takes besides the global ones. */
  readonly options: readonly OptionName[];
  readonly summary: string;
  /** The text of `consul-ipam <command> --help`, after its usage line. */
  readonly help: string;
  run(input: CommandInput): Promise<CommandOutput>;
}
