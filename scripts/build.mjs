// Bundles each executable into one file, so start-up does not walk node_modules (see docs/performance.md).
// Output: dist/<name> (standard flavour), dist/verbose/<name>, and the verbose flavour again as
// dist/<name>-verbose, the name the original's releases give it (network configs name `ipam-da-consul-verbose`
// in `delegates`). Each has a shebang and the run bit, and can be copied into a CNI bin dir (/opt/cni/bin) as it is.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { startupPlugins } from './bundle-plugins.mjs';

// codeCache: wrap the bundle in scripts/code-cache-loader.cjs, for the executables a runtime execs per container.
const executables = [
  { name: 'ipam-da-consul', entry: 'src/ipam-da-consul.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'ipam-delegated', entry: 'src/ipam-delegated.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'ipam-ds-static', entry: 'src/ipam-ds-static.ts', flavours: ['standard', 'verbose'], codeCache: true },
  { name: 'consul-ipam', entry: 'src/cli/consul-ipam.ts', flavours: ['standard'] },
];

const loader = await readFile(new URL('./code-cache-loader.cjs', import.meta.url), 'utf8');

/** The executable's text: the bundle itself, or the loader with the bundle as a string and an ID of this build. */
function executable(cacheName, bundle, codeCache) {
  if (!codeCache) return bundle;
  const body = bundle.replace(/^#!.*\n/, '');
  const buildId = createHash('sha256').update(body).digest('hex').slice(0, 16);
  return `#!/usr/bin/env node\n${loader}\nrun(${JSON.stringify(cacheName)}, ${JSON.stringify(buildId)}, ${JSON.stringify(body)});\n`;
}

for (const { name, entry, flavours, codeCache } of executables) {
  for (const flavour of flavours) {
    const outfiles = flavour === 'standard' ? [`dist/${name}`] : [`dist/${flavour}/${name}`, `dist/${name}-${flavour}`];
    const { outputFiles } = await build({
      entryPoints: [entry],
      outfile: outfiles[0],
      write: false,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      minify: !process.env.BUILD_UNMINIFIED, // unminified builds read better in a CPU profile
      legalComments: 'none',
      banner: { js: '#!/usr/bin/env node' },
      define: { IPAM_DA_CONSUL_FLAVOUR: JSON.stringify(flavour) },
      plugins: startupPlugins,
      logLevel: 'warning',
    });
    const cacheName = flavour === 'standard' ? name : `${name}-${flavour}`;
    const text = executable(cacheName, outputFiles[0].text, codeCache);
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
