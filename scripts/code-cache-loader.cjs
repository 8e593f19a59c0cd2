// Start-up loader wrapped around each CNI executable's bundle by scripts/build.mjs, and around the single
// executable's by scripts/build-sea.mjs (one cache per program it runs as).
//
// A runtime execs the plugin once per container, so compiling the same ~350 KB of JavaScript on every run is
// a large part of its start-up (docs/performance.md). The bundle is kept in a comment at the end of the file
// (V8 skips it when compiling the file; trailingBundle reads it back) and compiled with V8's code cache
// when one made by this very build on this Node is found. The single executable passes it as a string. After a command
// (ADD, DEL, CHECK, GC, STATUS, VERSION, or the "about" run with no CNI_COMMAND) found none, the cache is written for
// the next run of that command (one cache per command), and written once more by that next run, adding what it
// compiled (see `writtenBy`).
//
// The caches live in /var/cache/ipam-da-consul (root-owned, mode 0700: as trusted as the executables), or
// in $IPAM_CODE_CACHE_DIR; IPAM_CODE_CACHE_DIR=off disables it. Deleting it only costs one slower run.
// V8 rejects a cache made by another Node or V8 flags; a rejected or unreadable cache is simply ignored.
'use strict';
const { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

/** Where scripts/build.mjs starts the comment holding the bundle. */
const bundleCommentStart = '/* bundle:\n';

/**
 * The bundle from the comment at the end of this file, with `marker` turned back into the `*` `/` it stands for.
 * scripts/build.mjs writes the file in ASCII only, so its bytes are its characters: read as bytes and copied into
 * a string as Latin-1, which costs a copy, where UTF-8 would be decoded and checked byte by byte.
 */
function trailingBundle(marker) {
  const text = readFileSync(__filename);
  const start = text.lastIndexOf(bundleCommentStart);
  const end = text.lastIndexOf('*/');
  if (start < 0 || end < start) {
    // Node read a whole file, so it was replaced since (an upgrade writing over it in place) or damaged: a
    // CNI error the runtime can act on, not a stack trace. Its cniVersion is the fallback: stdin is unread.
    const details = `${__filename} ends without its bundle: it is being replaced or is damaged; try again, or reinstall it`;
    process.stdout.write(`${JSON.stringify({ cniVersion: '1.0.0', code: 11, msg: 'this plugin executable is incomplete', details })}\n`);
    process.exit(1);
  }
  const body = text.toString('latin1', start + bundleCommentStart.length, end);
  return body.includes(marker) ? body.replaceAll(marker, '*/') : body;
}

/** The cache file's header: which run wrote it, then padding. */
const cacheHeaderBytes = 8;

/** Whether a process of that pid exists (EPERM: it does, as another user's). */
function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Compiles and runs the bundle: `source` is it already wrapped as a CommonJS module (Module.wrap, by the build),
 * so that the 360 KB text is made once at start-up, not copied again into a wrapper. `cniPlugin` says whether
 * the program is a CNI plugin, told by the build: only a plugin's runs are per container, and only for a plugin
 * is a run without CNI_COMMAND the "about" run. Anything else the single executable runs as (consul-ipam, or
 * an unknown name, which prints the names it answers to and exits) keeps no cache.
 */
function run(name, buildId, source, cniPlugin) {
  const setting = process.env.IPAM_CODE_CACHE_DIR;
  const dir = setting === 'off' || !cniPlugin ? undefined : setting || '/var/cache/ipam-da-consul';
  const command = process.env.CNI_COMMAND || 'ABOUT';
  const exercising = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION', 'ABOUT'].includes(command);
  // One cache per command: each holds only the code its command runs, and V8 deserialises all of a cache. The
  // "about" run (Nomad fingerprints every executable of its CNI bin dir with it) and VERSION have theirs too:
  // with ADD's they deserialised all of ADD's code to print a line (110 M instructions against 102 M with their
  // own, `node -e ''` 78 M). An unknown CNI_COMMAND, which fails at once, reads ADD's and writes none.
  const file = dir && join(dir, `${name}-${exercising ? command : 'ADD'}-${buildId}-${process.version}-${process.arch}.v8cache`);
  // A cache file: one byte saying which run wrote it (1: the command's first on this host, 2: its second),
  // seven of padding (V8's data stays 8-byte aligned), V8's data. V8 caches every function a run compiled or
  // loaded from a cache, and a command's first run on a host is seldom its usual one: ADD's first goes the full
  // way (no hint, no copy of the pool), its second claims in one request (take-next.ts). So the second run loads
  // the first's cache and writes the cache for good, holding both ways: a warm ADD deserialises 5% more than its
  // own code (about 1 ms), where an ADD on the full way (a host new to a pool, every ~32nd ADD, every ADD of a
  // storm on a new host) would compile that way's code on every run (about 10 ms; docs/performance.md).
  let cachedData;
  let writtenBy = 0;
  try {
    if (file) {
      const data = readFileSync(file);
      if (data.length > cacheHeaderBytes && (data[0] === 1 || data[0] === 2)) {
        writtenBy = data[0];
        cachedData = data.subarray(cacheHeaderBytes);
      }
    }
  } catch {
    // No cache yet.
  }
  const second = exercising && writtenBy === 1;
  const script = new Script(source, { filename: __filename, cachedData, importModuleDynamically: undefined });
  if (file && exercising && (cachedData === undefined || second || script.cachedDataRejected)) {
    process.once('exit', () => {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const temporary = `${file}.${process.pid}.tmp`;
        const header = Buffer.alloc(cacheHeaderBytes);
        header[0] = second ? 2 : 1;
        writeFileSync(temporary, Buffer.concat([header, script.createCachedData()]), { mode: 0o600 });
        renameSync(temporary, file);
        // Caches of earlier builds of this executable (or made by another Node) are of no use any more, nor the
        // temporaries of writers killed before their rename (their pid is gone); the other commands' stay.
        const ours = new RegExp(`^${name}-[A-Z]+-([0-9a-f]{16}-.*)\\.v8cache(?:\\.(\\d+)\\.tmp)?$`);
        const current = `${buildId}-${process.version}-${process.arch}`;
        for (const old of readdirSync(dir)) {
          const match = ours.exec(old);
          if (match === null || join(dir, old) === file) continue;
          if (match[2] === undefined ? match[1] !== current : !isRunning(Number(match[2]))) unlinkSync(join(dir, old));
        }
      } catch {
        // A read-only or missing cache dir only means no cache.
      }
    });
  }
  const module = { exports: {}, id: '.', filename: __filename, loaded: false };
  script.runInThisContext()(module.exports, require, module, __filename, dirname(__filename));
}
