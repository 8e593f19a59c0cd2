// The single executable: every program in one file that needs no Node on the host (Node's single executable
// applications, https://nodejs.org/docs/latest-v20.x/api/single-executable-applications.html), made for each
// released architecture from the pinned official Node (scripts/node-dist.mjs):
//
//   src/main-by-name.ts ─esbuild─▶ bundle ─(code-cache loader)─▶ main script ─node --experimental-sea-config─▶ blob
//   .cache/node/…/node ─copy─▶ ipam-da-consul ◀─postject (the blob, under the sentinel fuse)─
//
// Output: dist-bin/linux-<arch>/ipam-da-consul and, beside it, one link per other name it answers to
// (src/main-by-name.ts picks the program from the name it runs as): install the file and the links.
//
// The code cache: the main script is scripts/code-cache-loader.cjs around the bundle, as in the scripts, so
// each program keeps a V8 code cache per host in /var/cache/ipam-da-consul, made after its first real run.
// V8's cache made at build time (`useCodeCache`) holds only what compiling the script compiles, not the
// functions a run then compiles lazily; measured in docs/performance.md, the per-host cache wins. It also keeps
// the blob free of machine code, so one blob, made by the pinned Node of the build host, serves every arch.
//
// Usage: node scripts/build-sea.mjs [--arch x64,arm64|host] [--out DIR]   (default: every arch, dist-bin/)
// Env SEA_CODE_CACHE=embedded builds the other way instead (x64 on an x64 host only), to measure it.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prototypeNamespaces, startupBuildOptions } from './bundle-plugins.mjs';
import { architectures, embeddedNode, nodeBinary } from './node-dist.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
/** The name of the file; every other name is a link to it. */
export const binaryName = 'ipam-da-consul';
/** The names it answers to, as src/main-by-name.ts reads them. */
export const programNames = ['ipam-da-consul', 'ipam-delegated', 'ipam-ds-static', 'consul-ipam', 'ipam-da-consul-verbose', 'ipam-delegated-verbose', 'ipam-ds-static-verbose'];
const sentinelFuse = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function run(command, args, what, cwd = root) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status ?? r.error?.message}):\n${r.stdout}${r.stderr}`);
  return r;
}

/** One bundle of all programs; each is imported only when chosen, so a run compiles and runs its own code only. */
async function bundle() {
  const { outputFiles } = await build({
    ...startupBuildOptions,
    entryPoints: [path.join(root, 'src/main-by-name.ts')],
    write: false,
    // No define of IPAM_DA_CONSUL_FLAVOUR: src/main-by-name.ts sets it from the name it runs as.
  });
  return prototypeNamespaces(outputFiles[0].text);
}

/**
 * The script the blob runs. Per-host code cache: the loader compiles the bundle with the cache of the plugin
 * run, `sea-<name>-<command>-<build>-<node>-<arch>.v8cache`. consul-ipam and an unknown link name keep none (an
 * unknown name is not trusted into a file name, and its run only prints the names to link it as).
 */
function mainScript(source, codeCache) {
  if (codeCache === 'embedded') return source;
  const loader = readFileSync(path.join(root, 'scripts/code-cache-loader.cjs'), 'utf8');
  const buildId = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const plugins = JSON.stringify(programNames.filter((name) => name !== 'consul-ipam'));
  const call = `run(plugin ? 'sea-' + name : 'sea', ${JSON.stringify(buildId)}, ${JSON.stringify(Module.wrap(source))}, plugin);`;
  return `${loader}\n{\n  const name = require('node:path').basename(process.argv0);\n  const plugin = ${plugins}.includes(name);\n  ${call}\n}\n`;
}

/**
 * The SEA blob of a main script, made by `maker` (a node of the embedded version). The paths are relative to
 * the (temporary) folder it runs in: the blob records the main script's path, and the same inputs must give the
 * same bytes.
 */
function blob(work, main, maker, useCodeCache) {
  writeFileSync(path.join(work, 'main.js'), main);
  const config = { main: 'main.js', output: 'sea.blob', disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache };
  writeFileSync(path.join(work, 'sea-config.json'), JSON.stringify(config));
  run(maker, ['--experimental-sea-config', 'sea-config.json'], `${maker} --experimental-sea-config`, work);
  return path.join(work, config.output);
}

/** Builds dist-bin/linux-<arch>/ for each arch; returns the paths of the binaries. */
export async function buildSea({ archs = architectures, out = path.join(root, 'dist-bin'), codeCache = process.env.SEA_CODE_CACHE === 'embedded' ? 'embedded' : 'per-host' } = {}) {
  const hostArch = process.arch;
  if (!architectures.includes(hostArch)) throw new Error(`the build runs the pinned Node of its own arch; ${hostArch} is not one of ${architectures.join(', ')}`);
  const main = mainScript(await bundle(), codeCache);
  const work = mkdtempSync(path.join(tmpdir(), 'ipam-sea-'));
  const made = [];
  try {
    // The blob format belongs to the Node that reads it: the pinned version makes it, not whatever runs this script.
    const sharedBlob = codeCache === 'per-host' ? blob(work, main, nodeBinary(hostArch), false) : undefined;
    for (const arch of archs) {
      if (codeCache === 'embedded' && arch !== hostArch) throw new Error(`an embedded code cache is machine code of the Node that makes it: build ${arch} on ${arch}`);
      const node = nodeBinary(arch);
      const seaBlob = sharedBlob ?? blob(work, main, node, true);
      const dir = path.join(out, `linux-${arch}`);
      mkdirSync(dir, { recursive: true });
      const target = path.join(dir, binaryName);
      // Injected into a copy beside the target and renamed into place: a test running the previous binary is not disturbed.
      const temporary = `${target}.${process.pid}.tmp`;
      copyFileSync(node, temporary);
      chmodSync(temporary, 0o755);
      run(process.execPath, [path.join(root, 'node_modules/postject/dist/cli.js'), temporary, 'NODE_SEA_BLOB', seaBlob, '--sentinel-fuse', sentinelFuse], `postject into ${arch}`);
      renameSync(temporary, target);
      for (const name of programNames.filter((n) => n !== binaryName)) {
        rmSync(path.join(dir, name), { force: true });
        symlinkSync(binaryName, path.join(dir, name));
      }
      made.push(target);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return made;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const option = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  // `--arch host`: the build machine's own, for `npm run bench` and the tests.
  const archs = option('--arch')?.split(',').map((a) => (a === 'host' ? process.arch : a));
  const out = option('--out');
  try {
    for (const file of await buildSea({ ...(archs ? { archs } : {}), ...(out ? { out: path.resolve(out) } : {}) })) {
      console.log(`${path.relative(process.cwd(), file)} (Node ${embeddedNode.version})`);
    }
  } catch (error) {
    process.stderr.write(`build-sea: ${error.message}\n`);
    process.exitCode = 1;
  }
}
