/**
 * The files under examples/ are decoded by the plugins' own parsers, as a runtime would feed them: each conflist's
 * ipam-delegated entry through ipam-delegated, ipam-ds-static and ipam-da-consul (with what the selector emits as
 * prevResult.pools), the pools of examples/pools.sh through `consul-ipam pool set`'s range parser, and the Nomad
 * job's `cni { args }` as CNI_ARGS. An example that stops parsing, or that names a pool no example defines,
 * fails here.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createActor, toPromise } from 'xstate';
import { parseRangeArguments } from '../../src/cli/range-argument';
import { parseConfig } from '../../src/cni/config';
import { parseDelegatedConfig } from '../../src/cni/delegated-plugin';
import { readEnvironment } from '../../src/cni/environment';
import { parseStaticConfig } from '../../src/cni/static-config';
import { checkRequestedIpLogic } from '../../src/services/check-requested-ip';
import type { LoadedPool } from '../../src/services/load-pool';
import { selectPoolsLogic } from '../../src/services/select-pools';

const examples = path.join(__dirname, '..', '..', 'examples');
const read = (file: string): string => readFileSync(path.join(examples, file), 'utf8');

/** examples/pools.sh: `consul-ipam pool set NAME --range …` lines, parsed as the CLI parses them. */
const pools = new Map<string, LoadedPool>(
  read('pools.sh')
    .split('\n')
    .filter((line) => line.startsWith('consul-ipam pool set '))
    .map((line) => {
      const [name, ...rest] = line.slice('consul-ipam pool set '.length).split(/\s+/);
      const ranges = rest.flatMap((word, i) => (rest[i - 1] === '--range' ? [word] : []));
      return [name!, { name: name!, ranges: parseRangeArguments(ranges).map((r) => r.range), identity: 1 }];
    }),
);

/** Nomad's CNI_ARGS for a job: IgnoreUnknown, its own NOMAD_* keys, and the job's cni args. */
function nomadEnvironment(args: Record<string, string>) {
  const pairs = { IgnoreUnknown: 'true', NOMAD_ALLOC_ID: '5b2e3f1c-8d4a-4e1b-9c7d-2a6f0e9b1c3d', NOMAD_JOB_ID: 'web', ...args };
  const env = readEnvironment({
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: pairs.NOMAD_ALLOC_ID,
    CNI_IFNAME: 'eth0',
    CNI_NETNS: '/var/run/netns/x',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: Object.entries(pairs).map(([k, v]) => `${k}=${v}`).join(';'),
  });
  return env!;
}

/** The ipam-delegated entry of a conflist, as libcni hands it to the plugin, decoded by each executable of the chain. */
async function throughTheChain(file: string, args: ReadonlyMap<string, string> = new Map()) {
  const conflist = JSON.parse(read(file)) as { cniVersion: string; name: string; plugins: Array<{ type: string; ipam?: { type?: string } }> };
  const entry = conflist.plugins.find((plugin) => plugin.ipam?.type === 'ipam-delegated');
  assert.ok(entry, `${file} has a plugin whose ipam is ipam-delegated`);
  const network = { cniVersion: conflist.cniVersion, name: conflist.name, ...entry };
  const stdin = JSON.stringify(network);
  assert.deepEqual(parseDelegatedConfig(stdin).delegates, ['ipam-ds-static', 'ipam-da-consul']);
  const listed = parseStaticConfig(stdin).pools;
  const selected = await toPromise(createActor(selectPoolsLogic, { input: { command: 'ADD', args, pools: listed } }).start());
  const allocator = parseConfig(JSON.stringify({ ...network, prevResult: { cniVersion: conflist.cniVersion, ips: [], routes: [], dns: {}, pools: selected } }), args);
  for (const name of allocator.listedPools) assert.ok(pools.has(name), `${file} names pool ${name}, which examples/pools.sh makes`);
  return { conflist, allocator };
}

describe('examples/', () => {
  test('every file is one a test below decodes', () => {
    assert.deepEqual(readdirSync(examples).sort(), ['dual-stack.conflist', 'nomad-job.hcl', 'nomad.conflist', 'podman.conflist', 'pools.sh']);
  });

  test('nomad.conflist: two pools, the first served unless a job picks one', async () => {
    const { allocator } = await throughTheChain('nomad.conflist');
    assert.deepEqual(allocator.pools, [{ name: 'web' }]);
    assert.deepEqual(allocator.listedPools, ['web', 'batch']);
  });

  test("nomad-job.hcl: joins nomad.conflist's network, and its cni args pick a listed pool and an address that fits it", async () => {
    const job = read('nomad-job.hcl');
    const mode = /mode\s*=\s*"cni\/([^"]+)"/.exec(job)?.[1];
    assert.equal(mode, JSON.parse(read('nomad.conflist')).name);
    const block = /args\s*=\s*\{([^}]*)\}/.exec(job)?.[1] ?? '';
    const args = Object.fromEntries([...block.matchAll(/^\s*(\w+)\s*=\s*"([^"]*)"/gm)].map((m) => [m[1]!, m[2]!]));
    assert.deepEqual(Object.keys(args).sort(), ['IP', 'IPAM_POOL']);
    const { allocator } = await throughTheChain('nomad.conflist', nomadEnvironment(args).args);
    assert.deepEqual(allocator.pools, [{ name: args.IPAM_POOL, requestedIp: args.IP }]);
    // The address is checked as ADD checks it: in the pool's subnet, not its network, broadcast or gateway.
    const pool = pools.get(args.IPAM_POOL!)!;
    const candidate = await toPromise(createActor(checkRequestedIpLogic, { input: { pool, ip: args.IP! } }).start());
    assert.equal(candidate.ip, args.IP);
  });

  test('podman.conflist: one pool, the ips capability declared (podman --ip sends IP= in CNI_ARGS)', async () => {
    const { conflist, allocator } = await throughTheChain('podman.conflist');
    assert.deepEqual(allocator.pools, [{ name: 'podman' }]);
    assert.deepEqual((conflist.plugins[0] as { capabilities?: object }).capabilities, { ips: true });
  });

  test('dual-stack.conflist: all_pools over an IPv4 and an IPv6 pool', async () => {
    const { allocator } = await throughTheChain('dual-stack.conflist');
    assert.equal(allocator.allPools, true);
    assert.deepEqual(
      allocator.pools.map((p) => pools.get(p.name)!.ranges[0]!.family),
      [4, 6],
    );
  });
});
