import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/cni/config';
import { CniError, ErrorCode } from '../../src/cni/errors';

const base = {
  cniVersion: '1.0.0',
  name: 'net',
  ipam: { type: 'ipam-delegated', delegates: ['ipam-ds-static', 'ipam-da-consul'], consul_servers: ['http://10.20.30.40:8500'] },
  prevResult: { pools: [{ name: 'blue' }, { name: 'green', 'requested-ip': '10.0.1.7' }, { name: 'red' }] },
};
const stdin = (more: object = {}): string => JSON.stringify({ ...base, ...more });
const cniArgs = (text: string): Map<string, string> => new Map(text.split(';').map((pair) => pair.split('=', 2) as [string, string]));

function fails(run: () => unknown, code: number, message: RegExp, details?: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof CniError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, message);
    if (details) assert.match(error.details ?? '', details);
    return true;
  });
}

describe('a static IP per container', () => {
  const cases: Array<[string, string, object, string | undefined]> = [
    ['nothing asked: the pool\'s own requested-ip, if any', '', {}, undefined],
    ['CNI_ARGS IP= (podman run --ip)', 'IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.50', {}, '10.0.0.50'],
    ['CNI_ARGS IP= in CIDR form', 'IP=10.0.0.50/24', {}, '10.0.0.50'],
    ['CNI_ARGS IP= of IPv6, canonicalised', 'IP=FD00:0:0:0::0:5', {}, 'fd00::5'],
    ['args.cni.ips', '', { args: { cni: { ips: ['10.0.0.51'] } } }, '10.0.0.51'],
    ['runtimeConfig.ips, CIDR form as libcni passes it', '', { runtimeConfig: { ips: ['10.0.0.52/24'] } }, '10.0.0.52'],
    ['every source naming the same address', 'IP=10.0.0.53', { args: { cni: { ips: ['10.0.0.53/24'] } }, runtimeConfig: { ips: ['10.0.0.53/16'] } }, '10.0.0.53'],
    ['an empty IP= is no request', 'IP=', {}, undefined],
    ['the same address twice is one (podman 4.3 reload repeats runtimeConfig.ips)', 'IP=10.0.0.54', { runtimeConfig: { ips: ['10.0.0.54/24', '10.0.0.54'] } }, '10.0.0.54'],
    ['empty lists are no request', '', { args: { cni: { ips: [] } }, runtimeConfig: { ips: [] } }, undefined],
    ['other keys of args are someone else\'s', '', { args: { cni: { labels: ['x'] }, k8s: 1 } }, undefined],
  ];
  for (const [label, args, config, expected] of cases) {
    test(label, () => {
      assert.equal(parseConfig(stdin(config), cniArgs(args)).pool.requestedIp, expected);
    });
  }

  test("the container's request wins over the pool's requested-ip", () => {
    const config = parseConfig(stdin(), cniArgs('IPAM_POOL=green;IP=10.0.1.99'));
    assert.deepEqual(config.pool, { name: 'green', requestedIp: '10.0.1.99' });
    assert.deepEqual(parseConfig(stdin(), cniArgs('IPAM_POOL=green')).pool, { name: 'green', requestedIp: '10.0.1.7' });
  });

  test('two sources that disagree are an invalid config naming both', () => {
    fails(() => parseConfig(stdin({ runtimeConfig: { ips: ['10.0.0.2/24'] } }), cniArgs('IP=10.0.0.1')), ErrorCode.InvalidConfig, /CNI_ARGS IP and runtimeConfig.ips ask for different addresses/, /10\.0\.0\.1.*10\.0\.0\.2/);
    fails(() => parseConfig(stdin({ args: { cni: { ips: ['10.0.0.3'] } }, runtimeConfig: { ips: ['10.0.0.4/24'] } })), ErrorCode.InvalidConfig, /args.cni.ips and runtimeConfig.ips/);
  });

  test('malformed values name the source: CNI_ARGS is the environment (4), the config is 7', () => {
    fails(() => parseConfig(stdin(), cniArgs('IP=10.0.0.300')), ErrorCode.InvalidEnvironment, /invalid CNI_ARGS IP: expected an IP address .* got "10\.0\.0\.300"/);
    fails(() => parseConfig(stdin(), cniArgs('IP=10.0.0.1/33')), ErrorCode.InvalidEnvironment, /CNI_ARGS IP/);
    fails(() => parseConfig(stdin({ args: { cni: { ips: '10.0.0.1' } } })), ErrorCode.InvalidConfig, /expected an array of IP addresses at args.cni.ips/);
    fails(() => parseConfig(stdin({ runtimeConfig: { ips: [42] } })), ErrorCode.InvalidConfig, /invalid runtimeConfig.ips: .* got 42/);
  });

  test('DEL reads no static IP: a bad one must not make it fail and leak the address', () => {
    const config = parseConfig(stdin({ runtimeConfig: { ips: ['nonsense'] } }), cniArgs('IP=10.0.0.300;IPAM_POOL=red'), false);
    assert.deepEqual(config.pool, { name: 'red' });
  });

  test('more than one address from one source is refused: one pool gives one address', () => {
    fails(() => parseConfig(stdin(), cniArgs('IP=10.0.0.1,fd00::1')), ErrorCode.InvalidEnvironment, /expected one IP address, got 2/, /10\.0\.0\.1, fd00::1/);
    fails(() => parseConfig(stdin({ runtimeConfig: { ips: ['10.0.0.1/24', '10.0.0.2/24'] } })), ErrorCode.InvalidConfig, /runtimeConfig.ips: expected one IP address, got 2/);
  });
});

describe('a pool per container (CNI_ARGS IPAM_POOL)', () => {
  test('without it, the first pool the config lists, as before', () => {
    const config = parseConfig(stdin(), cniArgs('IgnoreUnknown=true'));
    assert.equal(config.pool.name, 'blue');
    assert.equal(config.extraPools, 2);
  });
  test('it picks among the listed pools, in its own order', () => {
    assert.equal(parseConfig(stdin(), cniArgs('IPAM_POOL=red')).pool.name, 'red');
    const config = parseConfig(stdin(), cniArgs('IPAM_POOL=red,blue'));
    assert.equal(config.pool.name, 'red');
    assert.equal(config.extraPools, 1);
  });
  test('a pool the config does not list is an error naming both', () => {
    fails(() => parseConfig(stdin(), cniArgs('IPAM_POOL=blue,yellow')), ErrorCode.InvalidConfig, /IPAM_POOL names pool yellow, which the network config does not list/, /IPAM_POOL is blue,yellow; the config lists blue, green, red/);
  });
  test('a name that cannot be a key segment is refused before it reaches a key path', () => {
    fails(() => parseConfig(stdin(), cniArgs('IPAM_POOL=../etc')), ErrorCode.InvalidEnvironment, /invalid CNI_ARGS IPAM_POOL "\.\.\/etc"/);
    fails(() => parseConfig(stdin(), cniArgs('IPAM_POOL=blue,')), ErrorCode.InvalidEnvironment, /IPAM_POOL/);
  });
});

describe('with ipam.all_pools', () => {
  const allPools = (more: object = {}) => stdin({ ipam: { ...base.ipam, all_pools: true }, ...more });

  test('every selected pool is served, in order, each with its own requested-ip; nothing is counted for a warning', () => {
    const config = parseConfig(allPools());
    assert.deepEqual(config.pools, [{ name: 'blue' }, { name: 'green', requestedIp: '10.0.1.7' }, { name: 'red' }]);
    assert.equal(config.extraPools, 0);
    assert.equal(config.allPools, true);
    assert.deepEqual(parseConfig(allPools(), cniArgs('IPAM_POOL=red,blue')).pools, [{ name: 'red' }, { name: 'blue' }]);
  });

  test("the container's static IP is left for ADD to place once it has read the pools' subnets", () => {
    const config = parseConfig(allPools(), cniArgs('IP=fd00::5'));
    assert.equal(config.staticIp, 'fd00::5');
    assert.deepEqual(config.pools[1], { name: 'green', requestedIp: '10.0.1.7' });
  });

  test('without all_pools, ADD serves the first pool only and counts the others for a warning', () => {
    const config = parseConfig(stdin(), cniArgs('IP=10.0.0.9'));
    assert.deepEqual(config.pools, [{ name: 'blue', requestedIp: '10.0.0.9' }]);
    assert.equal(config.staticIp, undefined);
    assert.equal(config.extraPools, 2);
  });

  test('DEL and CHECK see every listed pool, whatever IPAM_POOL narrows ADD to', () => {
    assert.deepEqual(parseConfig(stdin(), cniArgs('IPAM_POOL=red'), false).listedPools, ['blue', 'green', 'red']);
  });

  test('all_pools must be a boolean', () => {
    fails(() => parseConfig(allPools({ ipam: { ...base.ipam, all_pools: 'yes' } })), ErrorCode.InvalidConfig, /ipam\.all_pools/);
  });
});
