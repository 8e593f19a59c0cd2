// A real runtime-side client: Debian's reference `bridge` plugin runs our chain as its IPAM
// (ipam-delegated → ipam-ds-static → ipam-da-consul, against a real Consul) and puts the address into a
// real network namespace. Needs root (network namespaces, links); skips with the reason otherwise.
//
// Nothing is sent anywhere: the subnet is a private 10.99.x.0/24 that exists only on a fresh bridge and
// inside the test's namespace, and everything (namespace, bridge, the host's ip_forward setting the bridge
// plugin turns on, Consul) is put back in `after`, also when a test fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { runCni } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const skip = isRoot ? false : 'needs root: it creates a network namespace and a bridge (CI runs it as root)';

const suffix = String(process.pid % 100000);
const netns = `ipamtest-${suffix}`;
const bridgeName = `ipambr${suffix}`; // at most 11 characters: a link name has at most 15
const containerId = `bridge-test-${suffix}`;
const octet = 100 + (process.pid % 100);
const subnet = `10.99.${octet}.0/24`;
const gateway = `10.99.${octet}.1`;
const poolName = `bridge-${suffix}`;
const ipForward = '/proc/sys/net/ipv4/ip_forward';

let consul: ConsulAgent | undefined;
let work: string | undefined;
let ourPlugins: string;
let referencePlugins: string;
let savedIpForward: string | undefined;
let netnsCreated = false;
const timings: string[] = [];


function sh(command: string, args: string[], options: { allowFailure?: boolean } = {}): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  if (!options.allowFailure && r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.error?.message ?? ''}`);
  return r.stdout;
}


before(async () => {
  if (skip) return;
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) {
    assert.ok(existsSync(path.join(root, 'dist', name)), `dist/${name} is missing: run \`npm run build\` first`);
  }
  referencePlugins = sh('bash', [path.join(root, 'scripts/install-cni-plugins.sh')]).trim().split('\n').pop()!;
  assert.ok(existsSync(path.join(referencePlugins, 'bridge')), `${referencePlugins}/bridge is missing`);

  work = mkdtempSync(path.join(tmpdir(), 'bridge-test-'));
  ourPlugins = path.join(work, 'bin');
  sh('mkdir', ['-p', ourPlugins]);
  for (const name of ['ipam-delegated', 'ipam-ds-static', 'ipam-da-consul']) symlinkSync(path.join(root, 'dist', name), path.join(ourPlugins, name));

  savedIpForward = readFileSync(ipForward, 'utf8').trim();
  consul = await startConsul();
  await consul.kv.put(`ipam/${poolName}`, [{ subnet, rangeStart: `10.99.${octet}.10`, rangeEnd: `10.99.${octet}.20`, gateway }]);
  sh('ip', ['netns', 'add', netns]);
  netnsCreated = true;
});

after(async () => {
  if (skip) return;
  if (netnsCreated) sh('ip', ['netns', 'del', netns], { allowFailure: true });
  // The bridge plugin creates the bridge on ADD; DEL leaves it, so it goes here (absent if ADD never ran).
  sh('ip', ['link', 'del', bridgeName], { allowFailure: true });
  sh('ip', ['link', 'del', `${bridgeName}d`], { allowFailure: true });
  if (savedIpForward !== undefined && readFileSync(ipForward, 'utf8').trim() !== savedIpForward) writeFileSync(ipForward, savedIpForward);
  await consul?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  if (timings.length) console.log(`bridge timings: ${timings.join(', ')}`);
});

function bridgeConfig(prevResult?: object, options: { pool?: string; bridge?: string; isGateway?: boolean; isDefaultGateway?: boolean } = {}): object {
  return {
    cniVersion: '1.0.0',
    name: `ipam-test-${suffix}`,
    type: 'bridge',
    bridge: options.bridge ?? bridgeName,
    isGateway: options.isGateway ?? true,
    ...(options.isDefaultGateway === undefined ? {} : { isDefaultGateway: options.isDefaultGateway }),
    ipam: {
      type: 'ipam-delegated',
      delegates: ['ipam-ds-static', 'ipam-da-consul'],
      pools: [{ name: options.pool ?? poolName }],
      consul_servers: [consul!.url],
      data_dir: work,
    },
    ...(prevResult ? { prevResult } : {}),
  };
}

const bridgeEnv = (): Record<string, string> => ({
  CNI_CONTAINERID: containerId,
  CNI_NETNS: `/var/run/netns/${netns}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: `${ourPlugins}:${referencePlugins}`,
});

/** The IPv4 addresses of eth0 inside the namespace, as "ip/prefix". */
function eth0Addresses(): string[] {
  const links = JSON.parse(sh('ip', ['-n', netns, '-j', 'addr', 'show', 'eth0'])) as Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number }> }>;
  return links.flatMap((link) => link.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`));
}

test('bridge ADD, CHECK and DEL with ipam-delegated → ipam-ds-static → ipam-da-consul', { skip }, async () => {
  const bridge = path.join(referencePlugins, 'bridge');

  const add = await runCni(bridge, { command: 'ADD', config: bridgeConfig(), env: bridgeEnv(), timeoutMs: 60_000 });
  assert.equal(add.code, 0, `bridge ADD failed: ${add.stdout}${add.stderr}`);
  timings.push(`ADD ${add.ms} ms`);
  const result = add.json;
  const address: string = result.ips[0].address;
  const ip = address.split('/')[0]!;
  assert.match(address, new RegExp(`^10\\.99\\.${octet}\\.(1\\d|20)/24$`));

  // The kernel's view: eth0 in the namespace carries the address the chain returned...
  assert.deepEqual(eth0Addresses(), [address]);
  // ...and Consul's: the address is recorded as this container's.
  const allocation = await consul!.kv.getJson<{ target: string }>(`ipam/${poolName}/${ip}`);
  assert.equal(allocation?.target, containerId);
  assert.deepEqual(await consul!.kv.keys(`ipam/${poolName}/`), [`ipam/${poolName}/${ip}`]);

  const check = await runCni(bridge, { command: 'CHECK', config: bridgeConfig(result), env: bridgeEnv(), timeoutMs: 60_000 });
  assert.equal(check.code, 0, `bridge CHECK failed: ${check.stdout}${check.stderr}`);
  timings.push(`CHECK ${check.ms} ms`);

  const del = await runCni(bridge, { command: 'DEL', config: bridgeConfig(result), env: bridgeEnv(), timeoutMs: 60_000 });
  assert.equal(del.code, 0, `bridge DEL failed: ${del.stdout}${del.stderr}`);
  timings.push(`DEL ${del.ms} ms`);
  assert.equal(await consul!.kv.get(`ipam/${poolName}/${ip}`), undefined, 'DEL released the address in Consul');
  assert.notEqual(spawnSync('ip', ['-n', netns, 'link', 'show', 'eth0']).status, 0, 'DEL removed eth0 from the namespace');
});

/** The IPv4 default route inside the namespace, as `ip route` prints it. */
function defaultRoute(): string {
  return sh('ip', ['-n', netns, '-4', 'route', 'show', 'default']).trim().replace(/\s+/g, ' ');
}

test('a range without gateway: the default route the original returns, installed by bridge as "default dev eth0"', { skip }, async () => {
  const bridge = path.join(referencePlugins, 'bridge');
  const pool = `${poolName}-nogw`;
  await consul!.kv.put(`ipam/${pool}`, [{ subnet: `10.98.${octet}.0/24`, rangeStart: `10.98.${octet}.10`, rangeEnd: `10.98.${octet}.20` }]);
  const options = { pool, isGateway: false };
  const add = await runCni(bridge, { command: 'ADD', config: bridgeConfig(undefined, options), env: bridgeEnv(), timeoutMs: 60_000 });
  assert.equal(add.code, 0, `bridge ADD failed: ${add.stdout}${add.stderr}`);
  try {
    assert.deepEqual(add.json.routes, [{ dst: '0.0.0.0/0' }]);
    assert.match(defaultRoute(), /^default dev eth0\b/);
  } finally {
    const del = await runCni(bridge, { command: 'DEL', config: bridgeConfig(add.json, options), env: bridgeEnv(), timeoutMs: 60_000 });
    assert.equal(del.code, 0, `bridge DEL failed: ${del.stdout}${del.stderr}`);
  }
});

test('isDefaultGateway: bridge adds the default route itself, so the result carries none and ADD does not fail "file exists"', { skip }, async () => {
  const bridge = path.join(referencePlugins, 'bridge');
  const pool = `${poolName}-defgw`;
  await consul!.kv.put(`ipam/${pool}`, [{ subnet: `10.97.${octet}.0/24`, rangeStart: `10.97.${octet}.10`, rangeEnd: `10.97.${octet}.20` }]);
  // A bridge of its own: bridge gives it the gateway address, and the first test's bridge has another.
  const options = { pool, bridge: `${bridgeName}d`, isDefaultGateway: true };
  const add = await runCni(bridge, { command: 'ADD', config: bridgeConfig(undefined, options), env: bridgeEnv(), timeoutMs: 60_000 });
  assert.equal(add.code, 0, `bridge ADD failed: ${add.stdout}${add.stderr}`);
  try {
    // bridge's own route, via the first address of the subnet it gives the bridge as gateway.
    assert.match(defaultRoute(), new RegExp(`^default via 10\\.97\\.${octet}\\.1 dev eth0\\b`));
    assert.deepEqual(add.json.routes, [{ dst: '0.0.0.0/0', gw: `10.97.${octet}.1` }], "bridge's result names the route it added");
  } finally {
    const del = await runCni(bridge, { command: 'DEL', config: bridgeConfig(add.json, options), env: bridgeEnv(), timeoutMs: 60_000 });
    assert.equal(del.code, 0, `bridge DEL failed: ${del.stdout}${del.stderr}`);
  }
});
