// esbuild plugins that keep start-up cheap: each defers or drops work that bundled packages do when
// imported but that a CNI command rarely or never needs. Measured in docs/performance.md.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/** got imports these for features we never turn on; they cost start-up time, so the bundle gets a stub. */
export const gotUnusedFeatures = {
  name: 'got-unused-features',
  setup(build) {
    const stub = fileURLToPath(new URL('./build-stubs/got-unused-feature.cjs', import.meta.url));
    build.onResolve({ filter: /^(http2-wrapper|cacheable-request|cacheable-lookup)$/ }, (args) =>
      args.importer.includes('/node_modules/got/') ? { path: stub } : undefined,
    );
  },
};

/**
 * Node built-ins that bundled packages import at the top but need only on some paths: TLS and HTTPS only
 * for https:// servers, zlib only for compressed answers, timers/promises only for got's retries (ours are
 * off). Each becomes a module whose properties load the real built-in on first use, so a plain-HTTP ADD does
 * not pay to load them. Functions that are read on every request but called only for TLS
 * (tls.checkServerIdentity, which got copies into its request options) are wrappers that load on call.
 */
const lazyNames = ['https', 'tls', 'zlib', 'crypto', 'timers/promises'];
const loadOnCall = { tls: ['checkServerIdentity'] };

export const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(node:)?(${lazyNames.join('|')})$`) }, (args) =>
      args.namespace === 'lazy-builtin' ? undefined : { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' },
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, ({ path }) => {
      const keys = Object.keys(require(path));
      const getters = keys.map((key) => {
        const name = JSON.stringify(key);
        const value = (loadOnCall[path] ?? []).includes(key) ? `(...args) => load()[${name}](...args)` : `load()[${name}]`;
        return `Object.defineProperty(exports, ${name}, { enumerable: true, get: () => ${value} });`;
      });
      return { contents: [`let real;`, `const load = () => (real ??= require(${JSON.stringify(path)}));`, ...getters].join('\n'), loader: 'js' };
    });
  },
};

/**
 * got gives every request an ID from crypto.randomUUID, for diagnostics_channel subscribers (a CNI plugin has
 * none); loading node:crypto for it costs ~3 ms of every ADD. In got's diagnostics module only, the IDs come
 * from Math.random instead: unique enough to tell requests apart in a trace, and never used for security.
 */
export const gotRequestIds = {
  name: 'got-request-ids',
  setup(build) {
    build.onResolve({ filter: /^(node:)?crypto$/ }, (args) =>
      /[\\/]got[\\/]dist[\\/]source[\\/]core[\\/]diagnostics-channel\.js$/.test(args.importer) ? { path: 'got-request-ids', namespace: 'got-request-ids' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'got-request-ids' }, () => ({
      contents: `exports.randomUUID = () => 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => ((c === 'x' ? 0 : 8) + Math.floor(Math.random() * (c === 'x' ? 16 : 4))).toString(16));`,
      loader: 'js',
    }));
  },
};

/**
 * @sindresorhus/is (a dependency of got) builds two Intl.ListFormat objects when it is imported, which
 * loads ICU data: ~10 ms of every start, for messages of failed assertions only. The bundle builds them on
 * first use instead. The build fails if the package changes so that the patch no longer applies.
 */
export const lazyListFormat = {
  name: 'lazy-list-format',
  setup(build) {
    build.onLoad({ filter: /[\\/]@sindresorhus[\\/]is[\\/]distribution[\\/]index\.js$/ }, async ({ path }) => {
      const source = await readFile(path, 'utf8');
      const eager = /const (andFormatter|orFormatter) = new Intl\.ListFormat\(('en', \{[^}]*\})\);/g;
      const patched = source.replace(eager, (_, name, args) => `const ${name} = { format: (list) => new Intl.ListFormat(${args}).format(list) };`);
      if ((source.match(eager) ?? []).length !== 2) throw new Error(`lazy-list-format: ${path} no longer matches; review the patch`);
      return { contents: patched, loader: 'js' };
    });
  },
};

/**
 * assert-plus (ip6addr's and jsprim's argument checker) loads `node:assert` when imported and copies every
 * export of it, and jsprim's extsprintf imports it too: ~1 ms of every ADD compiling Node's assert internals, for checks that pass. For assert-plus
 * and extsprintf only, `assert` becomes a module with the same exports that load the real one when called; the checks
 * made on every parse (`ok`, `equal`, `strictEqual` and the module itself) do nothing when they pass, as the
 * real ones do, and load the real assertion only to throw it.
 */
export const lazyAssertForAssertPlus = {
  name: 'lazy-assert-for-assert-plus',
  setup(build) {
    build.onResolve({ filter: /^(node:)?assert$/ }, (args) =>
      /[\\/](assert-plus[\\/]assert|extsprintf[\\/]lib[\\/]extsprintf)\.js$/.test(args.importer) ? { path: 'assert', namespace: 'lazy-assert' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-assert' }, () => {
      const real = require('node:assert');
      // The checks called on every parse, each with a test that passes exactly when the real one passes
      // (Node's: `ok` a truthy value, legacy `equal` ==, `strictEqual` Object.is); anything else calls the real one.
      const passes = { ok: 'value', equal: 'value == rest[0]', strictEqual: 'Object.is(value, rest[0])' };
      const wrappers = Object.keys(real).map((key) => {
        const name = JSON.stringify(key);
        if (typeof real[key] !== 'function') throw new Error(`lazy-assert: assert.${key} is not a function; review the plugin`);
        const body = key in passes
          ? `function (value, ...rest) { if (!(${passes[key]})) load()[${name}](value, ...rest); }`
          : `function (...args) { return new.target ? new (load()[${name}])(...args) : load()[${name}](...args); }`;
        return `module.exports[${name}] = ${body};`;
      });
      return {
        contents: [
          `let real;`,
          `const load = () => (real ??= require('node:assert'));`,
          `module.exports = function assert(value, ...rest) { if (!value) load()(value, ...rest); };`,
          ...wrappers,
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

/**
 * esbuild's `__toESM`, which gives ES module code (got's `import http from 'node:http'`, our `import * as fs`) a
 * namespace object for a CommonJS module, defines a getter on a new object for every property of the module:
 * ~700 of them in a warm ADD (node:process twice, node:fs, node:http twice, the lazy zlib), 1.7% of its
 * instructions (docs/performance.md). Here it returns an object whose prototype is the module instead, with the
 * same `default`: every property reads through to the module, live, as the getters do. What differs is only
 * enumerating the namespace's own keys, which no bundled code does. Applied to esbuild's output text (minified
 * or not); the build fails if esbuild's helper no longer has the shape this replaces.
 */
export function prototypeNamespaces(code) {
  const readable = `var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  // If the importer is in node compatibility mode or this is not an ESM
  // file that has been converted to a CommonJS file using a Babel-
  // compatible transform (i.e. "__esModule" has not been set), then set
  // "default" to the CommonJS "module.exports" for node compatibility.
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target,
  mod
));`;
  const i = '[\\w$]+';
  const minified = new RegExp(
    `var (${i})=\\((${i}),(${i}),(${i})\\)=>\\(\\4=\\2!=null\\?(${i})\\((${i})\\(\\2\\)\\):\\{\\},(${i})\\(\\3\\|\\|!\\2\\|\\|!\\2\\.__esModule\\?(${i})\\(\\4,"default",\\{value:\\2,enumerable:!0\\}\\):\\4,\\2\\)\\);`,
    'g',
  );
  const found = (code.match(minified) ?? []).length + code.split(readable).length - 1;
  // The helper's telltale: `default` set to the module when it is not an `__esModule`.
  const helperLike = /!\s?[\w$]+\.__esModule\s?\?\s?[\w$]+\(\s?[\w$]+,\s?"default",\s?\{\s?value:/;
  if (found > 1 || (found === 0 && helperLike.test(code))) throw new Error("prototypeNamespaces: esbuild's __toESM has changed shape; review the transform");
  return code
    .replace(minified, (_, name, mod, node, target, create, proto, copy, define) =>
      `var ${name}=(${mod},${node},${target})=>${mod}!=null&&(typeof ${mod}=="object"||typeof ${mod}=="function")?!${node}&&${mod}.__esModule?${mod}:${create}(${mod},{default:{value:${mod},enumerable:!0}}):(${target}=${mod}!=null?${create}(${proto}(${mod})):{},${copy}(${node}||!${mod}||!${mod}.__esModule?${define}(${target},"default",{value:${mod},enumerable:!0}):${target},${mod}));`,
    )
    .replace(
      readable,
      `var __toESM = (mod, isNodeMode, target) => mod != null && (typeof mod === "object" || typeof mod === "function")
  ? (!isNodeMode && mod.__esModule ? mod : __create(mod, { default: { value: mod, enumerable: true } }))
  : (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target, mod));`,
    );
}

/** All of the above, in the order they apply. */
export const startupPlugins = [gotUnusedFeatures, gotRequestIds, lazyBuiltins, lazyListFormat, lazyAssertForAssertPlus];

/**
 * The esbuild options every executable is bundled with (scripts/build.mjs, scripts/build-sea.mjs).
 * `mainFields`: a package's ES module build first (fp-ts, io-ts and xstate ship one). Its imports are bound
 * directly, where a CommonJS build is wrapped once per importing file (esbuild's __toESM copies every export of
 * io-ts for each `import * as t`), and unused exports drop out: the ADD bundle is 8% smaller.
 */
export const startupBuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  mainFields: ['module', 'main'],
  minify: !process.env.BUILD_UNMINIFIED, // unminified builds read better in a CPU profile
  legalComments: 'none',
  plugins: startupPlugins,
  logLevel: 'warning',
};
