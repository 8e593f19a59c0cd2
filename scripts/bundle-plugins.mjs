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

/** All of the above, in the order they apply. */
export const startupPlugins = [gotUnusedFeatures, gotRequestIds, lazyBuiltins, lazyListFormat];
