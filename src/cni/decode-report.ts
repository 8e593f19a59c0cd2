import * as t from 'io-ts';
import { CniError, ErrorCode } from './errors';

/** One decode failure, ready for a person: where, what was expected, what was there. */
export interface DecodeProblem {
  readonly path: string;
  readonly expected: string;
  readonly actual: unknown;
}

/**
 * Turns io-ts errors into problems with dotted paths ("ipam.consul_servers[1]").
 * Keys that are not fields (an intersection's member index) are left out of the path.
 */
export function describeDecodeErrors(errors: t.Errors, root: string): DecodeProblem[] {
  const seen = new Set<string>();
  const problems: DecodeProblem[] = [];
  for (const error of errors) {
    let path = root;
    for (let i = 1; i < error.context.length; i++) {
      const entry = error.context[i]!;
      const parent = baseTag(error.context[i - 1]!.type);
      if (parent === 'IntersectionType' || parent === 'UnionType') continue;
      path += parent === 'ArrayType' ? `[${entry.key}]` : path === '' ? entry.key : `.${entry.key}`;
    }
    const last = error.context[error.context.length - 1];
    const expected = error.message ?? last?.type.name ?? 'a valid value';
    const key = `${path}\u0000${expected}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push({ path, expected, actual: error.value });
  }
  return problems;
}

/** The kind of a codec, looking through refinements (a non-empty array is still an array). */
function baseTag(codec: t.Decoder<unknown, unknown>): string | undefined {
  let current = codec as { _tag?: string; type?: unknown };
  while (current._tag === 'RefinementType' && current.type) current = current.type as typeof current;
  return current._tag;
}

/** "expected an http:// or https:// URL at ipam.consul_servers[1], got 42" */
export function problemText({ path, expected, actual }: DecodeProblem): string {
  const where = path === '' ? '' : ` at ${path}`;
  return actual === undefined ? `missing ${path}: expected ${expected}` : `expected ${expected}${where}, got ${showValue(actual)}`;
}

/** Short, safe rendering of a bad value: long input is cut, so an error never echoes a whole payload. */
export function showValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** At most this many problems are listed: a config with 20,000 bad entries must not make a 3 MB error. */
const maxProblemsListed = 10;

/** The first problem for the message, the next few for the details, and how many more were left out. */
export function summarizeProblems(problems: readonly DecodeProblem[]): { first: string; details: string } {
  const [first, ...rest] = problems.slice(0, maxProblemsListed).map(problemText);
  const more = problems.length > maxProblemsListed ? [`and ${problems.length - maxProblemsListed} more`] : [];
  return { first: first ?? 'unknown problem', details: [...rest, ...more].join('; ') };
}

/** The invalid-config error (7) for a failed decode of stdin: the first problem in the message, a few more in the details. */
export function invalidConfigError(errors: t.Errors, root: string): CniError {
  const { first, details } = summarizeProblems(describeDecodeErrors(errors, root));
  return new CniError(ErrorCode.InvalidConfig, `invalid network config: ${first}`, details);
}
