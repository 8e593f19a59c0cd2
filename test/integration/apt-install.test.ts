// scripts/lib/apt.sh, the install step every scripts/install-*.sh shares, run for real. On a machine where
// everything is installed the scripts never reach it, so this file runs apt_install itself: on packages that are
// installed (apt-get install of an installed package is a real, no-op run of the same code), on a name apt has
// no version of, against a source that cannot be fetched, and as a user who is not root. Needs root (apt-get
// install takes the dpkg lock); skips with the reason otherwise.
//
// The cases that must run apt-get update get a private apt configuration (APT_CONFIG: their own sources list,
// lists and cache dirs), so they neither need the network nor touch the machine's package lists.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const lib = path.join(root, 'scripts/lib/apt.sh');
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root: apt-get install takes the dpkg lock (CI runs it as root)';

// Two packages every Debian machine that runs these tests has: what the scripts install includes iproute2.
const installed = ['iproute2', 'bash'];
const absent = 'ipam-da-consul-no-such-package';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
const show = (r: Run): string => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

let work: string;
/** The temporary dir apt_install's logs go to: empty again after every run. */
let scratch: string;
/**
 * The library as the unprivileged user reads it: a copy in `work`, since the checkout may sit in a folder
 * only root can enter (CI's fresh clone is in a mode-0700 temporary folder).
 */
let libForNobody: string;

before(() => {
  if (skip) return;
  work = mkdtempSync(path.join(tmpdir(), 'apt-install-test-'));
  chmodSync(work, 0o755);
  scratch = path.join(work, 'tmp');
  mkdirSync(scratch);
  chmodSync(scratch, 0o1777);
  libForNobody = path.join(work, 'apt.sh');
  copyFileSync(lib, libForNobody);
  chmodSync(libForNobody, 0o644);
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Sources the library in a fresh bash named install-test, as a script does, and runs `apt_install ...args`. */
function aptInstall(args: string[], options: { env?: Record<string, string>; asNobody?: boolean } = {}): Run {
  const bash = ['bash', '-c', 'set -euo pipefail; source "$1"; shift; apt_install "$@"', 'install-test', options.asNobody ? libForNobody : lib, ...args];
  const [file, ...argv] = options.asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...bash] : bash;
  const r = spawnSync(file!, argv, {
    encoding: 'utf8',
    // stdin not a socket (Node's default pipe): bash run with a socket as stdin takes itself for rsh's and reads ~/.bashrc.
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', TMPDIR: scratch, ...options.env },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr + (r.error?.message ?? '') };
}

/** A private apt configuration with its own sources list (`sources`, one line a source), lists and cache. */
function privateApt(name: string, sources: string): { env: Record<string, string>; lists: string } {
  const dir = path.join(work, name);
  const lists = path.join(dir, 'lists');
  mkdirSync(path.join(lists, 'partial'), { recursive: true });
  mkdirSync(path.join(dir, 'cache/archives/partial'), { recursive: true });
  writeFileSync(path.join(dir, 'sources.list'), sources);
  const config = [
    `Dir::Etc::SourceList "${dir}/sources.list";`,
    'Dir::Etc::SourceParts "/dev/null";',
    `Dir::State::Lists "${lists}";`,
    `Dir::Cache "${dir}/cache";`,
  ].join('\n');
  writeFileSync(path.join(dir, 'apt.conf'), `${config}\n`);
  return { env: { APT_CONFIG: path.join(dir, 'apt.conf') }, lists };
}

/** apt-get update leaves a lock file in the lists dir it refreshed: how a test tells that the update ran. */
const updated = (lists: string): boolean => existsSync(path.join(lists, 'lock'));

const dpkgStatus = (): string => createHash('sha256').update(readFileSync('/var/lib/dpkg/status')).digest('hex');

function assertNoLogLeft(r: Run): void {
  assert.deepEqual(readdirSync(scratch), [], `apt_install left its log behind\n${show(r)}`);
}

describe('apt_install (scripts/lib/apt.sh)', { skip }, () => {
  test('installed packages, with the machine\'s own apt setup: succeeds and prints nothing', { timeout: 150_000 }, () => {
    const r = aptInstall(['the test packages', ...installed]);
    assert.equal(r.code, 0, show(r));
    // The scripts print a path or nothing on stdout, and the tests parse it: apt's chatter must not get there.
    assert.equal(r.stdout, '', show(r));
    assert.equal(r.stderr, '', show(r));
    assertNoLogLeft(r);
  });

  test('packages apt knows a version of: no apt-get update', { timeout: 150_000 }, () => {
    // A private setup with no sources: apt still knows the installed packages, from the dpkg status.
    const apt = privateApt('known', '');
    const r = aptInstall(['the test packages', ...installed], { env: apt.env });
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, '', show(r));
    assert.equal(updated(apt.lists), false, 'apt-get update ran although every package had a candidate');
    assertNoLogLeft(r);
  });

  test('a name apt has no version of, even after an update: exit 1, the name, nothing installed', { timeout: 150_000 }, () => {
    const apt = privateApt('absent', '');
    const before = dpkgStatus();
    const r = aptInstall(['the test packages', installed[0]!, absent], { env: apt.env });
    assert.equal(r.code, 1, show(r));
    assert.equal(updated(apt.lists), true, `the lists were not refreshed first\n${show(r)}`);
    assert.equal(r.stdout, '', show(r));
    // Only the absent name is blamed, and it is said that the present one was not installed alone.
    assert.equal(
      r.stderr,
      `install-test: apt has no installable version of ${absent}, even after apt-get update (are the apt sources right?); nothing was installed\n`,
    );
    assert.equal(dpkgStatus(), before, 'the dpkg status changed');
    assertNoLogLeft(r);
  });

  test('apt-get update fails: exit 1, apt\'s own output shown, then the reason', { timeout: 150_000 }, () => {
    const apt = privateApt('unreachable', 'deb [trusted=yes] file:/nonexistent-ipam-da-consul nowhere main\n');
    const r = aptInstall(['the test packages', absent], { env: apt.env });
    assert.equal(r.code, 1, show(r));
    assert.equal(r.stdout, '', show(r));
    assert.match(r.stderr, /^E: Failed to fetch file:\/nonexistent-ipam-da-consul\//m, show(r));
    assert.match(r.stderr, /\ninstall-test: apt-get update failed \(output above\)\n$/, show(r));
    assertNoLogLeft(r);
  });

  test('not root: exit 2 (so a test can skip), saying what is missing and what to install', { timeout: 60_000 }, () => {
    const r = aptInstall(['/usr/lib/cni/bridge', 'containernetworking-plugins', 'iproute2'], { asNobody: true });
    assert.equal(r.code, 2, show(r));
    assert.equal(r.stdout, '', show(r));
    assert.equal(
      r.stderr,
      'install-test: missing /usr/lib/cni/bridge, and installing containernetworking-plugins iproute2 needs root (run as root, or apt-get install them yourself)\n',
    );
  });
});
