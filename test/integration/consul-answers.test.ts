// What counts as an answer from Consul (issue 8, items 6, 8 and 9), through the built executable against a
// real Consul 1.8.7:
// - another HTTP service on the first listed port (404 to everything, or a web page) is passed over, never
//   taken for a Consul that has no pool or nothing to release;
// - a server refusing this host more connections (Consul 1.9+'s 429, which a proxy in front of the real one
//   sends, and 1.8's own closed connection under limits.http_max_conns_per_client) is retried, then 11;
// - a stale read from a server that has not heard from its leader for over a second is read again from the
//   leader (a proxy rewrites X-Consul-LastContact and serves the ranges as they were), at one request more.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { startConsul, useConsul } from '../support/consul';
import { addressOf, allocationKeys, assertCniError, assertSuccess, describeRun, expectCniErrorWithoutWrites, putPool, runPlugin, scenario, tempDir } from '../support/plugin';
import { reportFigures, startConsulProxy, type ConsulProxy, type ProxyAction } from '../support/reliability';

const T = { timeout: 60_000 };
const agent = useConsul();
const figures: Record<string, number | string> = {};

after(() => reportFigures('consul-answers', 'totals', figures));

/** Another HTTP service: answers every request with `status` and `body`, as it would for a path it does not know. */
async function otherService(status: number, contentType: string, body: string): Promise<{ url: string; requests: number; close(): Promise<void> }> {
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(status, { 'Content-Type': contentType });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    get requests() {
      return requests;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------
// Item 6: a server that is not Consul

describe('a server that is not Consul, listed first', () => {
  const services = [
    ['answers 404 to everything', 404, 'text/plain; charset=utf-8', '404 page not found\n'],
    ['answers 200 with a web page to everything', 200, 'text/html', '<!doctype html><title>Welcome to nginx!</title>'],
  ] as const;
  for (const [label, status, contentType, body] of services) {
    test(`one that ${label}: ADD allocates from the next server, CHECK and DEL (with and without prevResult.ips) work, STATUS is ready`, T, async () => {
      const other = await otherService(status, contentType, body);
      try {
        const s = scenario([other.url, agent.url], 'not-consul');
        await putPool(agent.kv, s.pool, [{ subnet: '10.96.0.0/24' }]);
        const add = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() });
        const added = assertSuccess(add);
        assert.match(add.stderr, new RegExp(`${other.url} is not usable: .*not a Consul server`), `the other service is named in a warning\n${describeRun(add)}`);
        const ip = addressOf(added.ips[0].address);
        assert.equal((await agent.kv.getJson<{ target: string }>(`ipam/${s.pool}/${ip}`))?.target, 'c1');

        assertSuccess(await runPlugin({ command: 'CHECK', containerId: 'c1', config: s.config({ ips: added.ips }) }));
        assertSuccess(await runPlugin({ command: 'DEL', containerId: 'c1', config: s.config({ ips: added.ips }) }));
        assert.deepEqual(await allocationKeys(agent.kv, s.pool), [], 'DEL released the address');

        // Without prevResult.ips, DEL picks its server with /v1/status/leader: the other service is passed over there too.
        assertSuccess(await runPlugin({ command: 'ADD', containerId: 'c2', config: s.config() }));
        assertSuccess(await runPlugin({ command: 'DEL', containerId: 'c2', config: s.config() }));
        assert.deepEqual(await allocationKeys(agent.kv, s.pool), [], 'DEL without prevResult.ips released the address');

        const status = await runPlugin({ command: 'STATUS', config: { ...s.config({ cniVersion: '1.1.0' }), prevResult: undefined } });
        assert.equal(status.code, 0, describeRun(status));
        assert.ok(other.requests >= 5, `each command asked the other service first (${other.requests} requests)`);
      } finally {
        await other.close();
      }
    });

    test(`one that ${label}, listed alone: every command fails with 11 naming it, nothing written, nothing released`, T, async () => {
      const other = await otherService(status, contentType, body);
      try {
        const s = scenario([other.url], 'not-consul-alone');
        await putPool(agent.kv, s.pool, [{ subnet: '10.96.1.0/24' }]);
        await agent.kv.put(`ipam/${s.pool}/10.96.1.7`, { target: 'c1', ifname: 'eth0' });
        const ips = [{ address: '10.96.1.7/24' }];
        for (const [command, more] of [['ADD', {}], ['CHECK', { ips }], ['DEL', { ips }], ['DEL', {}]] as Array<[string, object]>) {
          const error = await expectCniErrorWithoutWrites(agent, 11, '1.0.0', () => runPlugin({ command, containerId: 'c1', config: s.config(more) }));
          assert.match(`${error.msg} ${error.details}`, new RegExp(`${other.url}.*not a Consul server`), `${command} names the server and why`);
        }
        const status = assertCniError(await runPlugin({ command: 'STATUS', config: { ...s.config({ cniVersion: '1.1.0' }), prevResult: undefined } }), 50);
        assert.match(`${status.msg} ${status.details}`, new RegExp(`${other.url}.*not a Consul server`));
        assert.deepEqual(await allocationKeys(agent.kv, s.pool), [`ipam/${s.pool}/10.96.1.7`], 'the allocation is still there');
      } finally {
        await other.close();
      }
    });
  }
});

// ---------------------------------------------------------------------------
// Item 8: a server refusing this host more connections

describe('a server refusing this host more connections', () => {
  /** A proxy in front of the real agent that answers 429 to the requests whose number (from 0) is in `throttled`. */
  async function throttling(): Promise<{ proxy: ConsulProxy; arm(throttled: number[] | 'all'): void }> {
    let throttled: Set<number> | 'all' = new Set();
    let seen = 0;
    const proxy = await startConsulProxy(agent.url, (): ProxyAction => (throttled === 'all' || throttled.has(seen++) ? 'throttle' : 'forward'));
    return {
      proxy,
      arm(which) {
        throttled = which === 'all' ? 'all' : new Set(which);
        seen = 0;
      },
    };
  }

  test('429 on the first read (twice) and on a later one: ADD and DEL retry and succeed', T, async () => {
    const { proxy, arm } = await throttling();
    try {
      const s = scenario([proxy.url], 'throttled');
      await putPool(agent.kv, s.pool, [{ subnet: '10.96.2.0/24' }]);
      arm([0, 1, 3]);
      const add = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() });
      const added = assertSuccess(add);
      assert.match(add.stderr, /retrying/, `the retries are logged\n${describeRun(add)}`);
      assert.equal(proxy.seen.filter((r) => r.action === 'throttle').length, 3, 'the three 429s were sent');
      arm([0, 1, 2]);
      assertSuccess(await runPlugin({ command: 'DEL', containerId: 'c1', config: s.config({ ips: added.ips }) }));
      assert.deepEqual(await allocationKeys(agent.kv, s.pool), []);
    } finally {
      await proxy.close();
    }
  });

  test('429 to every request: 11 (try again later) within the retry budget, not 106; nothing written', T, async () => {
    const { proxy, arm } = await throttling();
    try {
      const s = scenario([proxy.url], 'throttled-all');
      await putPool(agent.kv, s.pool, [{ subnet: '10.96.3.0/24' }]);
      await agent.kv.put(`ipam/${s.pool}/10.96.3.9`, { target: 'c1', ifname: 'eth0' });
      arm('all');
      for (const [command, more] of [['ADD', {}], ['DEL', { ips: [{ address: '10.96.3.9/24' }] }]] as Array<[string, object]>) {
        const started = Date.now();
        const error = await expectCniErrorWithoutWrites(agent, 11, '1.0.0', () => runPlugin({ command, containerId: 'c1', config: s.config(more) }));
        const ms = Date.now() - started;
        figures[`429 forever: ${command} ms`] = ms;
        assert.match(`${error.msg} ${error.details}`, /429/, `${command} says why`);
        assert.ok(ms > 1500 && ms < 10_000, `${command} retried within the ~3 s budget, then gave up (${ms} ms)`);
      }
    } finally {
      await proxy.close();
    }
  });

  /** Opens one connection and resolves with it when Consul keeps it open, or undefined when Consul closes it at once. */
  async function tryConnection(port: number): Promise<Socket | undefined> {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const closed = await new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 150);
    });
    return closed ? undefined : socket;
  }

  /**
   * Holds this host's limits.http_max_conns_per_client connections to the agent (idle), so that Consul 1.8
   * closes any further one without answering, until `release()`. A slot freed meanwhile (a connection kept
   * alive by the test's own fetch, closed a few seconds later) is taken again at once.
   */
  async function saturate(port: number): Promise<{ release(): void }> {
    const held: Socket[] = [];
    for (;;) {
      const socket = await tryConnection(port);
      if (socket === undefined) break;
      held.push(socket);
      if (held.length > 64) throw new Error('Consul never refused a connection: is limits.http_max_conns_per_client set?');
    }
    let released = false;
    const topUp = async (): Promise<void> => {
      while (!released) {
        const socket = await tryConnection(port);
        if (socket && released) socket.destroy();
        else if (socket) held.push(socket);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    void topUp();
    return {
      release() {
        released = true;
        for (const socket of held) socket.destroy();
      },
    };
  }

  /**
   * One request on a connection of its own, closed after it: fetch would keep its connection open for a few
   * seconds, taking one of this host's connections to the limited agent behind the test's back.
   */
  function once(method: string, url: string, body?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(url, { method, agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  test('Consul 1.8.7 over limits.http_max_conns_per_client (it closes the connection): retried, then 11; ADD succeeds once connections free up', T, async () => {
    const limited = await startConsul({ extraHcl: 'limits { http_max_conns_per_client = 6 }' });
    try {
      const s = scenario([limited.url], 'conn-limit');
      assert.equal((await once('PUT', `${limited.url}/v1/kv/ipam/${s.pool}`, JSON.stringify([{ subnet: '10.96.4.0/24' }]))).body.trim(), 'true');
      // Read once the held connections are released; Consul may take a moment to count them closed.
      const keys = async (): Promise<string[]> => {
        for (let attempt = 1; ; attempt++) {
          try {
            const answer = await once('GET', `${limited.url}/v1/kv/ipam/${s.pool}/?keys`);
            return answer.status === 404 ? [] : (JSON.parse(answer.body) as string[]);
          } catch (error) {
            if (attempt >= 20) throw error;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      };

      let held = await saturate(limited.port);
      const started = Date.now();
      const refused = await runPlugin({ command: 'ADD', containerId: 'c1', config: s.config() });
      held.release();
      const error = assertCniError(refused, 11);
      figures['connection limit held: ADD ms'] = Date.now() - started;
      assert.match(`${error.msg} ${error.details}`, /ECONNRESET/, 'the reason is named');
      assert.match(refused.stderr, /retrying/, `retried before giving up\n${describeRun(refused)}`);
      assert.deepEqual(await keys(), []);

      // The connections freed while the ADD waits to retry (other plugin processes finishing): it gets through.
      held = await saturate(limited.port);
      const add = await runPlugin({ command: 'ADD', containerId: 'c2', config: s.config(), onStderr: (text) => /retrying/.test(text) && held.release() });
      held.release();
      const added = assertSuccess(add);
      assert.match(add.stderr, /ECONNRESET[^]*retrying/, `the reset was retried\n${describeRun(add)}`);
      assert.deepEqual(await keys(), [`ipam/${s.pool}/${addressOf(added.ips[0].address)}`]);
    } finally {
      await limited.stop();
    }
  });
});

// ---------------------------------------------------------------------------
// Item 9: a pool definition from a server lagging behind its leader

test('a stale pool read from a server that last heard from its leader over 1 s ago is read again from the leader: the new ranges are used, at one request more', T, async () => {
  let poolPath = '';
  let lagMs = 0;
  let frozen: Buffer | undefined;
  // Stale reads of the pool key, as a follower that stopped applying the leader's log would answer them: the
  // body as it was when first read, and how long ago it heard from the leader. Everything else is Consul's.
  const proxy = await startConsulProxy(
    agent.url,
    () => 'forward',
    (req, answer) => {
      const url = new URL(req.path, 'http://proxy');
      if (url.pathname !== poolPath || !url.searchParams.has('stale') || answer.status !== 200) return answer;
      frozen ??= answer.body;
      return { ...answer, headers: { ...answer.headers, 'x-consul-lastcontact': String(lagMs) }, body: frozen };
    },
  );
  try {
    const s = scenario([proxy.url], 'lagging');
    poolPath = `/v1/kv/ipam/${s.pool}`;
    const add = async (container: string) => {
      const before = proxy.seen.length;
      // A host of its own each time: the full way, which reads the pool (a warm host claims without reading it).
      const ip = addressOf(assertSuccess(await runPlugin({ command: 'ADD', containerId: container, config: s.config({ dataDir: tempDir() }) })).ips[0].address);
      const poolReads = proxy.seen.slice(before).filter((r) => new URL(r.path, 'http://proxy').pathname === poolPath).length;
      return { ip, requests: proxy.seen.length - before, poolReads };
    };
    await putPool(agent.kv, s.pool, [{ subnet: '10.97.0.0/24' }]);
    const healthy = await add('c0');
    assert.match(healthy.ip, /^10\.97\.0\./);

    // The operator moves the pool; the lagging server still serves the old ranges on a stale read.
    await putPool(agent.kv, s.pool, [{ subnet: '10.98.0.0/24' }]);
    lagMs = 3000;
    const lagging = await add('c1');
    assert.match(lagging.ip, /^10\.98\.0\./, 'allocated from the ranges the leader holds');
    assert.equal(lagging.requests, healthy.requests + 1, `one request more than a healthy ADD (${healthy.requests})`);

    // Within the bound, a stale answer is trusted: this is what the proxy serves, so the test above shows the re-read.
    lagMs = 800;
    const recent = await add('c2');
    assert.match(recent.ip, /^10\.97\.0\./, 'a server under 1 s behind is trusted (the bound is 1 s)');
    // The pool is read once, not again from the leader. (Its window holds c0's address beside free ones, which
    // costs ADD one more transaction to check that allocation: not a pool read.)
    assert.equal(recent.poolReads, 1, `pool reads: ${recent.poolReads}`);
    Object.assign(figures, { 'requests per healthy ADD': healthy.requests, 'requests per ADD from a lagging server': lagging.requests });
  } finally {
    await proxy.close();
  }
});
