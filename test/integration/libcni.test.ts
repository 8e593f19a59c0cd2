// Our chain under libcni 1.1.2, what Nomad 1.7–1.8 link through go-cni: the driver built by
// scripts/install-runtimes.sh against Debian bookworm's golang-github-appc-cni-dev, with bookworm's reference
// plugins (bridge 1.1.1). The scenarios, shared with libcni-1.3.test.ts, are in test/support/libcni-suite.ts;
// then what bookworm's bridge does with a conflist at 1.1.0. This file's addresses are 10.97.x.0/24 and
// fd97:…, its names start with lcni, so it runs beside libcni-1.3.test.ts.
//
// Needs root (namespaces, links); skips with the reason otherwise. Everything it makes is removed afterwards,
// also when a test fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { libcniSuite, skip } from '../support/libcni-suite';

const suite = libcniSuite({ release: '1.1', expectLibcni: /^1\.1\.2-/, net: 97, prefix: 'lcni', cniVersions: ['0.4.0', '1.0.0'] });

// What README.md tells operators who set cniVersion 1.1.0 for Nomad 1.9.5+'s STATUS on a bookworm host.
test(suite.title("a conflist at cniVersion 1.1.0 is refused by bookworm's bridge 1.1.1 with code 1, before our plugin runs"), { skip }, async () => {
  const s = await suite.scenario();
  try {
    const add = await suite.run('ADD', s.request('alloc-too-new', s.netns().path, { conflist: s.conflist('1.1.0') }));
    assert.equal(suite.build().referencePluginsVersion.split('+')[0], '1.1.1', 'bookworm\'s reference plugins');
    assert.equal(add.json?.code, 1, `bridge refuses the version: ${add.stdout}`);
    assert.match(add.json?.msg ?? '', /incompatible CNI versions/);
    assert.deepEqual(await s.allocations(), {}, 'nothing allocated');
  } finally {
    await s.cleanup.run();
  }
});
