// What the real-runtime tests share: the install steps (scripts/install-runtimes.sh, and
// scripts/install-libcni-1.3.sh for the libcni 1.3 build), our plugins in a bin dir of their own, network
// namespaces, and the libcni driver (test/runtimes/libcni-driver), a runtime in one page of Go. Everything
// made here is undone by a Cleanup, also when a test fails.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtExecutable, runCni, type CniRun } from './plugin';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** False as root; otherwise why the runtime tests skip. */
export const rootSkip: false | string =
  typeof process.getuid === 'function' && process.getuid() === 0
    ? false
    : 'needs root: it creates network namespaces, bridges and containers (CI runs it as root)';

/** Where the Debian reference plugins (bridge, ...) live. */
export const referencePlugins = '/usr/lib/cni';

/** The chain's executables, as a runtime's bin dir holds them. */
export const ourPlugins = ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul'] as const;

/** Runs a command; throws with its stderr when it fails, unless allowFailure. Returns stdout. */
export function sh(command: string, args: string[], options: { allowFailure?: boolean; input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(command, args, { encoding: 'utf8', input: options.input, env: options.env ?? process.env });
  if (!options.allowFailure && r.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.error?.message ?? ''}`);
  }
  return r.stdout;
}

/** Installs golang, libcni's sources, podman, runc, busybox and the reference plugins once per machine; returns the built libcni driver. */
export function installRuntimes(): { driver: string } {
  const started = Date.now();
  const driver = sh('bash', [path.join(root, 'scripts/install-runtimes.sh')]).trim().split('\n').pop()!;
  assert.ok(existsSync(driver), `install-runtimes.sh printed ${driver}, which does not exist`);
  const ms = Date.now() - started;
  if (ms > 2000) console.log(`install-runtimes.sh took ${(ms / 1000).toFixed(1)} s`);
  return { driver };
}

/** A build of the libcni driver, as build.json beside it records it. */
export interface LibcniBuild {
  driver: string;
  /** The Debian version of golang-github-appc-cni-dev it was built against, e.g. 1.3.0-2. */
  libcni: string;
  go: string;
  /** The reference plugins (bridge, ...) to run it with: forky's beside libcni 1.3, whose bridge speaks 1.1.0. */
  referencePlugins: string;
  referencePluginsVersion: string;
}

/**
 * The libcni driver of a release: 1.1 is libcni 1.1.2 (install-runtimes.sh, bookworm's packages); 1.3 is
 * libcni 1.3 with GC and STATUS (install-libcni-1.3.sh, forky's packages; the rest of install-runtimes.sh's
 * installs, ip among them, still apply).
 */
export function installLibcni(release: '1.1' | '1.3'): LibcniBuild {
  let { driver } = installRuntimes();
  if (release === '1.3') {
    const started = Date.now();
    driver = sh('bash', [path.join(root, 'scripts/install-libcni-1.3.sh')]).trim().split('\n').pop()!;
    const ms = Date.now() - started;
    if (ms > 2000) console.log(`install-libcni-1.3.sh took ${(ms / 1000).toFixed(1)} s`);
  }
  const recorded = path.join(path.dirname(driver), 'build.json');
  assert.ok(existsSync(driver) && existsSync(recorded), `the install printed ${driver}, which does not exist or has no build.json beside it`);
  const build = JSON.parse(readFileSync(recorded, 'utf8')) as Omit<LibcniBuild, 'driver'>;
  return { ...build, driver, referencePlugins: path.resolve(root, build.referencePlugins) };
}

/** Links the built executables (dist/'s, or the single executable's: builtExecutable) into `dir` (created), as a runtime's CNI bin dir; returns `dir`. */
export function linkOurPlugins(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const name of ourPlugins) {
    const built = builtExecutable(name);
    assert.ok(existsSync(built), `${built} is missing: run \`npm run build\` first`);
    symlinkSync(built, path.join(dir, name));
  }
  return dir;
}

/** Undo steps, run last first; each one runs even when an earlier one throws. */
export class Cleanup {
  private readonly steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.steps.length > 0) {
      try {
        await this.steps.pop()!();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `cleanup: ${errors.length} step(s) failed`);
  }
}

/** Creates network namespace `name` and registers its removal. Returns its path, as CNI_NETNS. */
export function addNetns(cleanup: Cleanup, name: string): string {
  sh('ip', ['netns', 'add', name]);
  cleanup.add(() => sh('ip', ['netns', 'del', name], { allowFailure: true }));
  return `/var/run/netns/${name}`;
}

/** A namespace lost and made again (a host reboot under a restored Nomad allocation): same name, nothing inside. */
export function recreateNetns(name: string): void {
  sh('ip', ['netns', 'del', name]);
  sh('ip', ['netns', 'add', name]);
}

/** The kernel's view: the addresses ("ip/prefix") of `ifname` inside namespace `netns`, of one family. */
export function interfaceAddresses(netns: string, ifname = 'eth0', family: 'inet' | 'inet6' = 'inet'): string[] {
  const r = spawnSync('ip', ['netns', 'exec', netns, 'ip', '-j', 'addr', 'show', ifname], { encoding: 'utf8' });
  if (r.status !== 0) return []; // no such interface
  const links = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }> }>;
  return links.flatMap((link) => link.addr_info.filter((a) => a.family === family && a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`));
}

/** The bridge plugin turns on ip_forward; this puts the host's setting back afterwards. */
export function restoreIpForward(cleanup: Cleanup): void {
  const file = '/proc/sys/net/ipv4/ip_forward';
  const saved = readFileSync(file, 'utf8').trim();
  cleanup.add(() => {
    if (readFileSync(file, 'utf8').trim() !== saved) writeFileSync(file, saved);
  });
}

// ---------------------------------------------------------------------------
// libcni

/** One RuntimeConf and the conflist, as the driver takes them. */
export interface LibcniRequest {
  conflist: object;
  cniPath: string[];
  /** libcni's cache dir (results/ under it); private to the test, never the host's /var/lib/cni. */
  cacheDir: string;
  containerId: string;
  netns: string;
  ifname?: string;
  /** RuntimeConf.Args: become CNI_ARGS, in this order. */
  args?: Array<[string, string]>;
  /** RuntimeConf.CapabilityArgs: become runtimeConfig for plugins that declare the capability. */
  capabilityArgs?: Record<string, unknown>;
  /** GC only (libcni 1.3): GCArgs.ValidAttachments, the attachments still alive. */
  validAttachments?: Array<{ containerID: string; ifname: string }>;
}

/** What the driver printed: the result after ADD; the error, and a plugin's CNI error fields, on failure. */
export interface LibcniRun extends CniRun {
  json: { result?: any; error?: string; code?: number; msg?: string; details?: string } | undefined;
}

/**
 * Runs ADD, CHECK or DEL of a conflist through libcni (AddNetworkList, CheckNetworkList, DelNetworkList);
 * with the libcni 1.3 driver also GC and STATUS (GCNetworkList, GetStatusNetworkList), which ignore the
 * container fields of the request.
 */
export async function libcni(driver: string, command: 'ADD' | 'CHECK' | 'DEL' | 'GC' | 'STATUS', request: LibcniRequest): Promise<LibcniRun> {
  const run = await runCni(driver, { config: { command, ifname: 'eth0', args: [], capabilityArgs: {}, ...request }, timeoutMs: 60_000 });
  assert.ok(run.code === 0 || run.code === 1, `libcni driver failed to run a request (exit ${run.code}): ${run.stdout}${run.stderr}`);
  return run as LibcniRun;
}

/** Asserts a libcni call succeeded; returns the result (after ADD) or {}. */
export function libcniOk(run: LibcniRun, what: string): any {
  assert.equal(run.code, 0, `${what} failed through libcni: ${run.stdout}${run.stderr}`);
  return run.json?.result ?? {};
}
