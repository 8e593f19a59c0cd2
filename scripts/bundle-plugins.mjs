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
 * for https:// servers, zlib only for compressed answers. Each becomes a module whose properties load the
 * real built-in on first use, so a plain-HTTP ADD does not pay ~10 ms to load them.
 */
export const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(build) {
    const names = ['https', 'tls', 'zlib', 'crypto'];
    build.onResolve({ filter: new RegExp(`^(node:)?(${names.join('|')})$`) }, (args) =>
      args.namespace === 'lazy-builtin' ? undefined : { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' },
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, ({ path }) => {
      const keys = Object.keys(require(path));
      const getters = keys.map((key) => `Object.defineProperty(exports, ${JSON.stringify(key)}, { enumerable: true, get: () => load()[${JSON.stringify(key)}] });`);
      return { contents: [`let real;`, `const load = () => (real ??= require(${JSON.stringify(path)}));`, ...getters].join('\n'), loader: 'js' };
    });
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
export const startupPlugins = [gotUnusedFeatures, lazyBuiltins, lazyListFormat];
