/**
 * Runs one delegate of the chain the way a runtime runs a plugin: found in CNI_PATH, the same environment
 * with only CNI_COMMAND changed, the network config on stdin, the result (or a CNI error) read from stdout.
 * https://github.com/containernetworking/cni/blob/main/SPEC.md#section-4-plugin-delegation
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import * as fs from 'node:fs';
import { promisify } from 'node:util';

// The callback API, promisified: node:fs/promises would load Node's readline internals on every start.
const access = promisify(fs.access);
const stat = promisify(fs.stat);
import path from 'node:path';
import { fromPromise } from 'xstate';
import type { Command } from '../cni/environment';
import { CniError, ErrorCode } from '../cni/errors';
import type { Log } from './logger';

/** A delegate's JSON output, kept whole: extra keys such as `pools` are what the next delegate reads. */
export type DelegateResult = Readonly<Record<string, unknown>>;

/** Which delegate to run, how, and with what. */
export interface ExecDelegateInput {
  readonly name: string;
  readonly command: Exclude<Command, 'VERSION'>;
  /** The network config sent on stdin. */
  readonly config: object;
  /** CNI_PATH, split: where the delegate is looked for, in order. */
  readonly cniPath: readonly string[];
  /** The environment this plugin was run with; the delegate gets it with CNI_COMMAND set to `command`. */
  readonly env: NodeJS.ProcessEnv;
  readonly timeoutMs: number;
  readonly log: Log;
}

/** Thrown when no CNI_PATH directory holds the delegate: it never ran, so there is nothing of it to undo. */
export class DelegateNotFoundError extends CniError {}

/** More than any IPAM result could be; a delegate printing without end is cut off rather than filling memory. */
const maxOutputBytes = 1024 * 1024;

/**
 * Runs for every delegate of every command. Resolves with the delegate's result, or with undefined when a
 * GC or STATUS printed nothing (their success has no output). Rejects with a CniError naming the delegate.
 */
export const execDelegateLogic = fromPromise<DelegateResult | undefined, ExecDelegateInput>(async ({ input, signal }) => {
  const file = await findDelegate(input.name, input.cniPath);
  input.log.debug(`delegating ${input.command} to ${file}`);
  const { code, signalName, stdout, timedOut } = await runDelegate(file, input, signal);
  const label = `delegate ${input.name} ${input.command}`;
  input.log.debug(`${label} exited with ${signalName ?? code}; stdout bytes=${stdout.length}`);

  if (timedOut) throw new CniError(ErrorCode.TryAgainLater, `${label} timed out`, `killed after ${input.timeoutMs} ms (ipam.delegate_timeout_ms)`);
  const text = stdout.toString('utf8');
  if (code === 0) {
    if (text.trim() === '') {
      // GC and STATUS succeed silently (spec 1.1.0); every other command must print a result, and the
      // original meta plugin treats a silent one as a failure.
      if (input.command === 'GC' || input.command === 'STATUS') return undefined;
      throw new CniError(ErrorCode.IoFailure, `${label} printed nothing`, 'a delegate must print an IPAM result on ADD, DEL and CHECK');
    }
    const result = parseObject(text);
    if (result === undefined) throw new CniError(ErrorCode.DecodingFailure, `${label} printed something that is not a JSON object`, excerpt(text));
    return result;
  }
  const reported = cniErrorOf(text);
  if (reported) {
    // The delegate's own code is kept, so the runtime sees why (a full pool, an unreachable Consul...):
    // codes are the delegate's to define, hence the cast out of our own table.
    throw new CniError(reported.code as ErrorCode, `${label} failed: ${reported.msg}`, reported.details ?? '');
  }
  const how = signalName ? `was killed by ${signalName}` : `exited with ${code}`;
  throw new CniError(ErrorCode.IoFailure, `${label} ${how} without a CNI error`, text.trim() === '' ? 'stdout was empty (its stderr went to ours)' : excerpt(text));
});

/**
 * The delegate's file: the first `dir/name` in CNI_PATH that is an executable regular file, as a runtime looks
 * it up; a name holding a "/" is that path (relative to the working directory), as the original's `which_in` does.
 */
async function findDelegate(name: string, cniPath: readonly string[]): Promise<string> {
  const candidates = name.includes('/') ? [path.resolve(name)] : cniPath.map((dir) => path.join(dir, name));
  for (const file of candidates) {
    try {
      if ((await stat(file)).isFile()) {
        await access(file, constants.X_OK);
        return file;
      }
    } catch {
      // Not here, or not executable: keep looking, as PATH lookup does.
    }
  }
  throw new DelegateNotFoundError(
    ErrorCode.IoFailure,
    name.includes('/') ? `delegate ${name} not found` : `delegate ${name} not found in CNI_PATH`,
    name.includes('/') ? `no executable file at ${path.resolve(name)}` : cniPath.length === 0 ? 'CNI_PATH is empty' : `no executable file ${name} in ${cniPath.join(':')}`,
  );
}

interface Exited {
  readonly code: number | null;
  readonly signalName: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly timedOut: boolean;
}

/**
 * How long stdout may stay open once the delegate has exited: what it printed is in the pipe by then; a
 * process it left behind holding stdout (`sleep 1000 &` in a script) is not waited for.
 */
const stdoutGraceMs = 200;

function runDelegate(file: string, input: ExecDelegateInput, abort: AbortSignal): Promise<Exited> {
  return new Promise((resolve, reject) => {
    // detached: the delegate leads a process group of its own, so a timeout also kills whatever it started.
    // Its stderr is relayed to ours, so its warnings reach the runtime's log as ours do, and a process it left
    // behind holds our pipe, never the runtime's (which a runtime reading it to the end would wait on).
    const child = spawn(file, [], { env: { ...input.env, CNI_COMMAND: input.command }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    const chunks: Buffer[] = [];
    let size = 0;
    let timedOut = false;
    let settled = false;
    let grace: NodeJS.Timeout | undefined;
    // SIGKILL: a delegate past its budget is hung; a polite signal it could ignore would hang us too.
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone already (ESRCH): at most the delegate itself is left
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, input.timeoutMs);
    abort.addEventListener('abort', kill, { once: true });
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      abort.removeEventListener('abort', kill);
      return true;
    };
    const finish = (code: number | null, signalName: NodeJS.Signals | null): void => {
      if (!settle()) return;
      if (size > maxOutputBytes) {
        reject(new CniError(ErrorCode.IoFailure, `delegate ${input.name} ${input.command} printed too much`, `more than ${maxOutputBytes} bytes on stdout`));
        return;
      }
      resolve({ code, signalName, stdout: Buffer.concat(chunks), timedOut });
    };

    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxOutputBytes) return kill();
      chunks.push(chunk);
    });
    // A delegate that exits without reading stdin closes the pipe: its exit status tells what happened.
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(input.config));
    child.once('error', (error) => {
      if (settle()) reject(new CniError(ErrorCode.IoFailure, `delegate ${input.name} ${input.command} could not be run`, `${file}: ${error.message}`));
    });
    child.once('exit', (code, signalName) => {
      if (settled) return;
      grace = setTimeout(() => {
        input.log.warn(`delegate ${input.name} ${input.command} exited with ${signalName ?? code}, but a process it started still holds its stdout or stderr: not waiting for it`);
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signalName);
      }, stdoutGraceMs);
    });
    child.once('close', finish);
  });
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A CNI error object as the spec defines it: a numeric code and a message, details optional. */
function cniErrorOf(text: string): { code: number; msg: string; details?: string } | undefined {
  const value = parseObject(text);
  if (!value || !Number.isInteger(value.code) || typeof value.msg !== 'string') return undefined;
  return { code: value.code as number, msg: value.msg, ...(typeof value.details === 'string' ? { details: value.details } : {}) };
}

/** Enough of a delegate's output to see what went wrong, never a whole payload. */
function excerpt(text: string): string {
  const trimmed = text.trim();
  return trimmed.length > 300 ? `${trimmed.slice(0, 297)}...` : trimmed;
}
