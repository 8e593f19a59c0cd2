/**
 * The process around the commands: parse argv, pick the command, check its arguments before anything reaches
 * Consul, run it, print its output (or the error) and choose the exit code. Only this module writes output.
 */
import { version } from '../../package.json';
import { silentLog } from '../services/logger';
import { reportLine, reportOf, UsageError, type Report } from './cli-errors';
import type { Command } from './command';
import { connect } from './connect';
import { connectionOptions, givenOptions, globalOptions, parseCommandLine, type OptionName, type OptionValues } from './options';
import { poolListCommand } from './pool-list';
import { poolSetCommand } from './pool-set';
import { poolShowCommand } from './pool-show';
import { releaseCommand } from './release';
import { checkCommand } from './check';
import { releaseFromReportCommand } from './release-from-report';
import { rekeyCommand } from './rekey';

/** Every command, in the order --help lists them; a form selected by an option comes before its plain form. */
export const commands: readonly Command[] = [poolSetCommand, poolListCommand, poolShowCommand, checkCommand, releaseFromReportCommand, releaseCommand, rekeyCommand];

/** What the process gets and gives. */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  writeStdout(text: string): void;
  writeStderr(text: string): void;
}

const optionUsage: Partial<Record<OptionName, string>> = {
  range: '--range SUBNET[,START,END,GATEWAY]...',
  force: '[--force]',
  target: '[--target ID]',
  output: '[-o REPORT]',
  'from-report': '--from-report REPORT',
  grace: '[--grace DURATION]',
};

/** How the command is named in lists: its words, its selecting option, its arguments. */
const callOf = (command: Command): string =>
  [...command.words, ...(command.selectedBy ? [optionUsage[command.selectedBy] ?? `--${command.selectedBy}`] : []), ...command.args, ...(command.rest ? [`[${command.rest}...]`] : [])].join(' ');

const usageOf = (command: Command): string =>
  ['consul-ipam [options]', callOf(command), ...command.options.filter((name) => name !== command.selectedBy).map((name) => optionUsage[name] ?? `[--${name}]`)].join(' ');

const globalHelp = (): string => {
  const width = Math.max(...commands.map((c) => callOf(c).length));
  return `consul-ipam ${version}: manage the IP pools of ipam-da-consul in Consul KV

Usage: consul-ipam [options] <command> [arguments]

Commands:
${commands.map((c) => `  ${callOf(c).padEnd(width)}  ${c.summary}`).join('\n')}

Options, for every command (each defaults to the environment variable Consul's own CLI reads):
  --consul URL       a Consul HTTP address; repeat to give several: they are tried in order and the first
                     with a cluster leader is used (default: $CONSUL_HTTP_ADDR, else http://127.0.0.1:8500)
  --token TOKEN      ACL token (default: $CONSUL_HTTP_TOKEN); prefer --token-file, argv is visible to all
  --token-file PATH  read the ACL token from this file (default: $CONSUL_HTTP_TOKEN_FILE)
  --ca-file PATH     CA certificate(s) to trust for https:// servers (default: $CONSUL_CACERT)
  --cert-file PATH   client certificate for https:// servers (default: $CONSUL_CLIENT_CERT)
  --key-file PATH    its private key (default: $CONSUL_CLIENT_KEY)
  --json             print the result as JSON on stdout (errors too, as {"error": {...}})
  -h, --help         this help; after a command, that command's help
  --version          print the version

Exit codes: 0 done; 1 the operation failed (Consul unreachable, permission denied, pool or address missing,
change refused); 2 the command line is wrong. Errors are one line on stderr: "consul-ipam: <message>".
`;
};

const commandHelp = (command: Command): string => `Usage: ${usageOf(command)}

${command.help}

The options of every command (--consul, --token, --json, ...): see consul-ipam --help.
`;

/** The command named by the first words, and its arguments; a UsageError for an unknown one. */
function findCommand(words: readonly string[], values: OptionValues): Command | undefined {
  const command = commands.find((c) => c.words.every((word, i) => words[i] === word) && (c.selectedBy === undefined || values[c.selectedBy] !== undefined));
  if (command !== undefined) return command;
  if (words[0] === 'pool') {
    const known = commands.filter((c) => c.words[0] === 'pool').map((c) => c.words[1]);
    if (words.length === 1 && values.help) return undefined;
    throw new UsageError(words.length === 1 ? `pool needs a subcommand: ${known.join(', ')}` : `unknown command "pool ${words[1]}"; pool commands: ${known.join(', ')}`);
  }
  throw new UsageError(`unknown command ${JSON.stringify(words[0])}; commands: ${[...new Set(commands.map((c) => c.words[0]))].join(', ')}`);
}

/** Refuses options the command does not take and surplus or missing arguments, naming the command's usage. */
function checkCall(command: Command, args: readonly string[], values: OptionValues): void {
  const name = [...command.words, ...(command.selectedBy ? [`--${command.selectedBy}`] : [])].join(' ');
  const foreign = givenOptions(values).filter((option) => !globalOptions.includes(option) && !command.options.includes(option));
  if (foreign.length > 0) throw new UsageError(`${foreign.map((o) => `--${o}`).join(', ')} does not apply to ${name}`);
  if (args.length > command.args.length && command.rest === undefined) throw new UsageError(`${name}: unexpected argument ${JSON.stringify(args[command.args.length])}`);
  if (args.length < command.args.length) throw new UsageError(`${name}: missing ${command.args.slice(args.length).join(' and ')}`);
}

/** Runs one invocation and returns the exit code. Never throws, never prints a stack trace. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let json = argv.includes('--json');
  let helpFor = 'consul-ipam --help';
  try {
    const { words, values } = parseCommandLine(argv);
    json = values.json === true;
    if (values.version) {
      io.writeStdout(json ? `${JSON.stringify({ version })}\n` : `consul-ipam ${version}\n`);
      return 0;
    }
    if (argv.length === 0) {
      // Run bare, as Nomad runs every file of its CNI bin dir to fingerprint it (where the release tarball
      // puts this CLI beside the plugins): exit 0 with a line naming the version, then the usage.
      io.writeStdout(`consul-ipam v${version}: operator CLI for ipam-da-consul pools\n${globalHelp()}`);
      return 0;
    }
    const named = words[0] === 'help' ? words.slice(1) : words;
    const help = values.help === true || words[0] === 'help';
    if (named.length === 0) {
      if (help) {
        io.writeStdout(globalHelp());
        return 0;
      }
      throw new UsageError('a command is missing');
    }
    const command = findCommand(named, { ...values, help });
    if (command === undefined) {
      io.writeStdout(`${commands.filter((c) => c.words[0] === 'pool').map((c) => `Usage: ${usageOf(c)}\n  ${c.summary}`).join('\n')}\n`);
      return 0;
    }
    helpFor = `consul-ipam ${command.words.join(' ')} --help`;
    if (help) {
      io.writeStdout(commandHelp(command));
      return 0;
    }
    const args = named.slice(command.words.length);
    checkCall(command, args, values);
    const consul = connectionOptions(values, io.env);
    const output = await command.run({ args, values, servers: consul.servers, connect: () => connect(consul, silentLog) });
    for (const warning of output.warnings ?? []) io.writeStderr(`consul-ipam: warning: ${warning}\n`);
    io.writeStdout(json ? `${JSON.stringify(output.json, null, 2)}\n` : `${output.text}\n`);
    return output.exitCode ?? 0;
  } catch (caught) {
    const report: Report = withHelpHint(reportOf(caught), helpFor);
    io.writeStderr(`${reportLine(report)}\n`);
    if (json) io.writeStdout(`${JSON.stringify({ error: { reason: report.reason, message: report.message, ...(report.details ? { details: report.details } : {}) } }, null, 2)}\n`);
    return report.exitCode;
  }
}

const withHelpHint = (report: Report, helpFor: string): Report => (report.exitCode === 2 ? { ...report, details: `see ${helpFor}` } : report);
