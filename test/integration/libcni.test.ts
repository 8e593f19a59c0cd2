// Our chain under libcni 1.1.2, what Nomad 1.7–1.8 link through go-cni: the driver built by
// scripts/install-runtimes.sh against Debian bookworm's golang-github-appc-cni-dev, with bookworm's reference
// plugins (bridge 1.1.1). The scenarios, shared with libcni-1.3.test.ts, are in test/support/libcni-suite.ts;
// this file's addresses are 10.97.x.0/24 and fd97:…, its names start with lcni.
//
// Needs root (namespaces, links); skips with the reason otherwise. Everything it makes is removed afterwards,
// also when a test fails.
import { libcniSuite } from '../support/libcni-suite';

libcniSuite({ release: '1.1', expectLibcni: /^1\.1\.2-/, net: 97, prefix: 'lcni', cniVersions: ['0.4.0', '1.0.0'] });
