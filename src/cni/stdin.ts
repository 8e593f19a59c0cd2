/**
 * Reading stdin, kept apart from the config codecs so that the "about" run and VERSION load no io-ts.
 */
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

/** Reads the process's stdin whole, refusing more than a network config could ever be. */
export async function readProcessStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > maxConfigBytes) throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is too large', `limit is ${maxConfigBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
