// The libcni scenarios, run once per libcni release by test/integration/libcni.test.ts (libcni 1.1.2) and
// libcni-1.3.test.ts (libcni 1.3.0): our one-page driver (test/runtimes/libcni-driver), built against that
// release, runs the conflist bridge → ipam-delegated → ipam-ds-static → ipam-da-consul in real network
// namespaces against a real Consul, in the ways Nomad calls it. Each test reads Consul KV and the namespace's
// eth0 afterwards.
//
// Needs root (namespaces, links); skips with the reason otherwise. Each release's file has its own address
// space (10.<net>.x.0/24 and fd<net>:…, which exist only on a fresh bridge and inside the test's namespaces)
// and its own names for the bridge, namespaces and pools, so the two files run in parallel. Namespaces, the
// bridge, the host's ip_forward setting, libcni's cache (a private dir) and Consul are removed in `after`,
// and each test's namespaces in its own finally, also when it fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startConsul, type ConsulAgent } from './consul';
import { addressOf, allocationKeys, putPool } from './plugin';
import {
  Cleanup,
  addNetns,
  installLibcni,
  interfaceAddresses,
  libcni,
  libcniOk,
  linkOurPlugins,
  recreateNetns,
  restoreIpForward,
  rootSkip as skip,
  sh,
  type LibcniBuild,
  type LibcniRequest,
  type LibcniRun,
} from './runtimes';

export { skip };

/** What tells one release's run from the other's. */
export interface LibcniSuiteOptions {
  /** Which driver: install-runtimes.sh's (1.1) or install-libcni-1.3.sh's (1.3). */
  release: '1.1' | '1.3';
  /** The libcni version the build must record (build.json), e.g. /^1\.3\./; named in every title. */
  expectLibcni: RegExp;
  /** The second byte of the IPv4 space (10.<net>.x.0/24) and the IPv6 prefix's (fd<net>:…). */
  net: number;
  /** The start of the bridge's, namespaces' and pools' names: 4 characters, so the bridge's fits in 15. */
  prefix: string;
  /** The conflist versions the basic ADD, CHECK and DEL test runs at. */
  cniVersions: string[];
}

/** One scenario's pool (its own slice of the shared /24, so scenarios never see each other's keys) and helpers. */
export interface Scenario {
  pool: string;
  cleanup: Cleanup;
  /** A fresh namespace for container `n` of this scenario; returns its name and path. */
  netns(n?: number): { name: string; path: string };
  /** A second pool in the scenario's slice, listed after the first in `conflist`, made on first use. */
  secondPool(): Promise<string>;
  /** An IPv6 pool (the scenario's own /64), listed after the first, with `ipam.all_pools` set: dual-stack. */
  ipv6Pool(): Promise<string>;
  /** The conflist; `ipam` overrides fields of the ipam-delegated entry (consul_servers, ...). */
  conflist(cniVersion?: string, ipam?: Record<string, unknown>): object;
  request(containerId: string, netnsPath: string, more?: Partial<LibcniRequest>): LibcniRequest;
  /** The allocations of the pool (default the first) as `ip → target`. */
  allocations(of?: string): Promise<Record<string, string>>;
}

/** What a release's file gets back to add tests of its own. */
export interface LibcniSuite {
  /** `libcni <version>: <what>`, the version as built (build.json), or the release when skipping. */
  title(what: string): string;
  /** The driver's build, once `before` has run. */
  build(): LibcniBuild;
  run(command: Parameters<typeof libcni>[1], request: LibcniRequest): Promise<LibcniRun>;
  scenario(size?: number): Promise<Scenario>;
  /** The one address of an ADD result, checked against the namespace's eth0. */
  assertOnEth0(result: any, netns: string): string;
  /** `a.b.c.<last>` in the suite's /24. */
  ipv4(last: number): string;
}

/** Registers the before/after hooks and the scenarios every release runs; returns what a file needs to add more. */
export function libcniSuite(options: LibcniSuiteOptions): LibcniSuite {
  const { net, prefix } = options;
  const suffix = String(process.pid % 100000);
  const bridgeName = `${prefix}br${suffix}`; // at most 11 characters: a link name has at most 15
  const octet = 100 + (process.pid % 100);
  const ipv4 = (last: number) => `10.${net}.${octet}.${last}`;
  const subnet = `${ipv4(0)}/24`;
  const gateway = ipv4(1);

  // Installed (at most a build, seconds) while the file loads, so the titles name the version under test.
  const installed: LibcniBuild | undefined = skip ? undefined : installLibcni(options.release);
  const version = installed?.libcni ?? options.release;
  const title = (what: string) => `libcni ${version}: ${what}`;

  const global = new Cleanup();
  let consul: ConsulAgent;
  let work: string;
  let binDir: string;
  let scenarioCount = 0;

  before(async () => {
    if (skip) return;
    assert.match(installed!.libcni, options.expectLibcni, `the driver was built against libcni ${installed!.libcni}`);
    work = mkdtempSync(path.join(tmpdir(), `libcni-${options.release}-test-`));
    global.add(() => rmSync(work, { recursive: true, force: true }));
    binDir = linkOurPlugins(path.join(work, 'bin'));
    restoreIpForward(global);
    // The bridge plugin creates the bridge on the first ADD; DEL leaves it.
    global.add(() => sh('ip', ['link', 'del', bridgeName], { allowFailure: true }));
    consul = await startConsul();
    global.add(() => consul.stop());
  });

  after(() => global.run());

  const driver = () => installed!.driver;
  const run = (command: Parameters<typeof libcni>[1], request: LibcniRequest) => libcni(driver(), command, request);

  /** `size` addresses from the start of the scenario's slice of 16 for its pool; the rest for a second pool. */
  async function scenario(size = 12): Promise<Scenario> {
    const index = ++scenarioCount;
    const name = `${prefix}-${suffix}-${index}`;
    const pool = name;
    const first = 10 + (index - 1) * 16;
    assert.ok(first + size <= 254, 'the scenarios have used up the /24');
    await putPool(consul.kv, pool, [{ subnet, gateway, rangeStart: ipv4(first), rangeEnd: ipv4(first + size - 1) }]);
    const cleanup = new Cleanup();
    const cacheDir = path.join(work, `cache-${index}`);
    const pools = [pool];
    let allPools = false;
    const v6 = `fd${net}:${octet}:${index}::`;
    const self: Scenario = {
      pool,
      async secondPool() {
        const second = `${pool}-b`;
        if (!pools.includes(second)) {
          await putPool(consul.kv, second, [{ subnet, gateway, rangeStart: ipv4(first + size), rangeEnd: ipv4(first + 15) }]);
          pools.push(second);
        }
        return second;
      },
      async ipv6Pool() {
        const pool6 = `${pool}-6`;
        if (!pools.includes(pool6)) {
          await putPool(consul.kv, pool6, [{ subnet: `${v6}/64`, gateway: `${v6}1`, rangeStart: `${v6}10`, rangeEnd: `${v6}1f` }]);
          pools.push(pool6);
          allPools = true;
        }
        return pool6;
      },
      cleanup,
      netns(n = 0) {
        const ns = `${name}-${n}`;
        return { name: ns, path: addNetns(cleanup, ns) };
      },
      conflist(cniVersion = '1.0.0', ipam = {}) {
        return {
          cniVersion,
          name,
          plugins: [
            {
              type: 'bridge',
              bridge: bridgeName,
              isGateway: true,
              // libcni passes runtimeConfig.ips only to a plugin that declares the capability.
              capabilities: { ips: true },
              ipam: {
                type: 'ipam-delegated',
                delegates: ['ipam-ds-static', 'ipam-da-consul'],
                pools: pools.map((p) => ({ name: p })),
                consul_servers: [consul.url],
                data_dir: path.join(work, 'data'),
                ...(allPools ? { all_pools: true } : {}),
                ...ipam,
              },
            },
          ],
        };
      },
      request(containerId, netnsPath, more = {}) {
        return { conflist: self.conflist(), cniPath: [binDir, installed!.referencePlugins], cacheDir, containerId, netns: netnsPath, ...more };
      },
      async allocations(of = pool) {
        const out: Record<string, string> = {};
        for (const key of await allocationKeys(consul.kv, of)) {
          const value = await consul.kv.getJson<{ target: string }>(key);
          out[key.slice(`ipam/${of}/`.length)] = value?.target ?? '<no target>';
        }
        return out;
      },
    };
    return self;
  }

  const inSubnet = new RegExp(`^10\\.${net}\\.${octet}\\.\\d+/24$`);
  function assertOnEth0(result: any, netns: string): string {
    assert.equal(result.ips?.length, 1, `one address expected: ${JSON.stringify(result)}`);
    const address: string = result.ips[0].address;
    assert.match(address, inSubnet);
    assert.deepEqual(interfaceAddresses(netns), [address], `eth0 inside ${netns} carries the address libcni returned`);
    return address;
  }

  for (const cniVersion of options.cniVersions) {
    test(title(`ADD, CHECK and DEL, conflist ${cniVersion}`), { skip }, async () => {
      const s = await scenario();
      try {
        const ns = s.netns();
        const request = s.request('alloc-basic', ns.path, { conflist: s.conflist(cniVersion) });
        const result = libcniOk(await run('ADD', request), 'ADD');
        assert.equal(result.cniVersion, cniVersion);
        const address = assertOnEth0(result, ns.name);
        // 0.4.0 results carry ips[].version; 1.0.0 dropped it.
        assert.equal(result.ips[0].version, cniVersion === '0.4.0' ? '4' : undefined);
        assert.deepEqual(await s.allocations(), { [addressOf(address)]: 'alloc-basic' });

        libcniOk(await run('CHECK', request), 'CHECK');
        libcniOk(await run('DEL', request), 'DEL');
        assert.deepEqual(await s.allocations(), {}, 'DEL gave the address back');
        assert.deepEqual(interfaceAddresses(ns.name), [], 'DEL removed eth0');
      } finally {
        await s.cleanup.run();
      }
    });
  }

  test(title('ADD three times without DEL, as Nomad retries it: one address, the same each time'), { skip }, async () => {
    const s = await scenario();
    try {
      const ns = s.netns();
      const request = s.request('alloc-retried', ns.path);
      const addresses: string[] = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        // A failed attempt can leave the IPAM reservation behind while the interface is gone; the bridge plugin
        // refuses an eth0 that exists, so each retry starts from an empty namespace, and no DEL runs between.
        if (attempt > 1) recreateNetns(ns.name);
        const result = libcniOk(await run('ADD', request), `ADD attempt ${attempt}`);
        addresses.push(assertOnEth0(result, ns.name));
        assert.deepEqual(await s.allocations(), { [addressOf(addresses[0]!)]: 'alloc-retried' }, `after attempt ${attempt}`);
      }
      assert.deepEqual(new Set(addresses).size, 1, `every attempt got the same address: ${addresses.join(', ')}`);
      libcniOk(await run('DEL', request), 'DEL');
      assert.deepEqual(await s.allocations(), {});
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('CHECK on a restored namespace, then ADD again without DEL (a Nomad agent restart)'), { skip }, async () => {
    const s = await scenario();
    try {
      const ns = s.netns();
      const request = s.request('alloc-restored', ns.path);
      const address = assertOnEth0(libcniOk(await run('ADD', request), 'ADD'), ns.name);

      // The agent restarts and the namespace is intact: CHECK passes and nothing changes.
      libcniOk(await run('CHECK', request), 'CHECK on an intact namespace');
      assert.deepEqual(await s.allocations(), { [addressOf(address)]: 'alloc-restored' });

      // The namespace was lost and made again: CHECK fails (eth0 is gone), so Nomad runs ADD again, no DEL.
      recreateNetns(ns.name);
      const check = await run('CHECK', request);
      assert.equal(check.code, 1, `CHECK must fail on an empty namespace: ${check.stdout}`);
      const again = libcniOk(await run('ADD', request), 'ADD after the failed CHECK');
      assert.equal(assertOnEth0(again, ns.name), address, 'the container keeps its address');
      assert.deepEqual(await s.allocations(), { [addressOf(address)]: 'alloc-restored' }, 'still one address');
      libcniOk(await run('CHECK', request), 'CHECK after the second ADD');

      libcniOk(await run('DEL', request), 'DEL');
      assert.deepEqual(await s.allocations(), {});
    } finally {
      await s.cleanup.run();
    }
  });

  test(title("DEL with libcni's result cache wiped still gives the address back"), { skip }, async () => {
    const s = await scenario();
    try {
      const ns = s.netns();
      const request = s.request('alloc-uncached', ns.path);
      const address = assertOnEth0(libcniOk(await run('ADD', request), 'ADD'), ns.name);
      const results = path.join(request.cacheDir, 'results');
      assert.deepEqual(readdirSync(results), [`${(request.conflist as { name: string }).name}-alloc-uncached-eth0`], 'libcni cached the result');
      assert.deepEqual(await s.allocations(), { [addressOf(address)]: 'alloc-uncached' });

      // A host whose /var/lib/cni was wiped: libcni sends DEL with no prevResult.
      rmSync(results, { recursive: true });
      libcniOk(await run('DEL', request), 'DEL without a cached result');
      assert.deepEqual(await s.allocations(), {}, 'the address was found and released by its target');
      assert.equal(existsSync(results), false);
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('10 containers started at once get 10 different addresses, all given back'), { skip }, async () => {
    const s = await scenario(12);
    try {
      const containers = Array.from({ length: 10 }, (_, n) => ({ id: `alloc-many-${n}`, ns: s.netns(n) }));
      const adds = await Promise.all(containers.map((c) => run('ADD', s.request(c.id, c.ns.path))));
      const addresses = adds.map((r, n) => assertOnEth0(libcniOk(r, `ADD of container ${n}`), containers[n]!.ns.name));
      assert.equal(new Set(addresses).size, 10, `distinct addresses: ${addresses.join(', ')}`);
      assert.deepEqual(await s.allocations(), Object.fromEntries(containers.map((c, n) => [addressOf(addresses[n]!), c.id])));

      const dels = await Promise.all(containers.map((c) => run('DEL', s.request(c.id, c.ns.path))));
      dels.forEach((r, n) => libcniOk(r, `DEL of container ${n}`));
      assert.deepEqual(await s.allocations(), {});
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('CNI_ARGS exactly as Nomad 1.9 sends them on ADD, and none on DEL'), { skip }, async () => {
    const s = await scenario();
    try {
      const ns = s.netns();
      const allocId = '5b2e3f1c-8d4a-4e1b-9c7d-2a6f0e9b1c3d';
      // go-cni turns Nomad's map into Args in map order, so the order is any; the job's own args
      // (network { cni { args = {...} } }) come with them, unknown to us.
      const nomadArgs: Array<[string, string]> = [
        ['NOMAD_JOB_ID', 'web'],
        ['IgnoreUnknown', 'true'],
        ['NOMAD_ALLOC_ID', allocId],
        ['NOMAD_GROUP_NAME', 'frontend'],
        ['team', 'payments'],
        ['NOMAD_NAMESPACE', 'default'],
        ['NOMAD_REGION', 'global'],
      ];
      const result = libcniOk(await run('ADD', s.request(allocId, ns.path, { args: nomadArgs })), 'ADD');
      const address = assertOnEth0(result, ns.name);
      assert.deepEqual(await s.allocations(), { [addressOf(address)]: allocId });

      libcniOk(await run('DEL', s.request(allocId, ns.path)), 'DEL without CNI_ARGS');
      assert.deepEqual(await s.allocations(), {});
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('CNI_ARGS IP= and the ips capability give the container the address it asks for'), { skip }, async () => {
    const s = await scenario();
    try {
      // Static addresses usually live outside rangeStart..rangeEnd, in the subnet: the top of the /24.
      const asked = ipv4(240 + (scenarioCount % 14));
      const capability = ipv4(241 + (scenarioCount % 14));
      const byArgs = s.netns(1);
      const byCapability = s.netns(2);

      const request = s.request('alloc-static-args', byArgs.path, { args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web'], ['IP', asked]] });
      assert.equal(assertOnEth0(libcniOk(await run('ADD', request), 'ADD with IP='), byArgs.name), `${asked}/24`);
      const viaCapability = s.request('alloc-static-cap', byCapability.path, { capabilityArgs: { ips: [`${capability}/24`] } });
      assert.equal(assertOnEth0(libcniOk(await run('ADD', viaCapability), 'ADD with the ips capability'), byCapability.name), `${capability}/24`);
      assert.deepEqual(await s.allocations(), { [asked]: 'alloc-static-args', [capability]: 'alloc-static-cap' });

      // Asked again by the container that holds it (a retried ADD, podman's reload): success, same address.
      recreateNetns(byArgs.name);
      assert.equal(assertOnEth0(libcniOk(await run('ADD', request), 'ADD with IP= again'), byArgs.name), `${asked}/24`);
      assert.deepEqual(await s.allocations(), { [asked]: 'alloc-static-args', [capability]: 'alloc-static-cap' });

      // An address outside the pool's subnet is refused as requested-ip is (103); two sources that disagree, 7.
      // (Runtimes always send IgnoreUnknown: without it, bridge itself refuses IP= and IPAM_POOL=.)
      const before = await s.allocations();
      const outside = await run('ADD', s.request('alloc-static-bad', s.netns(3).path, { args: [['IgnoreUnknown', '1'], ['IP', '10.55.0.9']] }));
      assert.equal(outside.json?.code, 103, `outside the pool: ${outside.stdout}`);
      assert.match(outside.json?.msg ?? '', /requested IP 10\.55\.0\.9 does not fit pool/);
      const disagree = await run('ADD', s.request('alloc-static-two', s.netns(4).path, { args: [['IgnoreUnknown', '1'], ['IP', asked]], capabilityArgs: { ips: [`${capability}/24`] } }));
      assert.equal(disagree.json?.code, 7, `two sources: ${disagree.stdout}`);
      assert.match(disagree.json?.msg ?? '', /CNI_ARGS IP and runtimeConfig\.ips ask for different addresses/);
      assert.deepEqual(await s.allocations(), before, 'the refused ADDs wrote nothing');

      libcniOk(await run('DEL', request), 'DEL');
      libcniOk(await run('DEL', viaCapability), 'DEL');
      assert.deepEqual(await s.allocations(), {});
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('CNI_ARGS IPAM_POOL= picks the pool among those the config lists'), { skip }, async () => {
    const s = await scenario(8);
    try {
      const second = await s.secondPool();
      const ns = s.netns();
      const request = s.request('alloc-pool-b', ns.path, { args: [['IgnoreUnknown', 'true'], ['IPAM_POOL', second]] });
      const address = assertOnEth0(libcniOk(await run('ADD', request), 'ADD with IPAM_POOL='), ns.name);
      assert.deepEqual(await s.allocations(second), { [addressOf(address)]: 'alloc-pool-b' });
      assert.deepEqual(await s.allocations(), {}, 'nothing from the first pool');

      const unknown = await run('ADD', s.request('alloc-pool-x', s.netns(1).path, { args: [['IgnoreUnknown', 'true'], ['IPAM_POOL', 'elsewhere']] }));
      assert.equal(unknown.json?.code, 7, `a pool the config does not list: ${unknown.stdout}`);
      assert.match(unknown.json?.msg ?? '', /IPAM_POOL names pool elsewhere, which the network config does not list/);
      assert.match(unknown.json?.details ?? '', new RegExp(`the config lists ${s.pool}, ${second}`));
      assert.deepEqual(await s.allocations(second), { [addressOf(address)]: 'alloc-pool-b' });

      // Nomad sends no CNI_ARGS on DEL: DEL looks in every listed pool, with libcni's cached result and without it.
      libcniOk(await run('DEL', { ...request, args: [] }), 'DEL without CNI_ARGS');
      assert.deepEqual(await s.allocations(second), {}, 'a DEL without IPAM_POOL releases it');

      recreateNetns(ns.name);
      const again = assertOnEth0(libcniOk(await run('ADD', request), 'ADD with IPAM_POOL= again'), ns.name);
      rmSync(path.join(request.cacheDir, 'results'), { recursive: true });
      libcniOk(await run('DEL', { ...request, args: [] }), 'DEL without CNI_ARGS nor a cached result');
      assert.deepEqual(await s.allocations(second), {}, `${again} found by its target in the second pool and released`);
    } finally {
      await s.cleanup.run();
    }
  });

  test(title('dual-stack: ipam.all_pools gives eth0 an IPv4 and an IPv6 address, CHECK passes, DEL gives both back'), { skip }, async () => {
    const s = await scenario(8);
    try {
      const v6 = await s.ipv6Pool();
      const ns = s.netns();
      const request = s.request('alloc-dual', ns.path);
      const result = libcniOk(await run('ADD', request), 'dual-stack ADD');
      const [v4Address, v6Address] = (result.ips as Array<{ address: string }>).map((ip) => ip.address);
      assert.equal(result.ips.length, 2, JSON.stringify(result));
      assert.deepEqual(interfaceAddresses(ns.name), [v4Address], 'the IPv4 address is on eth0');
      assert.deepEqual(interfaceAddresses(ns.name, 'eth0', 'inet6'), [v6Address], 'the IPv6 address is on eth0');
      assert.match(v6Address!, new RegExp(`^fd${net}:${octet}:\\d+::1[0-9a-f]/64$`));
      const routes = sh('ip', ['netns', 'exec', ns.name, 'ip', '-6', 'route', 'show', 'default']);
      assert.match(routes, new RegExp(`^default via fd${net}:`), 'the IPv6 default route of the result is installed');
      assert.deepEqual(await s.allocations(), { [addressOf(v4Address!)]: 'alloc-dual' });
      assert.deepEqual(await s.allocations(v6), { [addressOf(v6Address!)]: 'alloc-dual' });

      libcniOk(await run('CHECK', request), 'CHECK');
      libcniOk(await run('DEL', request), 'DEL');
      assert.deepEqual({ ...(await s.allocations()), ...(await s.allocations(v6)) }, {}, 'DEL gave both back');
    } finally {
      await s.cleanup.run();
    }
  });

  return { title, build: () => installed!, run, scenario, assertOnEth0, ipv4 };
}
