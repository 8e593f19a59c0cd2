// Lost races, forced: a proxy between the plugin and a real Consul lets another "host" write each address the
// plugin is about to claim, just before the plugin's cas=0 write reaches Consul.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { useConsul } from '../support/consul';
import { assertCniError, assertSuccess, describeRun, runPlugin, scenario } from '../support/plugin';

const agent = useConsul();

/** A forwarding proxy that steals the first `steals` addresses the plugin tries to claim. */
async function stealingProxy(steals: number): Promise<{ url: string; stolen: string[]; close(): Promise<void> }> {
  const stolen: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const url = new URL(req.url ?? '/', agent.url);
      if (req.method === 'PUT' && url.pathname.startsWith('/v1/kv/ipam/') && url.searchParams.get('cas') === '0' && stolen.length < steals) {
        const key = decodeURIComponent(url.pathname.slice('/v1/kv/'.length));
        await agent.kv.put(key, { target: `thief-${stolen.length}`, ifname: 'eth0', host: 'another-host' });
        stolen.push(key);
      }
      const answer = await fetch(url, { method: req.method, body: req.method === 'GET' ? undefined : Buffer.concat(chunks) });
      const headers: Record<string, string> = {};
      answer.headers.forEach((value, name) => (headers[name] = value));
      delete headers['content-length'];
      delete headers['transfer-encoding'];
      res.writeHead(answer.status, headers);
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, stolen, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('every candidate stolen until ipam.cas_retries runs out: error 105, nothing written for the container', async () => {
  const proxy = await stealingProxy(100);
  try {
    const s = scenario([proxy.url], 'race');
    await agent.kv.put(`ipam/${s.pool}`, [{ subnet: '10.70.0.0/24' }]);
    const run = await runPlugin({ command: 'ADD', containerId: 'loser', config: s.config({ ipam: { cas_retries: 2 } }) });
    const error = assertCniError(run, 105);
    assert.match(error.msg, /other hosts took every address/, describeRun(run));
    assert.equal(proxy.stolen.length, 3, 'one first try and two retries');
    const targets = await Promise.all((await agent.kv.keys(`ipam/${s.pool}/`)).map(async (key) => (await agent.kv.getJson<{ target: string }>(key))?.target));
    assert.deepEqual(targets.filter((t) => t === 'loser'), []);
  } finally {
    await proxy.close();
  }
});

test('two candidates stolen, the third claimed: ADD succeeds with an address no thief holds', async () => {
  const proxy = await stealingProxy(2);
  try {
    const s = scenario([proxy.url], 'race');
    await agent.kv.put(`ipam/${s.pool}`, [{ subnet: '10.71.0.0/24' }]);
    const run = await runPlugin({ command: 'ADD', containerId: 'winner', config: s.config({ ipam: { cas_retries: 2 } }) });
    const result = assertSuccess(run);
    const ip = result.ips[0].address.split('/')[0];
    assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${ip}`))?.target, 'winner');
    assert.equal(proxy.stolen.length, 2);
    assert.ok(!proxy.stolen.includes(`ipam/${s.pool}/${ip}`));
  } finally {
    await proxy.close();
  }
});
