// HTTPS to Consul (issue 4, "Access control and transport"): a CA, a server certificate for 127.0.0.1 (IP SAN)
// and a client certificate are made with openssl in a temporary folder; a real Consul 1.8.7 serves HTTPS with
// them. With ipam.consul_ca_file the plugin works over https://; a server whose certificate does not verify is
// skipped like an unreachable one, with the certificate's reason in the error (code 11), and the next server
// listed is used. Consul requiring client certificates is served with ipam.consul_cert_file/consul_key_file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startConsul, type ConsulAgent } from '../support/consul';
import { addressOf, assertSuccess, describeRun, putPool, runPlugin, scenario, tempDir, type Scenario } from '../support/plugin';
import { assertCleanError, assertNoKvWrite, kvState, makeTlsFiles, reportFigures, type TlsFiles } from '../support/reliability';

const T = { timeout: 60_000 };
let tls: TlsFiles;
let agent: ConsulAgent; // HTTPS, no client certificate required
let strict: ConsulAgent; // HTTPS, client certificate required (verify_incoming_https)
const figures = { runs: 0, certificateFailuresSeen: 0 };

/** What Node says about a certificate that does not verify. */
const certificateReason = /UNABLE_TO_VERIFY|SELF_SIGNED|CERT_|unable to (verify|get local issuer)/i;

before(async () => {
  tls = makeTlsFiles(tempDir('ipam-da-consul-tls-'));
  const https = { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile };
  [agent, strict] = await Promise.all([startConsul({ https }), startConsul({ https, extraHcl: 'verify_incoming_https = true' })]);
  assert.ok(agent.httpsUrl && strict.httpsUrl, 'the agents must serve HTTPS');
});

after(async () => {
  await Promise.all([agent?.stop(), strict?.stop()]);
  reportFigures('tls', 'totals', figures);
});

async function newPool(a: ConsulAgent, servers: string[], subnet: string): Promise<Scenario> {
  const s = scenario(servers, 'tls');
  await putPool(a.kv, s.pool, [{ subnet }]);
  return s;
}

const run = (...args: Parameters<typeof runPlugin>) => {
  figures.runs++;
  return runPlugin(...args);
};

test('ADD, CHECK and DEL over https:// with ipam.consul_ca_file', T, async () => {
  const s = await newPool(agent, [agent.httpsUrl!], '10.70.0.0/24');
  const ipam = { consul_ca_file: tls.caFile };
  const added = assertSuccess(await run({ command: 'ADD', containerId: 'c1', config: s.config({ ipam }) }));
  assert.equal(added.ips[0].address, '10.70.0.1/24');
  const key = `ipam/${s.pool}/${addressOf(added.ips[0].address)}`;
  assert.equal((await agent.kv.getJson<{ target: string }>(key))?.target, 'c1');
  assertSuccess(await run({ command: 'CHECK', containerId: 'c1', config: s.config({ ipam, ips: added.ips }) }));
  assertSuccess(await run({ command: 'DEL', containerId: 'c1', config: s.config({ ipam, dataDir: tempDir() }) }));
  assert.equal(await agent.kv.get(key), undefined);
});

for (const [label, ipam] of [
  ['without ipam.consul_ca_file (system CAs only)', () => ({})],
  ['with a CA that did not sign the server certificate', () => ({ consul_ca_file: tls.otherCaFile })],
] as Array<[string, () => Record<string, string>]>) {
  test(`https:// ${label}: the server is skipped like an unreachable one, code 11 with the certificate reason`, T, async () => {
    const s = await newPool(agent, [agent.httpsUrl!], '10.71.0.0/24');
    const before = await kvState(agent.url);
    for (const command of ['ADD', 'DEL', 'CHECK'] as const) {
      const r = await run({ command, containerId: 'c1', config: s.config({ ipam: ipam(), ips: command === 'CHECK' ? [{ address: '10.71.0.1/24' }] : [] }) });
      const error = assertCleanError(r, command);
      assert.equal(error.code, 11, describeRun(r));
      assert.ok(error.details?.includes(agent.httpsUrl!), `the details must name the server\n${describeRun(r)}`);
      assert.match(error.details ?? '', certificateReason, `the details must give the certificate reason\n${describeRun(r)}`);
      figures.certificateFailuresSeen++;
    }
    const status = await run({ command: 'STATUS', env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined }, config: s.config({ cniVersion: '1.1.0', ipam: ipam() }) });
    const error = assertCleanError(status, 'STATUS');
    assert.equal(error.code, 50, describeRun(status));
    assert.match(error.details ?? '', certificateReason, describeRun(status));
    assertNoKvWrite(before, await kvState(agent.url), label);
  });
}

test('https:// that does not verify, then a plain http:// server: the invocation falls through to the second', T, async () => {
  const s = await newPool(agent, [agent.httpsUrl!, agent.url], '10.72.0.0/24');
  const logFile = path.join(tempDir('ipam-da-consul-log-'), 'verbose.log');
  const r = await run({ command: 'ADD', containerId: 'c1', flavour: 'verbose', env: { IPAM_DA_CONSUL_LOG_FILE: logFile }, config: s.config() });
  const added = assertSuccess(r);
  assert.equal(added.ips[0].address, '10.72.0.1/24');
  assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.72.0.1`))?.target, 'c1');
  // The first server was passed over for its certificate (a warning on stderr), and the second one was used.
  assert.ok(r.stderr.includes(agent.httpsUrl!) && certificateReason.test(r.stderr), `stderr must say why ${agent.httpsUrl} was skipped\n${describeRun(r)}`);
  assert.ok(readFileSync(logFile, 'utf8').includes(`using Consul server ${agent.url}`), 'the log must show the http:// server in use');
  figures.certificateFailuresSeen++;
});

test('Consul requiring client certificates: served with consul_cert_file and consul_key_file, refused without', T, async () => {
  const s = await newPool(strict, [strict.httpsUrl!], '10.73.0.0/24');
  const before = await kvState(strict.url);
  const refused = await run({ command: 'ADD', containerId: 'c1', config: s.config({ ipam: { consul_ca_file: tls.caFile } }) });
  const error = assertCleanError(refused, 'ADD without a client certificate');
  assert.equal(error.code, 11, describeRun(refused));
  assert.ok(error.details?.includes(strict.httpsUrl!), describeRun(refused));
  assert.match(error.details ?? '', /bad certificate|certificate required|handshake/i, `the details must give the TLS reason\n${describeRun(refused)}`);
  assertNoKvWrite(before, await kvState(strict.url), 'ADD without a client certificate');

  const ipam = { consul_ca_file: tls.caFile, consul_cert_file: tls.clientCertFile, consul_key_file: tls.clientKeyFile };
  const added = assertSuccess(await run({ command: 'ADD', containerId: 'c1', config: s.config({ ipam }) }));
  assert.equal(added.ips[0].address, '10.73.0.1/24');
  assert.equal((await strict.kv.getJson<{ target: string }>(`ipam/${s.pool}/10.73.0.1`))?.target, 'c1');
  assertSuccess(await run({ command: 'DEL', containerId: 'c1', config: s.config({ ipam, ips: added.ips }) }));
  assert.equal(await strict.kv.get(`ipam/${s.pool}/10.73.0.1`), undefined);
});

test('an unreadable consul_ca_file, consul_cert_file or consul_key_file fails with 5 naming the file', T, async () => {
  const s = await newPool(agent, [agent.httpsUrl!], '10.74.0.0/24');
  const missing = path.join(tempDir(), 'missing.pem');
  const before = await kvState(agent.url);
  for (const field of ['consul_ca_file', 'consul_cert_file', 'consul_key_file']) {
    const ipam = { consul_ca_file: tls.caFile, consul_cert_file: tls.clientCertFile, consul_key_file: tls.clientKeyFile, [field]: missing };
    const r = await run({ command: 'ADD', containerId: 'c1', config: s.config({ ipam }) });
    const error = assertCleanError(r, field);
    assert.equal(error.code, 5, describeRun(r));
    assert.ok(`${error.msg} ${error.details ?? ''}`.includes(missing), describeRun(r));
  }
  assertNoKvWrite(before, await kvState(agent.url), 'unreadable PEM files');
});
