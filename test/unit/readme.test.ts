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

test('the ADD diagram in the README is the one the machine draws now', () => {
  const readme = readFileSync(new URL('../../README.md', `file://${__filename}`), 'utf8');
  const embedded = readme.match(/```mermaid\n([\s\S]*?)\n```/)?.[1];
  const generated = readFileSync(new URL('../../docs/state-diagrams/add-command.mmd', `file://${__filename}`), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('%%'))
    .join('\n')
    .trim();
  assert.equal(embedded, generated, 'run npm run diagrams, then paste docs/state-diagrams/add-command.mmd into the README');
});
