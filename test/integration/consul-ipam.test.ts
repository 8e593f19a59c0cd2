// The consul-ipam operator CLI, run as an operator runs it (bin/consul-ipam with argv and a clean environment;
// stdout, stderr and the exit code read back) against a real Consul agent, whose KV is then read directly.
// Concurrent operators are real too: a forwarding proxy between the CLI and Consul changes the key through
// Consul's API just before the CLI's check-and-set write reaches it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { binaryDir, builtExecutable } from '../support/plugin';
import { makeTlsFiles, type TlsFiles } from '../support/reliability';
import { assertFailure, assertOk, execute, json, show, startProxy, type Run } from '../support/cli';

const root = path.resolve(__dirname, '../..');
// bin/consul-ipam as npm installs it; with IPAM_TEST_BINARY_DIR, the single executable's link.
const cli = binaryDir ? builtExecutable('consul-ipam') : path.join(root, 'bin/consul-ipam');
const plugin = builtExecutable('ipam-da-consul');
const { version } = require(path.join(root, 'package.json')) as { version: string };

/** A port on which nothing listens. */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

let agent: ConsulAgent;
let env: Record<string, string>;
const scratch = mkdtempSync(path.join(tmpdir(), 'consul-ipam-test-'));
const consulIpam = (...args: string[]): Promise<Run> => execute(cli, args, env);

before(async () => {
  for (const file of [cli, builtExecutable('consul-ipam'), plugin]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` before the integration tests`);
  }
  agent = await startConsul();
  env = { CONSUL_HTTP_ADDR: agent.url };
});

after(async () => {
  await agent?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('consul-ipam without Consul', () => {
  test('--version prints the package version', async () => {
    const run = await consulIpam('--version');
    assertOk(run);
    assert.equal(run.stdout, `consul-ipam ${version}\n`);
  });

  test('--help lists every command; a command\'s --help gives its usage', async () => {
    const global = await consulIpam('--help');
    assertOk(global);
    for (const line of ['pool set NAME', 'pool list', 'pool show NAME', 'release NAME IP', '--consul URL', '--token-file PATH', 'Exit codes']) {
      assert.ok(global.stdout.includes(line), `${line} in\n${global.stdout}`);
    }
    const set = await consulIpam('pool', 'set', '--help');
    assertOk(set);
    assert.match(set.stdout, /^Usage: consul-ipam \[options\] pool set NAME --range SUBNET\[,START,END,GATEWAY\]\.\.\. \[--force\]/);
    const release = await consulIpam('release', '-h');
    assertOk(release);
    assert.match(release.stdout, /^Usage: consul-ipam \[options\] release NAME IP \[--target ID\]/);
  });

  test('run bare (as Nomad fingerprints a CNI bin dir), it prints its version and usage and exits 0', async () => {
    const bare = await consulIpam();
    assertOk(bare);
    assert.match(bare.stdout.split('\n')[0] ?? '', /^consul-ipam v\d+\.\d+\.\d+/);
    assert.match(bare.stdout, /pool set/);
  });

  const usageErrors: Array<[string, string[], RegExp]> = [
    ['options but no command', ['--consul', 'http://127.0.0.1:1'], /a command is missing/],
    ['an unknown command', ['pools'], /unknown command "pools"/],
    ['an unknown pool command', ['pool', 'delete', 'web'], /unknown command "pool delete"/],
    ['an unknown option', ['pool', 'list', '--all'], /unknown option --all/],
    ['an option of another command', ['pool', 'list', '--force'], /--force does not apply to pool list/],
    ['a missing argument', ['pool', 'show'], /pool show: missing NAME/],
    ['a surplus argument', ['pool', 'show', 'web', 'db'], /unexpected argument "db"/],
    ['pool set without --range', ['pool', 'set', 'web'], /needs at least one --range/],
    ['a pool name the plugin cannot use', ['pool', 'set', 'a/b', '--range', '10.0.0.0/24'], /pool name "a\/b" is not valid/],
    ['a subnet with host bits', ['pool', 'set', 'web', '--range', '10.0.20.1/23'], /did you mean 10\.0\.20\.0\/23\?/],
    ['a start outside the subnet', ['pool', 'set', 'web', '--range', '10.0.20.0/23,10.0.30.1'], /rangeStart 10\.0\.30\.1 is not an address of subnet 10\.0\.20\.0\/23/],
    ['a gateway of the other family', ['pool', 'set', 'web', '--range', 'fd00::/64,,,10.0.0.1'], /gateway 10\.0\.0\.1 is IPv4 but subnet fd00::\/64 is IPv6/],
    ['overlapping ranges', ['pool', 'set', 'web', '--range', '10.0.20.0/23', '--range', '10.0.21.0/24,10.0.21.10,10.0.21.20'], /overlap/],
    ['an address that is not one', ['release', 'web', '10.0.0.300'], /"10\.0\.0\.300" is not an IP address/],
    ['a bad --consul', ['--consul', 'consul.example:8500x', 'pool', 'list'], /--consul "consul\.example:8500x" is not a Consul HTTP address/],
    ['--token and --token-file together', ['--token', 'a', '--token-file', 'b', 'pool', 'list'], /--token and --token-file/],
  ];
  for (const [label, argv, message] of usageErrors) {
    test(`usage error, exit 2: ${label}`, async () => {
      const run = await consulIpam(...argv);
      assertFailure(run, 2, message);
      assert.match(run.stderr, /\(see consul-ipam .*--help\)$/m);
      assert.equal(run.stdout, '');
    });
  }

  test('usage errors never reach Consul: nothing was written', async () => assert.deepEqual(await agent.kv.keys('ipam/'), []));

  test('no server reachable: exit 1, naming each server tried', async () => {
    const [a, b] = [await closedPort(), await closedPort()];
    const run = await consulIpam('--consul', a, '--consul', b, 'pool', 'list');
    assertFailure(run, 1, /no Consul server could be reached/);
    assert.ok(run.stderr.includes(a) && run.stderr.includes(b), show(run));
    assert.match(run.stderr, /ECONNREFUSED/);
  });

  test('--json errors are also an object on stdout', async () => {
    const run = await consulIpam('--json', '--consul', await closedPort(), 'pool', 'list');
    assert.equal(run.code, 1);
    assert.equal(json(run).error.reason, 'unreachable');
    assert.match(json(run).error.message, /no Consul server could be reached/);
  });
});

describe('consul-ipam against Consul', () => {
  const web = [{ subnet: '10.0.20.0/23', rangeStart: '10.0.21.90', rangeEnd: '10.0.21.150', gateway: '10.0.20.1' }];

  test('pool set creates ipam/NAME only, in the host-local format, and the plugin allocates from it', async () => {
    const run = await consulIpam('pool', 'set', 'web', '--range', '10.0.20.0/23,10.0.21.90,10.0.21.150,10.0.20.1');
    assertOk(run);
    assert.equal(run.stdout, 'created pool web: 61 addresses in 10.0.20.0/23 (10.0.21.90-10.0.21.150, gateway 10.0.20.1)\n');
    assert.deepEqual(await agent.kv.getJson('ipam/web'), web);
    assert.deepEqual(await agent.kv.keys('ipam/'), ['ipam/web'], 'no folder key, no other key');

    // The real plugin reads what the CLI wrote: ADD as ipam-delegated hands it over.
    const config = {
      cniVersion: '1.0.0',
      name: 'net',
      ipam: { type: 'ipam-delegated', consul_servers: [agent.url], data_dir: path.join(scratch, 'host') },
      prevResult: { cniVersion: '1.0.0', ips: [], routes: [], dns: {}, pools: [{ name: 'web' }] },
    };
    const add = await execute(plugin, [], { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c-plugin', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/x', CNI_PATH: '/opt/cni/bin' }, JSON.stringify(config));
    assert.equal(add.code, 0, show(add));
    assert.equal(json(add).ips[0].address, '10.0.21.90/23');
    assert.equal(((await agent.kv.getJson('ipam/web/10.0.21.90')) as { target: string }).target, 'c-plugin');
  });

  test('pool set --json, and setting the same ranges again writes nothing', async () => {
    const before = await agent.kv.get('ipam/web');
    const run = await consulIpam('--json', 'pool', 'set', 'web', '--range', '10.0.20.0/23,10.0.21.90,10.0.21.150,10.0.20.1');
    assertOk(run);
    assert.deepEqual(json(run), {
      pool: 'web',
      ranges: [{ subnet: '10.0.20.0/23', rangeStart: '10.0.21.90', rangeEnd: '10.0.21.150', gateway: '10.0.20.1', size: '61' }],
      size: '61',
      action: 'unchanged',
    });
    assert.equal((await agent.kv.get('ipam/web'))?.modifyIndex, before?.modifyIndex);
  });

  test('pool list: table and --json, IPv6 sizes exact, a broken pool listed with its reason', async () => {
    assertOk(await consulIpam('pool', 'set', 'v6', '--range', 'fd00:1::/64', '--range', '10.9.0.0/30'));
    // Refused by the plugin too (a pool it serves leniently, such as one with host bits set, is listed as served).
    await agent.kv.put('ipam/broken', '[{"subnet":"10.0.0.0/8","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.5"}]');
    await agent.kv.put('ipam/web/10.0.21.100', { target: 'c1', ifname: 'eth0', host: 'h1' });
    await agent.kv.put('ipam/web/10.0.21.99', { target: 'c2' });
    await agent.kv.put('ipam/web/10.0.20.50', { target: 'c3' }); // a static address, outside rangeStart..rangeEnd
    await agent.kv.put('ipam/web/10.0.21.102', 'not json');
    await agent.kv.put('ipam/web/bogus', { target: 'x' });
    await agent.kv.put('ipam/web/', ''); // the seed's optional folder key

    const text = await consulIpam('pool', 'list');
    assertOk(text);
    const lines = text.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^POOL\s+SIZE\s+ALLOCATED\s+FREE\s+USED\s+RANGES$/);
    assert.match(lines[1]!, /^broken\s+-\s+0\s+-\s+-\s+invalid: .*rangeStart 10\.0\.0\.9 comes after rangeEnd 10\.0\.0\.5/);
    assert.match(lines[2]!, /^v6\s+18446744073709551617\s+0\s+18446744073709551617\s+0\.00%\s+fd00:1::\/64 \(fd00:1::1-fd00:1::ffff:ffff:ffff:ffff\); 10\.9\.0\.0\/30/);
    // 5 address keys (c-plugin's .90, .99, .100, .102 broken, and the static .50); 4 of them in the 61.
    assert.match(lines[3]!, /^web\s+61\s+5\s+57\s+6\.55%\s+10\.0\.20\.0\/23 \(10\.0\.21\.90-10\.0\.21\.150, gateway 10\.0\.20\.1\)$/);
    assert.equal(lines.length, 4);

    const list = await consulIpam('pool', 'list', '--json');
    assertOk(list);
    const pools = json(list) as Array<Record<string, unknown>>;
    assert.deepEqual(pools.map((p) => p.name), ['broken', 'v6', 'web']);
    assert.match(String(pools[0]!.error), /ipam\/broken/);
    assert.deepEqual(pools[1], {
      name: 'v6',
      ranges: [
        { subnet: 'fd00:1::/64', rangeStart: 'fd00:1::1', rangeEnd: 'fd00:1::ffff:ffff:ffff:ffff', size: '18446744073709551615' },
        { subnet: '10.9.0.0/30', rangeStart: '10.9.0.1', rangeEnd: '10.9.0.2', size: '2' },
      ],
      size: '18446744073709551617',
      allocated: 0,
      free: '18446744073709551617',
      usedPercent: 0,
    });
    assert.deepEqual([pools[2]!.size, pools[2]!.allocated, pools[2]!.free, pools[2]!.usedPercent], ['61', 5, '57', 6.55]);
  });

  test('pool show: allocations sorted by address, invalid keys listed, not a crash', async () => {
    const run = await consulIpam('pool', 'show', 'web', '--json');
    assertOk(run);
    const shown = json(run);
    assert.deepEqual(shown.allocations, [
      { ip: '10.0.20.50', target: 'c3', note: 'static (outside rangeStart..rangeEnd)' },
      { ip: '10.0.21.90', target: 'c-plugin', ifname: 'eth0', host: shown.allocations[1].host },
      { ip: '10.0.21.99', target: 'c2' },
      { ip: '10.0.21.100', target: 'c1', ifname: 'eth0', host: 'h1' },
    ]);
    assert.equal(typeof shown.allocations[1].host, 'string');
    assert.deepEqual(shown.invalid.map((i: { key: string }) => i.key), ['ipam/web/10.0.21.102', 'ipam/web/bogus']);
    assert.deepEqual([shown.size, shown.allocated, shown.free], ['61', 5, '57']);

    const text = await consulIpam('pool', 'show', 'web');
    assertOk(text);
    assert.match(text.stdout, /^pool web: 61 addresses, 5 allocated, 57 free \(6\.55% used\)$/m);
    assert.match(text.stdout, /^ {2}10\.0\.21\.100\s+c1\s+eth0\s+h1$/m);
    assert.match(text.stdout, /^ {2}ipam\/web\/bogus\s+key ipam\/web\/bogus in pool web is not named after an IP address/m);
    const rows = text.stdout.split('\n');
    const order = ['10.0.20.50', '10.0.21.90', '10.0.21.99', '10.0.21.100'].map((ip) => rows.findIndex((row) => row.startsWith(`  ${ip} `)));
    assert.ok(order.every((i) => i > 0), `every allocation has its row: ${order}`);
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'rows in address order');
  });

  test('pool show of a pool that does not exist: exit 1', async () => {
    const run = await consulIpam('pool', 'show', 'nope');
    assertFailure(run, 1, /pool nope does not exist: there is no key ipam\/nope in Consul KV/);
    const asJson = await consulIpam('pool', 'show', 'nope', '--json');
    assert.equal(asJson.code, 1);
    assert.equal(json(asJson).error.reason, 'not-found');
  });

  test('a shrink that strands live allocations is refused, listing them; KV is left alone', async () => {
    const before = await agent.kv.get('ipam/web');
    const smaller = await consulIpam('pool', 'set', 'web', '--range', '10.0.21.0/24');
    assertFailure(smaller, 1, /refusing to shrink pool web: 1 live allocation would no longer fit: 10\.0\.20\.50 \(c3\) is outside every range/);
    const onGateway = await consulIpam('pool', 'set', 'web', '--range', '10.0.20.0/23,,,10.0.21.100');
    assertFailure(onGateway, 1, /10\.0\.21\.100 \(c1\) would be the gateway of 10\.0\.20\.0\/23/);
    const after = await agent.kv.get('ipam/web');
    assert.deepEqual([after?.value, after?.modifyIndex], [before?.value, before?.modifyIndex]);
  });

  test('--force writes the shrunk pool and warns about what it stranded', async () => {
    const run = await consulIpam('pool', 'set', 'web', '--range', '10.0.21.0/24,10.0.21.90,10.0.21.150', '--force');
    assertOk(run);
    assert.equal(run.stdout, 'updated pool web: 61 addresses in 10.0.21.0/24 (10.0.21.90-10.0.21.150)\n');
    assert.match(run.stderr, /^consul-ipam: warning: --force: pool web written although 1 live allocation no longer fits: 10\.0\.20\.50 \(c3\) is outside every range$/m);
    assert.deepEqual(await agent.kv.getJson('ipam/web'), [{ subnet: '10.0.21.0/24', rangeStart: '10.0.21.90', rangeEnd: '10.0.21.150' }]);
    const shown = json(await consulIpam('--json', 'pool', 'show', 'web'));
    assert.equal(shown.allocations[0].note, 'outside every range');
  });

  test('release: --target must match; then the key is deleted; then it is gone', async () => {
    const wrong = await consulIpam('release', 'web', '10.0.21.99', '--target', 'c1');
    assertFailure(wrong, 1, /10\.0\.21\.99 in pool web is allocated to c2, not to c1; nothing released/);
    assert.notEqual(await agent.kv.get('ipam/web/10.0.21.99'), undefined);

    const right = await consulIpam('release', 'web', '10.0.21.99', '--target', 'c2');
    assertOk(right);
    assert.equal(right.stdout, 'released 10.0.21.99 from pool web: it was allocated to c2\n');
    assert.equal(await agent.kv.get('ipam/web/10.0.21.99'), undefined);

    const again = await consulIpam('release', 'web', '10.0.21.99');
    assertFailure(again, 1, /10\.0\.21\.99 is not allocated in pool web: there is no key ipam\/web\/10\.0\.21\.99/);
  });

  test('release of a broken allocation: refused with --target, done without', async () => {
    const checked = await consulIpam('release', 'web', '10.0.21.102', '--target', 'c1');
    assertFailure(checked, 1, /holds no valid Allocation, so its target cannot be compared with --target c1/);
    assert.notEqual(await agent.kv.get('ipam/web/10.0.21.102'), undefined);
    const run = await consulIpam('--json', 'release', 'web', '10.0.21.102');
    assertOk(run);
    assert.deepEqual(json(run), { pool: 'web', ip: '10.0.21.102', released: true });
    assert.equal(await agent.kv.get('ipam/web/10.0.21.102'), undefined);
  });

  test('CONSUL_HTTP_ADDR without a scheme, and a dead server before a live one', async () => {
    const bare = await execute(cli, ['pool', 'list', '--json'], { CONSUL_HTTP_ADDR: agent.url.replace('http://', '') });
    assertOk(bare);
    const dead = await closedPort();
    const failover = await execute(cli, ['--consul', dead, '--consul', agent.url, 'pool', 'list', '--json'], {});
    assertOk(failover);
    assert.deepEqual(json(failover), json(bare));
  });
});

describe('consul-ipam against another operator', () => {
  /** Runs the CLI through a proxy that calls `change` once, when the request matching `trigger` arrives. */
  async function raced(trigger: (method: string, url: string) => boolean, change: () => Promise<void>, args: string[]): Promise<{ run: Run; changed: boolean }> {
    let changed = false;
    const proxy = await startProxy(agent.url, async (method, url) => {
      if (!changed && trigger(method, url)) {
        changed = true;
        await change();
      }
    });
    try {
      return { run: await execute(cli, ['--consul', proxy.url, ...args]), changed };
    } finally {
      await proxy.close();
    }
  }

  test('pool set: a pool changed between the read and the write is not overwritten', async () => {
    await agent.kv.put('ipam/race', [{ subnet: '10.1.0.0/24' }]);
    const theirs = [{ subnet: '10.1.0.0/24', gateway: '10.1.0.1' }];
    const { run, changed } = await raced(
      (method, url) => method === 'PUT' && url.startsWith('/v1/kv/ipam/race?') && url.includes('cas='),
      () => agent.kv.put('ipam/race', theirs),
      ['pool', 'set', 'race', '--range', '10.1.0.0/23'],
    );
    assert.ok(changed, 'the write went through the proxy with a cas');
    assertFailure(run, 1, /pool race was changed by someone else while this command ran .*nothing written/);
    assert.deepEqual(await agent.kv.getJson('ipam/race'), theirs);
  });

  test('pool set: a pool created by someone else meanwhile is not overwritten (cas=0)', async () => {
    const theirs = [{ subnet: '10.2.0.0/24' }];
    const { run, changed } = await raced(
      (method, url) => method === 'PUT' && url === '/v1/kv/ipam/fresh?cas=0',
      () => agent.kv.put('ipam/fresh', theirs),
      ['pool', 'set', 'fresh', '--range', '10.3.0.0/24'],
    );
    assert.ok(changed, 'the creation was a cas=0 write');
    assertFailure(run, 1, /pool fresh was created by someone else while this command ran; nothing written/);
    assert.deepEqual(await agent.kv.getJson('ipam/fresh'), theirs);
  });

  test('release: an address re-allocated between the read and the delete is left alone', async () => {
    await agent.kv.put('ipam/web/10.0.21.120', { target: 'old' });
    const { run, changed } = await raced(
      (method, url) => method === 'DELETE' && url.startsWith('/v1/kv/ipam/web/10.0.21.120?') && url.includes('cas='),
      () => agent.kv.put('ipam/web/10.0.21.120', { target: 'new' }),
      ['release', 'web', '10.0.21.120', '--target', 'old'],
    );
    assert.ok(changed, 'the delete went through the proxy with a cas');
    assertFailure(run, 1, /ipam\/web\/10\.0\.21\.120 changed while this command ran .*nothing released/);
    assert.deepEqual(await agent.kv.getJson('ipam/web/10.0.21.120'), { target: 'new' });
  });
});

describe('consul-ipam with ACLs', () => {
  const master = '8c4b5d7e-1f2a-4b3c-9d8e-7f6a5b4c3d2e';
  let secured: ConsulAgent;

  before(async () => {
    secured = await startConsul({ aclMasterToken: master });
  });
  after(async () => {
    await secured?.stop();
  });

  test('without a token: permission denied, exit 1, nothing written', async () => {
    const run = await execute(cli, ['--consul', secured.url, 'pool', 'set', 'web', '--range', '10.0.0.0/24'], {});
    assertFailure(run, 1, /permission denied \(check --token\)/);
    assert.deepEqual(await secured.kv.keys('ipam/'), []);
  });

  test('the token from --token, --token-file or CONSUL_HTTP_TOKEN is sent', async () => {
    assertOk(await execute(cli, ['--consul', secured.url, '--token', master, 'pool', 'set', 'a', '--range', '10.0.0.0/24'], {}));
    const file = path.join(scratch, 'token');
    writeFileSync(file, `${master}\n`);
    assertOk(await execute(cli, ['--consul', secured.url, '--token-file', file, 'pool', 'set', 'b', '--range', '10.0.1.0/24'], {}));
    const listed = await execute(cli, ['pool', 'list', '--json'], { CONSUL_HTTP_ADDR: secured.url, CONSUL_HTTP_TOKEN: master });
    assertOk(listed);
    assert.deepEqual((json(listed) as Array<{ name: string }>).map((p) => p.name), ['a', 'b']);
  });

  test('a token file that cannot be read: exit 1, naming the option', async () => {
    const run = await execute(cli, ['--consul', secured.url, '--token-file', path.join(scratch, 'missing'), 'pool', 'list'], {});
    assertFailure(run, 1, /cannot read --token-file .*missing/);
  });
});

describe('consul-ipam over HTTPS', () => {
  let tls: TlsFiles;
  let open: ConsulAgent; // HTTPS, no client certificate required
  let strict: ConsulAgent; // HTTPS, client certificate required

  before(async () => {
    tls = makeTlsFiles(path.join(scratch, 'tls'));
    const https = { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile };
    [open, strict] = await Promise.all([startConsul({ https }), startConsul({ https, extraHcl: 'verify_incoming_https = true' })]);
  });
  after(async () => {
    await Promise.all([open?.stop(), strict?.stop()]);
  });

  test('--ca-file (or CONSUL_CACERT) makes the server\'s certificate trusted', async () => {
    assertOk(await execute(cli, ['--consul', open.httpsUrl!, '--ca-file', tls.caFile, 'pool', 'set', 'tls', '--range', '10.7.0.0/24'], {}));
    const listed = await execute(cli, ['pool', 'list', '--json'], { CONSUL_HTTP_ADDR: open.httpsUrl!, CONSUL_CACERT: tls.caFile });
    assertOk(listed);
    assert.deepEqual((json(listed) as Array<{ name: string }>).map((p) => p.name), ['tls']);
  });

  test('a certificate that does not verify: exit 1 with the reason', async () => {
    const run = await execute(cli, ['--consul', open.httpsUrl!, '--ca-file', tls.otherCaFile, 'pool', 'list'], {});
    assertFailure(run, 1, /no Consul server could be reached .*(CERT|certificate|SELF_SIGNED|verify)/i);
  });

  test('--cert-file and --key-file present a client certificate', async () => {
    const without = await execute(cli, ['--consul', strict.httpsUrl!, '--ca-file', tls.caFile, 'pool', 'list'], {});
    assertFailure(without, 1, /no Consul server could be reached/);
    const run = await execute(cli, ['--consul', strict.httpsUrl!, '--ca-file', tls.caFile, '--cert-file', tls.clientCertFile, '--key-file', tls.clientKeyFile, 'pool', 'list', '--json'], {});
    assertOk(run);
    assert.deepEqual(json(run), []);
  });
});
