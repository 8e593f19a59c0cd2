// Bundles each executable into one file, so start-up does not walk node_modules (see docs/performance.md).
// Output: dist/<name> (standard flavour), dist/verbose/<name>, and the verbose flavour again as
// dist/<name>-verbose, the name the original's releases give it (network configs name `ipam-da-consul-verbose`
// in `delegates`). Each has a shebang and the run bit, and can be copied into a CNI bin dir (/opt/cni/bin) as it is.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import Module from 'node:module';
import { dirname } from 'node:path';
import { prototypeNamespaces, startupBuildOptions } from './bundle-plugins.mjs';

// codeCache: wrap the bundle in scripts/code-cache-loader.cjs, for the executables a runtime execs per container.
const executables = [
  { name: 'ipam-da-consul', entry: 'src/ipam-da-consul.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'ipam-delegated', entry: 'src/ipam-delegated.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'ipam-ds-static', entry: 'src/ipam-ds-static.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'consul-ipam', entry: 'src/cli/consul-ipam.ts', flavours: ['standard'] },
];

const loader = await readFile(new URL('./code-cache-loader.cjs', import.meta.url), 'utf8');
/** Where the bundle starts; the loader looks for the same text (`bundleCommentStart` there). */
const bundleCommentStart = '/* bundle:\n';
if (!loader.includes(`const bundleCommentStart = '${bundleCommentStart.replace('\n', '\\n')}';`)) throw new Error('code-cache-loader.cjs and build.mjs disagree on bundleCommentStart');

/**
 * The executable's text: the bundle itself, or the loader, a call to run it with an ID of this build, and the
 * bundle in a comment at the end. In a comment, not a string: V8 skips a comment when it compiles the file,
 * where a 350 KB string literal is scanned, copied and hashed on every start. The loader reads the comment back
 * from the file; the comment's one forbidden sequence, `*` `/`, is written as a marker found nowhere in the
 * bundle.
 */
function executable(cacheName, bundle, codeCache) {
  if (!codeCache) return bundle;
  const body = bundle.replace(/^#!.*\n/, '');
  // The loader reads the bundle back as Latin-1 (trailingBundle): esbuild writes ASCII unless told otherwise.
  if (/[^\x00-\x7f]/.test(loader + body)) throw new Error(`${cacheName}: the executable must be ASCII only (trailingBundle reads it as Latin-1)`);
  const buildId = createHash('sha256').update(body).digest('hex').slice(0, 16);
  // Wrapped here as Node wraps a CommonJS module, so the loader compiles the text it reads back as it is.
  const wrapped = Module.wrap(body);
  let marker = '@/';
  while (wrapped.includes(marker)) marker = `@${marker}`;
  // Every executable built with the loader here is a CNI plugin (consul-ipam is built without it).
  const call = `run(${JSON.stringify(cacheName)}, ${JSON.stringify(buildId)}, trailingBundle(${JSON.stringify(marker)}), true);`;
  return `#!/usr/bin/env node\n${loader}\n${call}\n${bundleCommentStart}${wrapped.replaceAll('*/', marker)}*/\n`;
}

for (const { name, entry, flavours, codeCache } of executables) {
  for (const flavour of flavours) {
    const outfiles = flavour === 'standard' ? [`dist/${name}`] : [`dist/${flavour}/${name}`, `dist/${name}-${flavour}`];
    const { outputFiles } = await build({
      ...startupBuildOptions,
      entryPoints: [entry],
      outfile: outfiles[0],
      write: false,
      banner: { js: '#!/usr/bin/env node' },
      define: { IPAM_DA_CONSUL_FLAVOUR: JSON.stringify(flavour) },
    });
    const cacheName = flavour === 'standard' ? name : `${name}-${flavour}`;
    const text = executable(cacheName, prototypeNamespaces(outputFiles[0].text), codeCache);
    for (const outfile of outfiles) {
      // Written beside and renamed into place, so a test running the previous build never reads half a file.
      const temporary = `${outfile}.${process.pid}.tmp`;
      await mkdir(dirname(outfile), { recursive: true });
      await writeFile(temporary, text);
      await chmod(temporary, 0o755);
      await rename(temporary, outfile);
    }
  }
}
