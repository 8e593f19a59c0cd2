/**
 * The command line: one strict util.parseArgs pass over every option any command knows, then the Consul
 * connection settings resolved from the options, with the same environment variables as Consul's own CLI.
 * https://developer.hashicorp.com/consul/commands#environment-variables
 */
import { parseArgs } from 'node:util';
import { isLeft } from 'fp-ts/Either';
import { HttpUrl } from '../cni/codecs';
import { defaults } from '../cni/config';
import type { ConsulOptions } from '../services/consul-client';
import { UsageError } from './cli-errors';

/** Every option of every command; each command says which of the command-specific ones it takes. */
export const optionSpec = {
  consul: { type: 'string', multiple: true },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'ca-file': { type: 'string' },
  'cert-file': { type: 'string' },
  'key-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  range: { type: 'string', multiple: true },
  force: { type: 'boolean' },
  target: { type: 'string' },
  output: { type: 'string', short: 'o' },
  'from-report': { type: 'string' },
  grace: { type: 'string' },
  yes: { type: 'boolean' },
  prometheus: { type: 'boolean' },
} as const;

/** The name of an option, without its dashes. */
export type OptionName = keyof typeof optionSpec;

/** Options every command accepts. */
export const globalOptions: readonly OptionName[] = ['consul', 'token', 'token-file', 'ca-file', 'cert-file', 'key-file', 'json', 'help', 'version'];

/** The values given on the command line; an option not given is absent. */
export interface OptionValues {
  readonly consul?: string[];
  readonly token?: string;
  readonly 'token-file'?: string;
  readonly 'ca-file'?: string;
  readonly 'cert-file'?: string;
  readonly 'key-file'?: string;
  readonly json?: boolean;
  readonly help?: boolean;
  readonly version?: boolean;
  readonly range?: string[];
  readonly force?: boolean;
  readonly target?: string;
  readonly output?: string;
  readonly 'from-report'?: string;
  readonly grace?: string;
  readonly yes?: boolean;
  readonly prometheus?: boolean;
}

/** A parsed command line: the words (command and arguments) and the options, wherever they were written. */
export interface CommandLine {
  readonly words: readonly string[];
  readonly values: OptionValues;
}

/** Parses argv; an unknown option or a missing value is a UsageError in parseArgs' words, without its long advice. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: optionSpec, allowPositionals: true, strict: true });
    return { words: positionals, values: values as OptionValues };
  } catch (error) {
    const message = (error as Error).message.split(/\.\s/)[0]!.replace(/'/g, '');
    throw new UsageError(message.charAt(0).toLowerCase() + message.slice(1));
  }
}

/** The options actually given, by name, for refusing those a command does not take. */
export function givenOptions(values: OptionValues): OptionName[] {
  return (Object.keys(values) as OptionName[]).filter((name) => values[name] !== undefined);
}

/** The default server when neither --consul nor CONSUL_HTTP_ADDR says otherwise, as for Consul's CLI. */
export const defaultConsulAddress = 'http://127.0.0.1:8500';

const truthy = (value: string | undefined): boolean => value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());

/**
 * One server address as a URL. CONSUL_HTTP_ADDR is often written without a scheme ("127.0.0.1:8500");
 * Consul's CLI then uses https when CONSUL_HTTP_SSL is true, and so do we.
 */
export function serverUrl(source: string, text: string, env: NodeJS.ProcessEnv): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `${truthy(env.CONSUL_HTTP_SSL) ? 'https' : 'http'}://${text}`;
  const decoded = HttpUrl.decode(withScheme);
  if (isLeft(decoded)) {
    const why = decoded.left[0]?.message ?? 'expected an http:// or https:// URL';
    throw new UsageError(`${source} ${JSON.stringify(text)} is not a Consul HTTP address: ${why.startsWith('expected') ? why : `expected an http:// or https:// URL, ${why}`}`);
  }
  return decoded.right;
}

/**
 * How to reach Consul, from the options, else the environment: the same settings the plugin reads from
 * ipam.consul_*, so both reach the same servers with the same token. Files are read later, by gotOptions.
 */
export function connectionOptions(values: OptionValues, env: NodeJS.ProcessEnv): ConsulOptions {
  const servers = values.consul?.length
    ? values.consul.map((text) => serverUrl('--consul', text, env))
    : [env.CONSUL_HTTP_ADDR ? serverUrl('CONSUL_HTTP_ADDR', env.CONSUL_HTTP_ADDR, env) : defaultConsulAddress];
  if (values.token !== undefined && values['token-file'] !== undefined) {
    throw new UsageError('--token and --token-file both give the ACL token: use one of them');
  }
  // An option beats the environment, and a token given on the command line beats any token file.
  const fromFlags = values.token !== undefined || values['token-file'] !== undefined;
  const token = fromFlags ? values.token : env.CONSUL_HTTP_TOKEN || undefined;
  const tokenFile = fromFlags ? values['token-file'] : token === undefined ? env.CONSUL_HTTP_TOKEN_FILE || undefined : undefined;
  const file = (value: string | undefined, variable: string): string | undefined => value ?? (env[variable] || undefined);
  const caFile = file(values['ca-file'], 'CONSUL_CACERT');
  const certFile = file(values['cert-file'], 'CONSUL_CLIENT_CERT');
  const keyFile = file(values['key-file'], 'CONSUL_CLIENT_KEY');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError(`a client certificate needs both --cert-file and --key-file; only ${certFile === undefined ? '--key-file' : '--cert-file'} was given`);
  }
  return {
    servers,
    ...(token === undefined ? {} : { token }),
    ...(tokenFile === undefined ? {} : { tokenFile }),
    ...(caFile === undefined ? {} : { caFile }),
    ...(certFile === undefined ? {} : { certFile }),
    ...(keyFile === undefined ? {} : { keyFile }),
    connectTimeoutMs: defaults.connectTimeoutMs,
    requestTimeoutMs: defaults.requestTimeoutMs,
  };
}
