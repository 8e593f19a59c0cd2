import { CniError, ErrorCode } from './errors';

/** The commands a runtime may put in CNI_COMMAND. */
export const commands = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof commands)[number];

/** What the runtime told us through the environment, validated. */
export interface CniEnvironment {
  readonly command: Command;
  /** CNI_CONTAINERID: the runtime's ID (Nomad: the allocation ID). Empty for GC and STATUS. */
  readonly containerId: string;
  readonly ifname: string;
  readonly netns: string;
  /** CNI_ARGS as key/value pairs. Unknown keys are kept and ignored: Nomad sends several. */
  readonly args: ReadonlyMap<string, string>;
  readonly path: readonly string[];
}

// https://github.com/containernetworking/cni/blob/main/SPEC.md#parameters
const containerIdPattern = /^[a-z0-9][a-z0-9_.\-]*$/i;
const maxIfnameLength = 15;

/**
 * Whether text is a container ID as CNI_CONTAINERID must spell it. The spec gives a network's `name` the same
 * rule, so it is used for both. Anything read back (a `target` or `network` in KV) passes this before it is used.
 */
export function isContainerId(text: unknown): text is string {
  return typeof text === 'string' && containerIdPattern.test(text);
}

/** Why text is not an interface name as CNI_IFNAME must spell it, or undefined when it is one. */
export function ifnameProblem(text: string): string | undefined {
  if (text === '') return 'expected an interface name';
  if (text.length > maxIfnameLength) return `expected at most ${maxIfnameLength} characters`;
  if (text === '.' || text === '..' || /[/:\s]/.test(text)) return 'expected no "/", ":" or white space, and not "." or ".."';
  return undefined;
}

/** Reads CNI_* variables; fails with code 4 naming the variable and its value. Returns undefined when CNI_COMMAND is unset (the "about" run). */
export function readEnvironment(env: NodeJS.ProcessEnv): CniEnvironment | undefined {
  const rawCommand = env.CNI_COMMAND;
  if (rawCommand === undefined || rawCommand === '') return undefined;
  if (!(commands as readonly string[]).includes(rawCommand)) {
    throw invalid('CNI_COMMAND', rawCommand, `expected one of ${commands.join(', ')}`);
  }
  const command = rawCommand as Command;
  const perContainer = command === 'ADD' || command === 'DEL' || command === 'CHECK';

  const containerId = env.CNI_CONTAINERID ?? '';
  if (perContainer && !isContainerId(containerId)) {
    throw invalid('CNI_CONTAINERID', containerId, 'expected a letter or digit, then letters, digits, "_", "." or "-"');
  }
  const ifname = env.CNI_IFNAME ?? '';
  if (perContainer) checkIfname(ifname);

  return {
    command,
    containerId,
    ifname,
    netns: env.CNI_NETNS ?? '',
    args: parseArgs(env.CNI_ARGS ?? ''),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}

function checkIfname(ifname: string): void {
  const problem = ifnameProblem(ifname);
  if (problem !== undefined) throw invalid('CNI_IFNAME', ifname, problem);
}

/** CNI_ARGS is "K=V;K2=V2". A pair without "=" is malformed. */
function parseArgs(raw: string): Map<string, string> {
  const args = new Map<string, string>();
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid('CNI_ARGS', raw, `expected K=V pairs separated by ";", got ${JSON.stringify(pair)}`);
    args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return args;
}

function invalid(variable: string, value: string, expected: string): CniError {
  return new CniError(ErrorCode.InvalidEnvironment, `invalid ${variable} ${JSON.stringify(value)}: ${expected}`);
}
