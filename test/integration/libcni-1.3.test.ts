// Our chain under libcni 1.3.0 (spec 1.1.0; Nomad 1.9+ link a libcni of that line through go-cni): the
// driver built by scripts/install-libcni-1.3.sh with the libcni13 tag against Debian forky's
// golang-github-appc-cni-dev, with Go 1.23 from bookworm-backports, and forky's reference plugins (bridge
// 1.9.1: bookworm's 1.1.1 refuses cniVersion 1.1.0 and knows neither GC nor STATUS). Every scenario of
// libcni.test.ts (test/support/libcni-suite.ts), then what only 1.1.0 has: STATUS before each ADD and DEL as
// Nomad 1.9.5+ sends it, GCNetworkList, and STATUS with Consul unreachable. This file's addresses are
// 10.96.x.0/24 and fd96:…, its names start with lc13, so it runs beside libcni.test.ts.
//
// Needs root (namespaces, links); skips with the reason otherwise. Everything it makes is removed afterwards,
// also when a test fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { libcniSuite, skip } from '../support/libcni-suite';
import { addressOf, closedPortUrl } from '../support/plugin';
import { interfaceAddresses, libcniOk } from '../support/runtimes';

const suite = libcniSuite({ release: '1.3', expectLibcni: /^1\.3\.\d+-/, net: 96, prefix: 'lc13', cniVersions: ['0.4.0', '1.0.0', '1.1.0'] });
const { title, run } = suite;

test(title('STATUS before each ADD and DEL, as Nomad 1.9.5+ sends it at conflist 1.1.0'), { skip }, async () => {
  const s = await suite.scenario();
  try {
    const ns = s.netns();
    const request = s.request('alloc-status', ns.path, { conflist: s.conflist('1.1.0') });
    const status = async (when: string) => assert.deepEqual(libcniOk(await run('STATUS', request), `STATUS ${when}`), {});

    await status('before ADD');
    const result = libcniOk(await run('ADD', request), 'ADD');
    assert.equal(result.cniVersion, '1.1.0');
    const address = suite.assertOnEth0(result, ns.name);
    assert.deepEqual(await s.allocations(), { [addressOf(address)]: 'alloc-status' });

    await status('before DEL');
    libcniOk(await run('DEL', request), 'DEL');
    assert.deepEqual(await s.allocations(), {}, 'DEL gave the address back');
  } finally {
    await s.cleanup.run();
  }
});

// libcni's GCNetworkList sends DEL for each stale attachment it cached, then GC to each plugin of the list;
// forky's bridge (1.9.1) has no GC of its own and passes none on to its ipam plugin, so through bridge our
// GC is never reached: an attachment libcni lost the cache of keeps its address (what README.md says).
test(title("GCNetworkList releases a stale container's address through DEL and keeps the live one's; bridge passes GC on to nothing"), { skip }, async () => {
  const s = await suite.scenario();
  try {
    const conflist = s.conflist('1.1.0');
    const containers = ['alloc-live', 'alloc-stale-cached', 'alloc-stale-uncached'].map((id, n) => ({ id, ns: s.netns(n) }));
    const requests = containers.map((c) => s.request(c.id, c.ns.path, { conflist }));
    const addresses: string[] = [];
    for (const [n, request] of requests.entries()) addresses.push(suite.assertOnEth0(libcniOk(await run('ADD', request), `ADD of ${containers[n]!.id}`), containers[n]!.ns.name));
    const [live, cached, uncached] = addresses.map(addressOf);
    assert.deepEqual(await s.allocations(), { [live!]: 'alloc-live', [cached!]: 'alloc-stale-cached', [uncached!]: 'alloc-stale-uncached' });

    // A stale attachment whose libcni cache was lost (a wiped /var/lib/cni): only a GC reaching our plugin could find it.
    const results = path.join(requests[0]!.cacheDir, 'results');
    const cacheFile = (id: string) => `${(conflist as { name: string }).name}-${id}-eth0`;
    rmSync(path.join(results, cacheFile('alloc-stale-uncached')));
    libcniOk(await run('GC', { ...requests[0]!, validAttachments: [{ containerID: 'alloc-live', ifname: 'eth0' }] }), 'GC');

    assert.deepEqual(await s.allocations(), { [live!]: 'alloc-live', [uncached!]: 'alloc-stale-uncached' }, 'the cached stale address released, the live one kept; the uncached one untouched');
    assert.deepEqual(interfaceAddresses(containers[0]!.ns.name), [addresses[0]], 'the live container still has its address');
    assert.deepEqual(interfaceAddresses(containers[1]!.ns.name), [], "libcni's DEL of the cached stale attachment removed its eth0");
    assert.deepEqual(readdirSync(results), [cacheFile('alloc-live')], 'only the live attachment stays cached');

    libcniOk(await run('DEL', requests[0]!), 'DEL of the live container');
    libcniOk(await run('DEL', requests[2]!), 'DEL of the uncached stale container, as an operator would');
    assert.deepEqual(await s.allocations(), {});
  } finally {
    await s.cleanup.run();
  }
});

test(title('STATUS with no Consul server answering fails with 50 (plugin not available), naming the server'), { skip }, async () => {
  const s = await suite.scenario();
  try {
    const closed = await closedPortUrl();
    const request = s.request('alloc-unreachable', '', { conflist: s.conflist('1.1.0', { consul_servers: [closed], request_timeout_ms: 300 }) });
    const status = await run('STATUS', request);
    assert.equal(status.code, 1, `STATUS must fail: ${status.stdout}${status.stderr}`);
    assert.equal(status.json?.code, 50, `the plugin's code, through bridge and libcni: ${status.stdout}`);
    assert.match(status.json?.details ?? '', new RegExp(`${closed}[^;]*ECONNREFUSED`), `the server and why: ${status.stdout}`);
    assert.deepEqual(await s.allocations(), {}, 'nothing written');
  } finally {
    await s.cleanup.run();
  }
});
