// scripts/bundle-plugins.mjs' prototypeNamespaces: esbuild's CommonJS namespace helper replaced by a cheaper
// one in every executable. What ES module code reads through a namespace must not change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
// @ts-expect-error: a build script, plain JavaScript
import { prototypeNamespaces, startupBuildOptions } from '../../scripts/bundle-plugins.mjs';

/**
 * ES module code reading CommonJS modules (files of its own, node builtins) through each import form; in an
 * .mjs file esbuild's "node mode" (`default` is always module.exports, as in got), in a .js file not (`default`
 * of a module marked `__esModule` is its own, as in this project's TypeScript).
 */
function fixture(kind: 'mjs' | 'js'): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'namespaces-'));
  writeFileSync(path.join(dir, 'counter.cjs'), 'exports.count = 0; exports.bump = () => { exports.count++; }; exports.default = "its own default";');
  writeFileSync(path.join(dir, 'marked.cjs'), 'Object.defineProperty(exports, "__esModule", { value: true }); exports.default = "marked default"; exports.name = "marked";');
  writeFileSync(
    path.join(dir, `entry.${kind}`),
    [
      "import * as fs from 'node:fs';",
      "import http, { STATUS_CODES } from 'node:http';",
      "import process from 'node:process';",
      "import counter, * as counterNs from './counter.cjs';",
      "import marked, * as markedNs from './marked.cjs';",
      'counterNs.bump();',
      'const seen = {',
      "  fs: fs.readFileSync === require('node:fs').readFileSync && typeof fs.default.statSync,",
      "  http: http.request === require('node:http').request && STATUS_CODES[404],",
      '  process: process.pid === globalThis.process.pid,',
      '  live: counterNs.count, defaultIsExports: counter === counterNs.default && counter.count, ownDefault: counterNs.default.default,',
      "  marked: [typeof marked === 'string' ? marked : typeof marked, markedNs.name, typeof markedNs.default, 'name' in markedNs],",
      '};',
      'console.log(JSON.stringify(seen));',
    ].join('\n'),
  );
  return path.join(dir, `entry.${kind}`);
}

async function bundle(entry: string, minify: boolean): Promise<string> {
  const { outputFiles } = await build({ ...startupBuildOptions, entryPoints: [entry], write: false, minify, logLevel: 'silent' });
  return outputFiles![0]!.text;
}

const run = (code: string) => {
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as unknown;
};

for (const minify of [true, false]) {
  for (const kind of ['mjs', 'js'] as const) {
    test(`a ${minify ? 'minified' : 'readable'} bundle of an .${kind} file reads every namespace as it did before the helper was replaced`, async () => {
      const code = await bundle(fixture(kind), minify);
      const replaced = prototypeNamespaces(code);
      assert.notEqual(replaced, code, 'the helper was found and replaced');
      const before = run(code) as { live: number; marked: unknown[] };
      // The fixture does what it means to: a live binding read after a call, and each `default` rule.
      assert.equal(before.live, 1);
      assert.deepEqual(before.marked, kind === 'mjs' ? ['object', 'marked', 'object', true] : ['marked default', 'marked', 'string', true]);
      assert.deepEqual(run(replaced), before);
    });
  }
}

test('a bundle whose helper has another shape is refused, not left slow', async () => {
  const code = await bundle(fixture('mjs'), true);
  const changed = code.replace(/=>\((\w+)=(\w+)!=null\?/, '=>($1=$2!==null&&$2!==void 0?');
  assert.notEqual(changed, code);
  assert.throws(() => prototypeNamespaces(changed), /__toESM has changed shape/);
  // A bundle without CommonJS interop has nothing to replace.
  assert.equal(prototypeNamespaces('console.log(1);'), 'console.log(1);');
});
