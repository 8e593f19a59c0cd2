// Bundles each executable into one file, so start-up does not walk node_modules (see docs/performance.md).
// Output: dist/<name> (standard flavour) and dist/verbose/<name>; each has a shebang and the run bit,
// and can be copied into a CNI bin dir (/opt/cni/bin) as it is.
import { build } from 'esbuild';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { startupPlugins } from './bundle-plugins.mjs';

const executables = [
  { name: 'ipam-da-consul', entry: 'src/ipam-da-consul.ts', flavours: ['standard', 'verbose'] },
  { name: 'ipam-delegated', entry: 'src/ipam-delegated.ts', flavours: ['standard', 'verbose'] },
  { name: 'ipam-ds-static', entry: 'src/ipam-ds-static.ts', flavours: ['standard', 'verbose'] },
  { name: 'consul-ipam', entry: 'src/cli/consul-ipam.ts', flavours: ['standard'] },
];

for (const { name, entry, flavours } of executables) {
  for (const flavour of flavours) {
    const outfile = flavour === 'standard' ? `dist/${name}` : `dist/${flavour}/${name}`;
    const { outputFiles } = await build({
      entryPoints: [entry],
      outfile,
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
    // Written beside and renamed into place, so a test running the previous build never reads half a file.
    const temporary = `${outfile}.${process.pid}.tmp`;
    await mkdir(dirname(outfile), { recursive: true });
    await writeFile(temporary, outputFiles[0].contents);
    await chmod(temporary, 0o755);
    await rename(temporary, outfile);
  }
}
