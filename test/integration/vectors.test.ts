// The test vectors of test/vectors/: what the original Rust chain (passcod/cni-plugins) sends, writes and
// answers, run through our executables against a real Consul. Each vector's KV is written exactly as the
// original's allocator writes it; each step's stdin is exactly what its ipam-delegated and ipam-ds-nomad send
// (two substitutions only: the Consul URL, and an ipam.data_dir of the vector's own, a key the original
// ignores). A step answers as the original did, or as its `ours` says, with the reason in `differs` — each
// reason a row of the README's "Differences from the original".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { useConsul } from '../support/consul';
import { runCni, tempDir } from '../support/plugin';

const root = path.resolve(__dirname, '../..');
const folder = path.join(root, 'test/vectors');

interface Answer {
  exit: number | string;
  stdout?: unknown;
  code?: number;
  note?: string;
  differs?: string;
}
interface Step {
  command: string;
  containerId: string;
  ifname?: string;
  stdin: Record<string, unknown>;
  original: Answer;
  ours?: Answer;
  kvAfter?: Record<string, string>;
}
interface Vector {
  description: string;
  source: string;
  executable: 'ipam-da-consul' | 'ipam-ds-static';
  pool: string;
  kv: Record<string, unknown>;
  steps: Step[];
}

const vectors = readdirSync(folder)
  .filter((file) => file.endsWith('.json'))
  .sort()
  .map((file) => ({ file, vector: JSON.parse(readFileSync(path.join(folder, file), 'utf8')) as Vector }));

/** The reasons listed in the README's table "Differences from the original". */
function readmeDifferences(): string[] {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.split(/^### Differences from the original$/m)[1]?.split(/^#/m)[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| difference') && !line.startsWith('|---'))
    .map((line) => line.split('|')[1]!.trim());
}

const agent = useConsul();

test('there are vectors for ADD, DEL, CHECK, GC and STATUS, IPv4 and IPv6, and every difference they show is in the README', () => {
  assert.ok(vectors.length >= 15, `${vectors.length} vectors`);
  const commands = new Set(vectors.flatMap(({ vector }) => vector.steps.map((s) => s.command)));
  for (const command of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) assert.ok(commands.has(command), command);
  assert.ok(vectors.some(({ vector }) => Object.keys(vector.kv).some((key) => key.split('/')[2]?.includes(':'))), 'an IPv6 key');
  const listed = readmeDifferences();
  const shown = new Set(vectors.flatMap(({ vector }) => vector.steps.flatMap((s) => (s.ours?.differs ? [s.ours.differs] : []))));
  for (const reason of shown) assert.ok(listed.includes(reason), `README's "Differences from the original" lists "${reason}" (it lists: ${listed.join('; ')})`);
  for (const { file, vector } of vectors) {
    // The original's allocator writes {"target"} only.
    for (const [key, value] of Object.entries(vector.kv)) {
      if (key.split('/').length === 3) assert.deepEqual(Object.keys(value as object), ['target'], `${file}: ${key}`);
    }
  }
});

describe('test vectors of the original chain, through our executables', () => {
  for (const { file, vector } of vectors) {
    test(`${file}: ${vector.description}`, async () => {
      for (const [key, value] of Object.entries(vector.kv)) await agent.kv.put(key, typeof value === 'string' ? value : JSON.stringify(value));
      const dataDir = tempDir('vectors-');
      for (const [index, step] of vector.steps.entries()) {
        const label = `${file} step ${index + 1} (${step.command})`;
        const stdin = JSON.parse(JSON.stringify(step.stdin).replaceAll('${CONSUL}', agent.url)) as { ipam: Record<string, unknown> };
        stdin.ipam.data_dir = dataDir;
        const env: Record<string, string> = { CNI_PATH: path.join(root, 'dist') };
        if (step.containerId) env.CNI_CONTAINERID = step.containerId;
        if (step.command !== 'GC' && step.command !== 'STATUS') Object.assign(env, { CNI_IFNAME: step.ifname ?? 'eth0', CNI_NETNS: '/var/run/netns/vector' });
        const run = await runCni(path.join(root, 'dist', vector.executable), { command: step.command, config: stdin, env });
        const expected = step.ours ?? step.original;
        assert.ok(typeof expected.exit === 'number', `${label}: an exact exit code is expected`);
        assert.equal(run.code, expected.exit, `${label}: ${run.stdout}${run.stderr}`);
        if (expected.code !== undefined) assert.equal(run.json?.code, expected.code, `${label}: ${run.stdout}`);
        else if (expected.stdout === null) assert.equal(run.stdout, '', label);
        else assert.deepEqual(run.json, expected.stdout, `${label}: ${run.stdout}${run.stderr}`);
        if (step.kvAfter) {
          const keys = (await agent.kv.keys(`ipam/${vector.pool}/`)).filter((key) => key !== `ipam/${vector.pool}/`);
          const held: Record<string, string> = {};
          for (const key of keys) held[key] = (await agent.kv.getJson<{ target: string }>(key))!.target;
          assert.deepEqual(held, step.kvAfter, `${label}: KV after`);
        }
      }
    });
  }
});
