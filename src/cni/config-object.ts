/**
 * The first steps of reading stdin, shared by every executable: one JSON object, then its cniVersion, checked
 * before anything else so that every later error is printed in the config's own version.
 */
import { problemText } from './decode-report';
import { CniError, ErrorCode } from './errors';
import { maxConfigBytes } from './stdin';
import { checkVersion, type CniVersion } from './versions';

/** Parses stdin as a JSON object; fails with code 6 when it is empty, too large or not JSON, 7 when it is JSON but not an object. */
export function parseConfigObject(stdin: string): Record<string, unknown> {
  if (stdin.trim() === '') throw new CniError(ErrorCode.DecodingFailure, 'no network config on stdin', 'expected a JSON object');
  if (Buffer.byteLength(stdin) > maxConfigBytes) {
    throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is too large', `limit is ${maxConfigBytes} bytes`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (error) {
    throw new CniError(ErrorCode.DecodingFailure, 'network config on stdin is not valid JSON', (error as Error).message);
  }
  // Valid JSON that is not an object is a network config that is wrong, not one that could not be decoded.
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    // Named by its type, never rendered: a value nested 100,000 deep would overflow the stack.
    const got = Array.isArray(raw) ? 'an array' : raw === null ? 'null' : `a ${typeof raw}`;
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: expected a JSON object, got ${got}`);
  }
  return raw as Record<string, unknown>;
}

/** The one cniVersion check of every executable: a string (else code 7 naming the field) that this plugin serves (else 1). */
export function readVersion(raw: Readonly<Record<string, unknown>>): CniVersion {
  if (typeof raw.cniVersion !== 'string') {
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: ${problemText({ path: 'cniVersion', expected: 'a CNI version string', actual: raw.cniVersion })}`);
  }
  return checkVersion(raw.cniVersion);
}
