/**
 * Reading stdin, kept apart from the config codecs so that the "about" run and VERSION load no io-ts.
 */
import { fstatSync, readSync } from 'node:fs';
import { CniError, ErrorCode } from './errors';

/** Stdin larger than this is refused before parsing: a network config is a few KB. */
export const maxConfigBytes = 1024 * 1024;

/** Reads just the cniVersion, for printing an error in the config's version when the rest is broken. */
export function sniffVersion(stdin: string): string | undefined {
  try {
    const version = (JSON.parse(stdin) as { cniVersion?: unknown } | null)?.cniVersion;
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A terminal or /dev/null on stdin: nothing to read (and a terminal would block the read). fstat answers it
 * without loading node:tty, which every ADD would pay for.
 */
function stdinIsCharacterDevice(): boolean {
  try {
    return fstatSync(0).isCharacterDevice();
  } catch {
    return false; // no stdin at all: the read below reports it
  }
}

/**
 * Reads the process's stdin whole, refusing more than a network config could ever be (and stopping there, so
 * an endless stdin cannot exhaust memory). A runtime hands us a pipe: it is read with synchronous reads to end
 * of file; process.stdin's stream machinery is used only where a read is refused (a non-blocking descriptor).
 */
export async function readProcessStdin(): Promise<string> {
  if (stdinIsCharacterDevice()) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  const take = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > maxConfigBytes) throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is too large', `limit is ${maxConfigBytes} bytes`);
    chunks.push(chunk);
  };
  const buffer = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let read: number;
    try {
      read = readSync(0, buffer, 0, buffer.length, null);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EOF') break;
      if (code !== 'EAGAIN') throw new CniError(ErrorCode.IoFailure, 'cannot read the network config on stdin', (error as Error).message);
      for await (const chunk of process.stdin) take(chunk as Buffer);
      break;
    }
    if (read === 0) break;
    take(Buffer.from(buffer.subarray(0, read)));
  }
  return Buffer.concat(chunks).toString('utf8');
}
