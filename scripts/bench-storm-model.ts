/**
 * The storm model of `npm run bench`: what a cluster-wide rollout costs Consul.
 *
 * `hosts` simulated hosts (each its own host_id and data_dir) run `adds` ADD processes on one pool, at most
 * `concurrency` at a time (a new one starts as soon as one ends: overlapping waves), against the real Consul
 * behind a counting proxy. The proxy sees exactly what Consul is asked: every request, and the answer to
 * each `cas=0` write (`false`: another writer took the address) and to each writing transaction (409: rolled back). Per successful ADD it reports Consul writes
 * (ideal 1.0), reads (requests, and keys read), lost writes, listings of the pool, and the ADD time.
 *
 * `sameStart` seeds every host's round-robin hint with the same address, so that all hosts walk the pool
 * from one place: what hosts without homes of their own would do (every host from rangeStart). Side by side
 * with the default run it shows what the homes buy.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';

export interface StormModelOptions {
  readonly consulUrl: string;
  /** The plugin executable (run with `node`). */
  readonly plugin: string;
  readonly env: NodeJS.ProcessEnv;
  readonly work: string;
  readonly pool: string;
  /** The pool's IP Ranges. */
  readonly subnet: string;
  readonly hosts: number;
  readonly adds: number;
  readonly concurrency: number;
  readonly sameStart?: boolean;
}

export interface StormModelResult {
  readonly hosts: number;
  readonly adds: number;
  readonly successes: number;
  readonly distinct: number;
  /** Per successful ADD. */
  readonly writes: number;
  readonly reads: number;
  readonly keysRead: number;
  readonly lost: number;
  readonly listings: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly wallMs: number;
  /** How many different hosts lost at least one write. */
  readonly hostsThatLost: number;
}

interface Counts {
  writes: number;
  reads: number;
  keysRead: number;
  lost: number;
  listings: number;
}

/**
 * A forwarding proxy that counts what Consul is asked: one listening port per simulated host, so that each
 * lost write is attributed to the host that sent it.
 */
async function countingProxy(target: string, hosts: number): Promise<{ urls: string[]; counts: Counts; lostBy: Map<number, number>; close(): Promise<void> }> {
  const counts: Counts = { writes: 0, reads: 0, keysRead: 0, lost: 0, listings: 0 };
  const lostBy = new Map<number, number>();
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const serve = (host: number) => (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = req.url ?? '/';
      const isKv = url.startsWith('/v1/kv/');
      const isTxn = url.startsWith('/v1/txn');
      const verbs = isTxn ? (JSON.parse(body.toString('utf8') || '[]') as Array<{ KV?: { Verb?: string } }>).map((op) => op.KV?.Verb ?? '') : [];
      // A transaction that writes is a write (a warm host's one-request claim: check-index, get, cas), its gets
      // counted as keys read; one of gets only is a read (a window of candidates).
      const isWrite = (isKv && (req.method === 'PUT' || req.method === 'DELETE')) || verbs.some((verb) => /^(set|cas|delete|delete-cas)$/.test(verb));
      if (isWrite) counts.writes++;
      else if (isKv || isTxn) {
        counts.reads++;
        if (/[?&](keys|recurse)/.test(url)) counts.listings++;
        else if (!isTxn) counts.keysRead++;
      }
      counts.keysRead += verbs.filter((verb) => verb === 'get').length;
      const headers = { ...req.headers, host: upstream.host };
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: url, headers, agent }, (answer) => {
        const answerChunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => answerChunks.push(chunk));
        answer.on('end', () => {
          const answerBody = Buffer.concat(answerChunks);
          // Lost: a cas=0 PUT answered false, or a writing transaction rolled back (the address taken, or the pool changed).
          if (isWrite && ((/[?&]cas=0/.test(url) && answerBody.toString('utf8').trim() === 'false') || (isTxn && answer.statusCode === 409))) {
            counts.lost++;
            lostBy.set(host, (lostBy.get(host) ?? 0) + 1);
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(answerBody);
        });
      });
      forward.on('error', (error) => {
        res.writeHead(502);
        res.end(`proxy: ${error.message}`);
      });
      forward.end(body);
    });
  };
  const servers = Array.from({ length: hosts }, (_, host) => createServer(serve(host)));
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
  return {
    urls: servers.map((server) => `http://127.0.0.1:${(server.address() as { port: number }).port}`),
    counts,
    lostBy,
    close: async () => {
      agent.destroy();
      await Promise.all(servers.map((server) => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections()))));
    },
  };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

export async function stormModel(options: StormModelOptions): Promise<StormModelResult> {
  const { consulUrl, plugin, env, work, pool, subnet, hosts, adds, concurrency } = options;
  const put = await fetch(`${consulUrl}/v1/kv/ipam/${pool}`, { method: 'PUT', body: JSON.stringify([{ subnet }]) });
  if (!put.ok) throw new Error(`storm model: cannot make pool ${pool}: ${put.status}`);
  const { CreateIndex } = ((await (await fetch(`${consulUrl}/v1/kv/ipam/${pool}`)).json()) as Array<{ CreateIndex: number }>)[0]!;
  const dataDirs = Array.from({ length: hosts }, (_, h) => path.join(work, `${pool}-host-${h}`));
  if (options.sameStart) {
    // Every host's hint: the last address of the /16, so each walks from rangeStart, as hosts without homes do.
    const last = subnet.replace(/0\.0\/16$/, '255.254');
    for (const dir of dataDirs) {
      mkdirSync(path.join(dir, pool), { recursive: true });
      writeFileSync(path.join(dir, pool, 'last_reserved_ip'), `${JSON.stringify({ pool: CreateIndex, ip: last })}\n`);
    }
  }
  const proxy = await countingProxy(consulUrl, hosts);
  const times: number[] = [];
  const addresses: string[] = [];
  let next = 0;
  const started = Date.now();
  const runOne = (j: number) =>
    new Promise<void>((resolve) => {
      const host = j % hosts;
      const config = {
        cniVersion: '1.0.0',
        name: 'bench',
        ipam: { type: 'ipam-delegated', consul_servers: [proxy.urls[host]], data_dir: dataDirs[host], host_id: `model-host-${host}` },
        prevResult: { ips: [], pools: [{ name: pool }] },
      };
      const t0 = process.hrtime.bigint();
      const child = spawn('node', [plugin], { env: { ...env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: `${pool}-${j}`, CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(plugin) } });
      let stdout = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.on('close', (code) => {
        if (code === 0) {
          times.push(Number(process.hrtime.bigint() - t0) / 1e6);
          addresses.push((JSON.parse(stdout) as { ips: Array<{ address: string }> }).ips[0]!.address);
        }
        resolve();
      });
      child.stdin.end(JSON.stringify(config));
    });
  const slot = async () => {
    while (next < adds) await runOne(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, adds) }, slot));
  const wallMs = Date.now() - started;
  await proxy.close();
  const n = times.length || 1;
  const c = proxy.counts;
  return {
    hosts,
    adds,
    successes: times.length,
    distinct: new Set(addresses).size,
    writes: c.writes / n,
    reads: c.reads / n,
    keysRead: c.keysRead / n,
    lost: c.lost / n,
    listings: c.listings,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    wallMs,
    hostsThatLost: proxy.lostBy.size,
  };
}

/** One Markdown row per result, for bench.ts's table. */
export function stormModelRow(r: StormModelResult, concurrency: number, label = ''): [string, string, string, boolean | undefined] {
  return [
    `storm model${label}: ${r.hosts} hosts, ${r.adds.toLocaleString('en')} ADDs, ${concurrency} at a time — per successful ADD: Consul writes / reads (keys read) / lost \`cas\` writes; listings; p50 / p99 ADD`,
    `${r.writes.toFixed(3)} / ${r.reads.toFixed(2)} (${r.keysRead.toFixed(1)}) / ${r.lost.toFixed(3)}; ${r.listings}; ${Math.round(r.p50Ms)} / ${Math.round(r.p99Ms)} ms (${r.successes} ok, ${r.distinct} distinct)`,
    'writes ≤ 1.1',
    r.writes <= 1.1 && r.successes === r.adds && r.distinct === r.adds,
  ];
}
