// Our chain under podman 4.3 (Debian) with its CNI backend: a network whose conflist is bridge →
// ipam-delegated → ipam-ds-static → ipam-da-consul, against a real Consul, and a busybox image made
// offline. Containers get their address from Consul and give it back when they exit or are removed.
//
// Needs root; skips with the reason otherwise. podman is configured only through files in a temporary
// folder (test/support/podman.ts): nothing system-wide is changed. Containers, podman's state, the bridge,
// the host's ip_forward setting and Consul are removed in `after`, also when a test fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { allocationKeys, putPool } from '../support/plugin';
import { startPodman, type Podman } from '../support/podman';
import { Cleanup, installRuntimes, linkOurPlugins, referencePlugins, restoreIpForward, rootSkip as skip, sh } from '../support/runtimes';

const suffix = String(process.pid % 100000);
const bridgeName = `pdmbr${suffix}`; // at most 10 characters: a link name has at most 15
const octet = 100 + (process.pid % 100);
const subnet = `10.96.${octet}.0/24`;
const gateway = `10.96.${octet}.1`;
const networkName = `ipam-podman-${suffix}`;
const pool = `podman-${suffix}`;

const global = new Cleanup();
let consul: ConsulAgent;
let podman: Podman;

before(async () => {
  if (skip) return;
  installRuntimes();
  const work = mkdtempSync(path.join(tmpdir(), 'podman-test-'));
  global.add(() => rmSync(work, { recursive: true, force: true }));
  const binDir = linkOurPlugins(path.join(work, 'bin'));
  restoreIpForward(global);
  global.add(() => sh('ip', ['link', 'del', bridgeName], { allowFailure: true }));
  consul = await startConsul();
  global.add(() => consul.stop());
  podman = await startPodman({
    dir: path.join(work, 'podman'),
    pluginDirs: [binDir, referencePlugins],
    conflist: {
      cniVersion: '1.0.0',
      name: networkName,
      plugins: [
        {
          type: 'bridge',
          bridge: bridgeName,
          isGateway: true,
          ipam: {
            type: 'ipam-delegated',
            delegates: ['ipam-ds-static', 'ipam-da-consul'],
            pools: [{ name: pool }],
            consul_servers: [consul.url],
            data_dir: path.join(work, 'data'),
          },
        },
      ],
    } as { name: string },
  });
  global.add(() => podman.stop());
});

after(() => global.run());

/** Sets the pool to `size` addresses from .10 up, and empties it. */
async function resetPool(size: number): Promise<string[]> {
  await consul.kv.deleteTree(`ipam/${pool}`);
  await putPool(consul.kv, pool, [{ subnet, gateway, rangeStart: `10.96.${octet}.10`, rangeEnd: `10.96.${octet}.${10 + size - 1}` }]);
  return Array.from({ length: size }, (_, n) => `10.96.${octet}.${10 + n}`);
}

/** The pool's allocations as `ip → target`. */
async function allocations(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const key of await allocationKeys(consul.kv, pool)) {
    out[key.slice(`ipam/${pool}/`.length)] = (await consul.kv.getJson<{ target: string }>(key))?.target ?? '<no target>';
  }
  return out;
}

/** A detached container sleeping on our network; returns its full ID (podman's CNI_CONTAINERID). */
async function startContainer(name: string, ...extra: string[]): Promise<string> {
  return podman.ok(['run', '--detach', '--name', name, '--network', networkName, ...extra, podman.image, 'sleep', '300']);
}

/** The IPv4 address on eth0 as the container itself sees it (busybox ip), "ip/prefix". */
async function addressInside(name: string): Promise<string> {
  const out = await podman.ok(['exec', name, 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
  const match = /inet (\S+)/.exec(out);
  assert.ok(match, `no IPv4 address on eth0 in ${name}: ${out}`);
  return match[1]!;
}

/** The address podman recorded for the container on our network. */
async function addressInspected(name: string): Promise<string> {
  return podman.ok(['inspect', '--format', `{{(index .NetworkSettings.Networks "${networkName}").IPAddress}}`, name]);
}

test('podman run takes its address from Consul and gives it back when the container exits', { skip }, async () => {
  const range = await resetPool(4);
  const id = await startContainer('exits');
  const ip = await addressInspected('exits');
  assert.ok(range.includes(ip), `${ip} is from the pool`);
  assert.equal(await addressInside('exits'), `${ip}/24`);
  assert.deepEqual(await allocations(), { [ip]: id }, 'Consul records the address as the container ID');

  await podman.ok(['stop', '--time', '0', 'exits']);
  assert.deepEqual(await allocations(), {}, 'the address is free once the container has stopped');
  await podman.ok(['rm', 'exits']);

  // A short-lived `podman run --rm`: the address it saw from inside is given back as it exits.
  const seen = await podman.ok(['run', '--rm', '--network', networkName, podman.image, 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
  const inside = /inet (\S+)\//.exec(seen)?.[1];
  assert.ok(inside && range.includes(inside), `the --rm container had a pool address: ${seen}`);
  assert.deepEqual(await allocations(), {});
});

test('podman rm -f gives the address back', { skip }, async () => {
  await resetPool(4);
  const id = await startContainer('removed');
  const ip = await addressInspected('removed');
  assert.deepEqual(await allocations(), { [ip]: id });
  await podman.ok(['rm', '--force', '--time', '0', 'removed']);
  assert.deepEqual(await allocations(), {});
});

test('5 containers started at once get 5 different addresses, all given back', { skip }, async () => {
  const range = await resetPool(6);
  const names = Array.from({ length: 5 }, (_, n) => `many-${n}`);
  const ids = await Promise.all(names.map((name) => startContainer(name)));
  const ips = await Promise.all(names.map((name) => addressInspected(name)));
  assert.equal(new Set(ips).size, 5, `distinct addresses: ${ips.join(', ')}`);
  for (const ip of ips) assert.ok(range.includes(ip), `${ip} is from the pool`);
  assert.deepEqual(await allocations(), Object.fromEntries(ips.map((ip, n) => [ip, ids[n]!])));
  for (const [n, name] of names.entries()) assert.equal(await addressInside(name), `${ips[n]}/24`);

  await Promise.all(names.map((name) => podman.ok(['rm', '--force', '--time', '0', name])));
  assert.deepEqual(await allocations(), {});
});

test("a container started when the network's pool is full fails with the pool-full error, cleanly", { skip }, async () => {
  await resetPool(2);
  const ids = [await startContainer('full-0'), await startContainer('full-1')];
  const held = await allocations();
  assert.deepEqual(Object.values(held).sort(), [...ids].sort());

  const third = await podman.run(['run', '--detach', '--name', 'full-2', '--network', networkName, podman.image, 'sleep', '300']);
  assert.notEqual(third.code, 0, `the third container must not start: ${third.stdout}${third.stderr}`);
  assert.match(third.stderr, new RegExp(`pool ${pool} is full`), `podman shows our error: ${third.stderr}`);
  assert.doesNotMatch(third.stderr, /^\s+at /m, 'no stack trace');
  assert.deepEqual(await allocations(), held, 'the full pool is unchanged');
  const state = await podman.ok(['inspect', '--format', '{{.State.Status}}', 'full-2']);
  assert.notEqual(state, 'running');

  // Removing it is clean too: its DEL has nothing to give back and fails nothing.
  await podman.ok(['rm', '--force', '--time', '0', 'full-2']);
  await Promise.all(['full-0', 'full-1'].map((name) => podman.ok(['rm', '--force', '--time', '0', name])));
  assert.deepEqual(await allocations(), {});
});

test('podman run --ip gets that address, and podman network reload keeps every address', { skip }, async () => {
  const range = await resetPool(4);
  const fixed = `10.96.${octet}.200`; // in the subnet, outside the range: where static addresses usually live
  const fixedId = await startContainer('fixed', '--ip', fixed);
  assert.equal(await addressInspected('fixed'), fixed);
  assert.equal(await addressInside('fixed'), `${fixed}/24`);
  const dynamicId = await startContainer('dynamic');
  const dynamic = await addressInspected('dynamic');
  assert.ok(range.includes(dynamic), `${dynamic} is from the pool`);
  assert.deepEqual(await allocations(), { [fixed]: fixedId, [dynamic]: dynamicId });

  // Reload tears each container's network down and sets it up again, re-sending its address as IP=.
  await podman.ok(['network', 'reload', 'fixed', 'dynamic']);
  assert.equal(await addressInspected('fixed'), fixed);
  assert.equal(await addressInside('fixed'), `${fixed}/24`);
  assert.equal(await addressInspected('dynamic'), dynamic);
  assert.equal(await addressInside('dynamic'), `${dynamic}/24`);
  assert.deepEqual(await allocations(), { [fixed]: fixedId, [dynamic]: dynamicId });

  // An address outside the network's subnet is refused with our error, and nothing is written.
  const outside = await podman.run(['run', '--detach', '--name', 'outside', '--network', networkName, '--ip', '10.55.0.9', podman.image, 'sleep', '300']);
  assert.notEqual(outside.code, 0, `--ip outside the subnet must fail: ${outside.stdout}`);
  assert.match(outside.stderr, /requested IP 10\.55\.0\.9 does not fit pool/);
  assert.deepEqual(await allocations(), { [fixed]: fixedId, [dynamic]: dynamicId });

  await Promise.all(['fixed', 'dynamic', 'outside'].map((name) => podman.ok(['rm', '--force', '--time', '0', name])));
  assert.deepEqual(await allocations(), {});
});
