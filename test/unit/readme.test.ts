import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ErrorCode } from '../../src/cni/errors';

test("the README's error table lists exactly the codes the plugin can print", () => {
  const readme = readFileSync(new URL('../../README.md', `file://${__filename}`), 'utf8');
  const table = readme.slice(readme.indexOf('## Errors'), readme.indexOf('## Logs'));
  const documented = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(documented, [...new Set(Object.values(ErrorCode))].sort((a, b) => a - b));
});
