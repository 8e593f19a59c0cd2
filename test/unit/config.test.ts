import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, parseGcConfig } from '../../src/cni/config';
import { readEnvironment } from '../../src/cni/environment';
import { CniError, ErrorCode } from '../../src/cni/errors';

const base = { cniVersion: '1.0.0', name: 'net', ipam: { type: 'ipam-delegated', delegates: ['ipam-ds-static', 'ipam-da-consul'], pools: [{ name: 'x' }], consul_servers: ['http://10.20.30.40:8500'] }, prevResult: { pools: [{ name: 'pool-name' }] } };
const withIpam = (ipam: object) => JSON.stringify({ ...base, ipam: { ...base.ipam, ...ipam } });
const withPools = (pools: unknown) => JSON.stringify({ ...base, prevResult: { pools } });

function fails(stdin: string, code: number, message: RegExp): void {
  assert.throws(() => parseConfig(stdin), (error: unknown) => {
    assert.ok(error instanceof CniError);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

describe('parseConfig', () => {
  test('the seed example decodes; other delegates\' keys in ipam are ignored', () => {
    const config = parseConfig(JSON.stringify(base));
    assert.deepEqual(config.consul.servers, ['http://10.20.30.40:8500']);
    assert.deepEqual(config.pool, { name: 'pool-name' });
    assert.equal(config.consul.connectTimeoutMs, 1000);
    assert.equal(config.consul.requestTimeoutMs, 5000);
  });
  test('a null requested IP (either spelling) is no requested IP, as ipam-ds-nomad writes it', () => {
    assert.equal(parseConfig(withPools([{ name: 'p', requested_ip: null }])).pool.requestedIp, undefined);
    assert.equal(parseConfig(withPools([{ name: 'p', 'requested-ip': null }])).pool.requestedIp, undefined);
    assert.equal(parseConfig(withPools([{ name: 'p', 'requested-ip': null, requested_ip: '10.0.0.9' }])).pool.requestedIp, '10.0.0.9');
  });
  test('unknown keys of a Pool are ignored', () => {
    assert.deepEqual(parseConfig(withPools([{ name: 'p', weight: 3, requested_ip: null }])).pool, { name: 'p' });
  });
  test('any 1.x cniVersion is served, in that version', () => {
    assert.equal(parseConfig(JSON.stringify({ ...base, cniVersion: '1.2.0' })).cniVersion, '1.2.0');
  });
  test('requested-ip and requested_ip are both read, canonicalised', () => {
    assert.equal(parseConfig(withPools([{ name: 'p', 'requested-ip': '10.0.21.123' }])).pool.requestedIp, '10.0.21.123');
    assert.equal(parseConfig(withPools([{ name: 'p', requested_ip: 'FD00::0:7' }])).pool.requestedIp, 'fd00::7');
    assert.equal(parseConfig(withPools([{ name: 'p', requested_ip: '10.0.0.1', 'requested-ip': '10.0.0.1' }])).pool.requestedIp, '10.0.0.1');
  });
  test('only the first pool is used; the rest are counted for a warning', () => {
    const config = parseConfig(withPools([{ name: 'a' }, { name: 'b' }]));
    assert.equal(config.pool.name, 'a');
    assert.equal(config.extraPools, 1);
  });
  test('prevResult.ips are read as address and prefix', () => {
    const config = parseConfig(JSON.stringify({ ...base, prevResult: { ...base.prevResult, ips: [{ address: 'fd00::5/64' }] } }));
    assert.deepEqual(config.prevIps, [{ ip: 'fd00::5', prefix: 64 }]);
  });

  const errors: Array<[string, string, number, RegExp]> = [
    ['empty stdin', '', ErrorCode.DecodingFailure, /no network config/],
    ['stdin that is not JSON', '{"cniVersion":', ErrorCode.DecodingFailure, /not valid JSON/],
    ['no cniVersion', '{}', ErrorCode.InvalidConfig, /cniVersion/],
    ['an unsupported cniVersion', JSON.stringify({ ...base, cniVersion: '0.3.1' }), ErrorCode.IncompatibleVersion, /0\.3\.1/],
    ['consul_servers missing', JSON.stringify({ ...base, ipam: {} }), ErrorCode.InvalidConfig, /missing ipam\.consul_servers/],
    ['consul_servers empty', withIpam({ consul_servers: [] }), ErrorCode.InvalidConfig, /non-empty array .* at ipam\.consul_servers, got \[\]/],
    ['consul_servers holding a number', withIpam({ consul_servers: ['http://a:8500', 42] }), ErrorCode.InvalidConfig, /URL at ipam\.consul_servers\[1\], got 42/],
    ['consul_servers holding a non-URL', withIpam({ consul_servers: ['consul:8500'] }), ErrorCode.InvalidConfig, /ipam\.consul_servers\[0\], got "consul:8500"/],
    ['consul_servers with a query', withIpam({ consul_servers: ['http://a:8500/?x=1'] }), ErrorCode.InvalidConfig, /no query/],
    ['a negative timeout', withIpam({ request_timeout_ms: -5 }), ErrorCode.InvalidConfig, /ipam\.request_timeout_ms, got -5/],
    ['prevResult missing', JSON.stringify({ ...base, prevResult: undefined }), ErrorCode.InvalidConfig, /missing prevResult\.pools/],
    ['pools empty', withPools([]), ErrorCode.InvalidConfig, /prevResult\.pools, got \[\]/],
    ['pools not an array', withPools({ name: 'x' }), ErrorCode.InvalidConfig, /prevResult\.pools/],
    ['a pool without a name', withPools([{}]), ErrorCode.InvalidConfig, /missing prevResult\.pools\[0\]\.name/],
    ['a pool name with a path', withPools([{ name: '../x' }]), ErrorCode.InvalidConfig, /prevResult\.pools\[0\]\.name, got "\.\.\/x"/],
    ['a pool name with a slash', withPools([{ name: 'a/b' }]), ErrorCode.InvalidConfig, /pools\[0\]\.name/],
    ['a pool name with a query', withPools([{ name: 'x?recurse' }]), ErrorCode.InvalidConfig, /pools\[0\]\.name/],
    ['a pool name url-encoded', withPools([{ name: '%2e%2e' }]), ErrorCode.InvalidConfig, /pools\[0\]\.name/],
    ['a pool name with a control character', withPools([{ name: 'a\u0001' }]), ErrorCode.InvalidConfig, /pools\[0\]\.name/],
    ['a requested-ip that is not an address', withPools([{ name: 'p', 'requested-ip': '10.0.0.1/24' }]), ErrorCode.InvalidConfig, /pools\[0\]\.requested-ip, got "10\.0\.0\.1\/24"/],
    ['both spellings, different', withPools([{ name: 'p', 'requested-ip': '10.0.0.1', requested_ip: '10.0.0.2' }]), ErrorCode.InvalidConfig, /both requested-ip and requested_ip/],
  ];
  for (const [label, stdin, code, message] of errors) test(`refuses ${label}`, () => fails(stdin, code, message));

  test('twenty thousand bad pools make a short error: ten problems and a count', () => {
    const pools = Array.from({ length: 20_000 }, () => ({ name: '../x' }));
    assert.throws(() => parseConfig(withPools(pools)), (error: CniError) => error.details.length < 2000 && /and 19990 more$/.test(error.details));
  });
  test('a huge value is cut in the message', () => {
    assert.throws(() => parseConfig(withIpam({ consul_servers: ['x'.repeat(5000)] })), (error: CniError) => error.message.length < 300);
  });
});

describe('parseGcConfig', () => {
  const gc = (more: Record<string, unknown>, drop: string[] = []) => {
    const config: Record<string, unknown> = { ...base, cniVersion: '1.1.0', ...more };
    for (const key of drop) delete config[key];
    return JSON.stringify(config);
  };
  const a = (containerID: string, ifname = 'eth0') => ({ containerID, ifname });
  const failsGc = (stdin: string, message: RegExp) =>
    assert.throws(() => parseGcConfig(stdin), (error: unknown) => error instanceof CniError && error.code === ErrorCode.InvalidConfig && message.test(`${error.message} ${error.details}`));

  test('reads cni.dev/valid-attachments and the older cni.dev/attachments, and keeps both (libcni ≥ 1.2.3 sends both)', () => {
    assert.deepEqual(parseGcConfig(gc({ 'cni.dev/valid-attachments': [a('c1')] })).validAttachments, [{ containerId: 'c1', ifname: 'eth0' }]);
    assert.deepEqual(parseGcConfig(gc({ 'cni.dev/attachments': [a('c2')] })).validAttachments, [{ containerId: 'c2', ifname: 'eth0' }]);
    const both = parseGcConfig(gc({ 'cni.dev/valid-attachments': [a('c1'), a('c3')], 'cni.dev/attachments': [a('c2'), a('c1')] }));
    assert.deepEqual(both.validAttachments.map((x) => x.containerId).sort(), ['c1', 'c2', 'c3']);
  });
  test('an empty list is a list: nothing is kept', () => assert.deepEqual(parseGcConfig(gc({ 'cni.dev/valid-attachments': [] })).validAttachments, []));
  test('no list under either key is error 7 naming the field', () => failsGc(gc({}), /cni\.dev\/valid-attachments.*cni\.dev\/attachments/));
  test('the network name is GC\'s: recorded, and required', () => {
    assert.equal(parseGcConfig(gc({ 'cni.dev/attachments': [] })).network, 'net');
    failsGc(gc({ 'cni.dev/attachments': [] }, ['name']), /missing name/);
    failsGc(gc({ name: '../net', 'cni.dev/attachments': [] }), /expected a network name .* at name, got "\.\.\/net"/);
  });
  test('the pools the selector named, none when prevResult has none', () => {
    assert.deepEqual(parseGcConfig(gc({ 'cni.dev/attachments': [] })).pools, ['pool-name']);
    assert.deepEqual(parseGcConfig(gc({ 'cni.dev/attachments': [] }, ['prevResult'])).pools, []);
  });
});

describe('readEnvironment', () => {
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc-123_x.y', CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/x', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };
  test('reads the CNI variables; unknown CNI_ARGS keys are kept, not refused', () => {
    const read = readEnvironment({ ...env, CNI_ARGS: 'IgnoreUnknown=true;NOMAD_JOB_ID=web' });
    assert.equal(read?.containerId, 'abc-123_x.y');
    assert.deepEqual(read?.path, ['/opt/cni/bin', '/usr/lib/cni']);
    assert.equal(read?.args.get('NOMAD_JOB_ID'), 'web');
  });
  test('no CNI_COMMAND is the "about" run', () => assert.equal(readEnvironment({}), undefined));
  test('GC and STATUS need no container', () => assert.equal(readEnvironment({ CNI_COMMAND: 'STATUS' })?.command, 'STATUS'));
  const bad: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
    ['an unknown command', { ...env, CNI_COMMAND: 'ADDX' }, /CNI_COMMAND "ADDX"/],
    ['a missing container ID', { ...env, CNI_CONTAINERID: undefined }, /CNI_CONTAINERID ""/],
    ['a container ID with a slash', { ...env, CNI_CONTAINERID: 'a/../b' }, /CNI_CONTAINERID/],
    ['a container ID starting with a dot', { ...env, CNI_CONTAINERID: '.abc' }, /CNI_CONTAINERID/],
    ['a missing interface', { ...env, CNI_IFNAME: '' }, /CNI_IFNAME ""/],
    ['an interface name of 16 characters', { ...env, CNI_IFNAME: 'a'.repeat(16) }, /at most 15/],
    ['an interface name with a colon', { ...env, CNI_IFNAME: 'eth:0' }, /CNI_IFNAME/],
    ['an interface name ".."', { ...env, CNI_IFNAME: '..' }, /CNI_IFNAME/],
    ['CNI_ARGS without "="', { ...env, CNI_ARGS: 'IgnoreUnknown' }, /CNI_ARGS/],
  ];
  for (const [label, input, message] of bad) {
    test(`refuses ${label} with code 4`, () =>
      assert.throws(() => readEnvironment(input), (error: CniError) => error.code === ErrorCode.InvalidEnvironment && message.test(error.message)));
  }
});
