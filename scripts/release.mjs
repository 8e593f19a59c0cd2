// `npm run release`: packs what `npm run build` and scripts/build-sea.mjs made into one tarball per flavour of
// the scripts, as the original shipped its releases, and one per architecture of the single executable:
//   release/ipam-da-consul-v<version>-linux-standard.tar.gz, ...-linux-verbose.tar.gz   (Node.js 20+ on the host)
//   release/ipam-da-consul-v<version>-linux-x64.tar.gz, ...-linux-arm64.tar.gz          (no Node needed)
// plus release/SHA256SUMS over all of them (check with `cd release && sha256sum -c SHA256SUMS`).
//
// Each tarball holds its executables (0755), README.md and both license texts (0644), at its top level and with
// no directory entry, so `tar -xzf <tarball> -C /opt/cni/bin` installs them and leaves the folder's own mode
// alone. The verbose flavour's plugins are there under both names, `ipam-da-consul` and the original's
// `ipam-da-consul-verbose`. An architecture's tarball holds the single executable `ipam-da-consul` and a
// link to it for each other name it answers to. The same inputs always give the same bytes: names sorted,
// mtime 0, owner and group 0 without names (GNU tar), and gzip without a name or time stamp.
//
// Usage: node scripts/release.mjs [--out DIR] [--scripts-only]   (default DIR: release/; --scripts-only leaves
// the architectures out, for a checkout where only `npm run build` ran)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaryName, programNames } from './build-sea.mjs';
import { architectures } from './node-dist.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { name, version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

/** What each flavour ships: executables (from dist/), then documents (from the repository's top). */
const flavours = {
  standard: ['dist/consul-ipam', 'dist/ipam-da-consul', 'dist/ipam-delegated', 'dist/ipam-ds-static'],
  // The operator CLI has one flavour only: the verbose tarball carries the standard one.
  verbose: [
    'dist/consul-ipam',
    'dist/verbose/ipam-da-consul',
    'dist/verbose/ipam-delegated',
    'dist/verbose/ipam-ds-static',
    'dist/ipam-da-consul-verbose',
    'dist/ipam-delegated-verbose',
    'dist/ipam-ds-static-verbose',
  ],
};
/** The single executable of each architecture, as scripts/build-sea.mjs leaves it. */
const binaryOf = (arch) => `dist-bin/linux-${arch}/${binaryName}`;
const documents = ['README.md', 'LICENSE-APACHE', 'LICENSE-MIT'];

// A clean environment: GZIP or TAR_OPTIONS from the caller's shell must not change the bytes.
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };

/** A reason not to release; reported as one line on stderr, exit code 1. */
class ReleaseError extends Error {}
function fail(message) {
  throw new ReleaseError(message);
}

function parseOut(argv) {
  const i = argv.indexOf('--out');
  if (i === -1) return path.join(root, 'release');
  if (!argv[i + 1]) fail('--out needs a folder');
  return path.resolve(argv[i + 1]);
}

/** A path as printed: relative to the working folder when inside it. */
function shown(file) {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith('..') ? relative : file;
}

/**
 * One tarball of the files staged in `dir` (named by `entries`), written into `out`; returns its SHA256SUMS line.
 * gzip -9 for the scripts; -6 for the single executables, where -9 costs three times the CPU for 0.7 % less.
 */
function pack(out, tarball, dir, entries, level) {
  entries.sort(); // named one by one (no directory entry), so tar keeps this order: sort them here
  const tar = spawnSync(
    'tar',
    ['--create', '--file=-', '--format=gnu', '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '--', ...entries],
    { env, maxBuffer: 512 * 1024 * 1024 },
  );
  if (tar.status !== 0) fail(`tar failed (${tar.status ?? tar.error?.message}): ${tar.stderr}`);

  const target = path.join(out, tarball);
  const temporary = `${target}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w', 0o644);
  const gzip = spawnSync('gzip', [`-${level}`, '-n', '-c'], { env, input: tar.stdout, stdio: ['pipe', fd, 'pipe'] });
  closeSync(fd);
  if (gzip.status !== 0) {
    rmSync(temporary, { force: true });
    fail(`gzip failed (${gzip.status ?? gzip.error?.message}): ${gzip.stderr}`);
  }
  renameSync(temporary, target);

  const bytes = readFileSync(target);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  console.log(`${shown(target)}  (${(bytes.length / 1024).toFixed(0)} KiB): ${entries.join(' ')}`);
  console.log(`  sha256 ${sha256}`);
  return `${sha256}  ${tarball}\n`;
}

/** Copies `file` into `dir` under `base` with an explicit mode, so the umask and the checkout's modes do not matter. */
function stage(dir, file, base, mode) {
  copyFileSync(path.join(root, file), path.join(dir, base));
  chmodSync(path.join(dir, base), mode);
  return base;
}

/** Writes every tarball and SHA256SUMS into the --out folder. */
function release() {
  const argv = process.argv.slice(2);
  const out = parseOut(argv);
  const archs = argv.includes('--scripts-only') ? [] : architectures;
  for (const file of [...new Set(Object.values(flavours).flat()), ...documents]) {
    if (!existsSync(path.join(root, file))) fail(`${file} is missing${file.startsWith('dist/') ? ': run `npm run build` first (npm run release does)' : ''}`);
  }
  for (const arch of archs) {
    if (!existsSync(path.join(root, binaryOf(arch)))) fail(`${binaryOf(arch)} is missing: run \`node scripts/build-sea.mjs\` first (npm run release does), or pass --scripts-only`);
  }
  mkdirSync(out, { recursive: true });

  const staging = mkdtempSync(path.join(tmpdir(), 'ipam-release-'));
  const sums = [];
  try {
    for (const [flavour, executables] of Object.entries(flavours)) {
      const dir = path.join(staging, flavour);
      mkdirSync(dir);
      const entries = [
        ...executables.map((file) => stage(dir, file, path.basename(file), 0o755)),
        ...documents.map((file) => stage(dir, file, file, 0o644)),
      ];
      sums.push(pack(out, `${name}-v${version}-linux-${flavour}.tar.gz`, dir, entries, 9));
    }
    for (const arch of archs) {
      const dir = path.join(staging, arch);
      mkdirSync(dir);
      const entries = [stage(dir, binaryOf(arch), binaryName, 0o755), ...documents.map((file) => stage(dir, file, file, 0o644))];
      for (const link of programNames.filter((n) => n !== binaryName)) {
        symlinkSync(binaryName, path.join(dir, link)); // relative: the links work wherever the tarball is unpacked
        entries.push(link);
      }
      sums.push(pack(out, `${name}-v${version}-linux-${arch}.tar.gz`, dir, entries, 6));
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }

  const sumsFile = path.join(out, 'SHA256SUMS');
  writeFileSync(`${sumsFile}.${process.pid}.tmp`, sums.join(''));
  renameSync(`${sumsFile}.${process.pid}.tmp`, sumsFile);
  console.log(`${shown(sumsFile)}  (check: cd ${shown(out)} && sha256sum -c SHA256SUMS)`);
  console.log(`install: tar -xzf <tarball> -C /opt/cni/bin`);
}

try {
  release();
} catch (error) {
  if (!(error instanceof ReleaseError)) throw error;
  process.stderr.write(`release: ${error.message}\n`);
  process.exitCode = 1;
}
