// Running the consul-ipam CLI (and the other built executables) as an operator does, and reading what it said.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { childPath } from './plugin';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a built executable with only PATH (childPath: no node on it under IPAM_TEST_BINARY_DIR), so no CONSUL_* leaks in. */
export function execute(file: string, args: readonly string[], env: Record<string, string> = {}, stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { PATH: childPath, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

export const show = (run: Run): string => `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;

/** An error exit: the code, one stderr line "consul-ipam: ..." matching `message`, no stack trace. */
export function assertFailure(run: Run, code: 1 | 2, message: RegExp): void {
  assert.equal(run.code, code, show(run));
  const lines = run.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one stderr line expected\n${show(run)}`);
  assert.match(lines[0]!, /^consul-ipam: /, show(run));
  assert.match(lines[0]!, message, show(run));
  assert.doesNotMatch(run.stderr + run.stdout, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
}

export function assertOk(run: Run): void {
  assert.equal(run.code, 0, show(run));
}

export const json = (run: Run): any => {
  try {
    return JSON.parse(run.stdout);
  } catch {
    assert.fail(`stdout is not JSON\n${show(run)}`);
  }
};

/**
 * A proxy that forwards every request to Consul unchanged, but first awaits `before(method, url)`: the test
 * makes its concurrent change there, after the CLI has read the key and before its write arrives.
 */
export async function startProxy(target: string, beforeForward: (method: string, url: string) => Promise<void>): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      await beforeForward(req.method ?? 'GET', req.url ?? '/');
      const headers: Record<string, string> = {};
      for (const name of ['x-consul-token', 'content-type']) if (typeof req.headers[name] === 'string') headers[name] = req.headers[name] as string;
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && chunks.length > 0;
      const upstream = await fetch(`${target}${req.url}`, { method: req.method, headers, ...(hasBody ? { body: Buffer.concat(chunks) } : {}) });
      const body = Buffer.from(await upstream.arrayBuffer());
      // Consul's own headers pass through: without them the answer is not Consul's, and the CLI moves on.
      const answerHeaders: Record<string, string> = { 'content-type': upstream.headers.get('content-type') ?? 'application/json' };
      upstream.headers.forEach((value, name) => {
        if (name.startsWith('x-consul-')) answerHeaders[name] = value;
      });
      res.writeHead(upstream.status, answerHeaders);
      res.end(body);
    })().catch((error: Error) => {
      res.writeHead(502);
      res.end(error.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

