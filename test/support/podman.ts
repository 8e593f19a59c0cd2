// A podman of the tests' own: Debian's podman 4.3 with its CNI backend, configured entirely through
// CONTAINERS_CONF and CONTAINERS_STORAGE_CONF files in a temporary folder, so nothing system-wide is read
// or written: not /etc/containers, not /etc/cni/net.d, not /var/lib/containers. Only the CNI result cache
// stays podman's (/var/lib/cni/results), one file per container, removed by podman on teardown and by
// stop() for this network in any case.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sh } from './runtimes';

/** One podman command's outcome. */
export interface PodmanRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A configured podman: one network of ours, the busybox image, and a way to put it all away. */
export interface Podman {
  /** The network podman knows from our conflist. */
  network: string;
  image: string;
  run(args: string[]): Promise<PodmanRun>;
  /** Runs and throws unless exit 0; returns stdout, trimmed. */
  ok(args: string[]): Promise<string>;
  /** Removes every container, the image store, our network config and podman's cache files of it. */
  stop(): Promise<void>;
}

export interface PodmanOptions {
  /** A fresh folder of the test's; podman's whole state goes under it. */
  dir: string;
  /** The folders podman looks for CNI plugins in (ours first, then the reference plugins). */
  pluginDirs: string[];
  /** The conflist podman's one network uses (its `name` is the network name). */
  conflist: { name: string };
}

/** The busybox-static binary and the applets the tests run, as an image's root file system. */
function busyboxRootfs(dir: string): string {
  const rootfs = path.join(dir, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  for (const applet of ['sh', 'sleep', 'ip', 'cat', 'true']) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  return rootfs;
}

/** Writes the configuration, imports the image offline, and returns a podman bound to them. */
export async function startPodman(options: PodmanOptions): Promise<Podman> {
  const { dir } = options;
  const networks = path.join(dir, 'networks');
  mkdirSync(networks, { recursive: true });
  const containersConf = path.join(dir, 'containers.conf');
  const storageConf = path.join(dir, 'storage.conf');
  const toml = (value: string | string[]): string => JSON.stringify(value);
  writeFileSync(
    containersConf,
    [
      '[containers]',
      // No CAP_SYS_RESOURCE in this VM: podman's default ulimits (1048576) cannot be set.
      `default_ulimits = ${toml(['nofile=4096:4096', 'nproc=4096:4096'])}`,
      '[network]',
      'network_backend = "cni"',
      `cni_plugin_dirs = ${toml(options.pluginDirs)}`,
      `network_config_dir = ${toml(networks)}`,
      `default_network = ${toml(options.conflist.name)}`,
      '[engine]',
      // crun 1.8 refuses this VM's hybrid cgroup layout; there is no systemd to be the cgroup manager.
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${toml(path.join(dir, 'events.log'))}`,
      `tmp_dir = ${toml(path.join(dir, 'tmp'))}`,
      `volume_path = ${toml(path.join(dir, 'volumes'))}`,
      '',
    ].join('\n'),
  );
  // vfs: no overlay mounts to undo, and the image is a few MB.
  writeFileSync(storageConf, ['[storage]', 'driver = "vfs"', `graphroot = ${toml(path.join(dir, 'graph'))}`, `runroot = ${toml(path.join(dir, 'run'))}`, ''].join('\n'));
  writeFileSync(path.join(networks, `${options.conflist.name}.conflist`), JSON.stringify(options.conflist, null, 2));

  const env = { ...process.env, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf };
  const run = (args: string[]): Promise<PodmanRun> =>
    new Promise((resolve, reject) => {
      const child = spawn('podman', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  const ok = async (args: string[]): Promise<string> => {
    const r = await run(args);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout.trim();
  };

  const image = 'localhost/bb';
  const tarball = path.join(dir, 'rootfs.tar');
  sh('tar', ['-C', busyboxRootfs(dir), '-cf', tarball, '.']);
  await ok(['import', '--quiet', tarball, image]);

  return {
    network: options.conflist.name,
    image,
    run,
    ok,
    async stop() {
      // Removing a container tears its network down: our DEL gives the address back.
      const removed = await run(['rm', '--force', '--all', '--time', '0']);
      // podman keeps all its state in our folder, as plain files with vfs (no mounts to undo).
      rmSync(dir, { recursive: true, force: true });
      const cache = '/var/lib/cni/results';
      try {
        for (const file of readdirSync(cache)) if (file.startsWith(`${options.conflist.name}-`)) rmSync(path.join(cache, file), { force: true });
      } catch {
        // no cache dir: nothing of ours in it
      }
      if (removed.code !== 0) throw new Error(`podman rm --force --all failed (${removed.code}): ${removed.stderr}`);
    },
  };
}
