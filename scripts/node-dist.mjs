// The Node.js the single executable embeds: an official build, pinned by version and by the sha512 of its npm
// package (node-linux-<arch>, published by the Node.js project), fetched once into .cache/node/.
//
// `npm pack` rather than `npm install`: npm refuses to install the package of another CPU, but packs any.
// The package's bin/node is the official binary (glibc, dynamically linked: the executable runs on glibc hosts).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * scripts/embedded-node.json: the version (Node 20 LTS, the line the scripts target in package.json's engines)
 * and, per arch, the package's `npm view node-linux-<arch>@<version> dist.integrity`, checked again here so a
 * changed package fails the build.
 */
export const embeddedNode = JSON.parse(readFileSync(path.join(root, 'scripts/embedded-node.json'), 'utf8'));

/** The architectures released, by Node's name for them. */
export const architectures = Object.keys(embeddedNode.integrity);

/** Where the node binary of one architecture is kept once fetched. */
export function cachedNodePath(arch) {
  return path.join(root, '.cache/node', `node-linux-${arch}-${embeddedNode.version}`, 'node');
}

/** The pinned node binary of `arch`: from .cache/node/ when there, else fetched with `npm pack` (~50 MB). */
export function nodeBinary(arch) {
  const integrity = embeddedNode.integrity[arch];
  if (!integrity) throw new Error(`no pinned Node for ${arch}; known: ${architectures.join(', ')}`);
  const target = cachedNodePath(arch);
  if (existsSync(target)) return target;

  const cache = path.join(root, '.cache/node');
  mkdirSync(cache, { recursive: true });
  // Fetched into a folder of its own and renamed into place: concurrent builds each get a whole binary.
  const work = mkdtempSync(path.join(cache, `.fetch-${arch}-`));
  try {
    const spec = `node-linux-${arch}@${embeddedNode.version}`;
    const pack = spawnSync('npm', ['pack', spec, '--pack-destination', work, '--silent', '--no-audit', '--no-fund'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (pack.status !== 0) throw new Error(`npm pack ${spec} failed (${pack.status ?? pack.error?.message}): ${pack.stderr}`);
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new Error(`npm pack ${spec} wrote no tarball into ${work}`);
    const actual = `sha512-${createHash('sha512').update(readFileSync(path.join(work, tgz))).digest('base64')}`;
    if (actual !== integrity) throw new Error(`${spec}: the package's sha512 is ${actual}, pinned ${integrity}`);
    const tar = spawnSync('tar', ['-xzf', path.join(work, tgz), '-C', work, 'package/bin/node'], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`extracting bin/node from ${tgz} failed: ${tar.stderr}`);
    mkdirSync(path.dirname(target), { recursive: true });
    renameSync(path.join(work, 'package/bin/node'), target);
    return target;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
