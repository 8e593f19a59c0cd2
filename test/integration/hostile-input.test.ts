// Hostile and broken input, as property tests (issue 4): thousands of generated cases against a real Consul.
// The bulk runs `runPlugin` of src/cni/plugin.ts in-process with a fake PluginIo (the executable's code path
// minus process start-up); a few hundred run the built executable itself. Every case ends in exactly one CNI
// error JSON on stdout with a non-zero exit code, no stack trace anywhere and no KV write — except where the
// input is legitimately usable, and then the test knows exactly what must be written.
//
// The fast-check seed is fixed and printed. A failure names the property, the seed and the path; replay with
//   FC_SEED=<seed> FC_PROPERTY="<property>" FC_PATH="<path>" node --import tsx --test test/integration/hostile-input.test.ts
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { useConsul } from '../support/consul';
import { describeRun, runPlugin, tempDir, type PluginRun } from '../support/plugin';
import { assertCleanError, kvDiff, kvState, reportFigures, runInProcess, stackTrace, type KvState } from '../support/reliability';

const seed = Number(process.env.FC_SEED ?? 20_251_127);
const replayProperty = process.env.FC_PROPERTY;
const replayPath = process.env.FC_PATH;
const T = { timeout: 120_000 };

const agent = useConsul();
const figures = { seed, gcReleases: 0, casesGenerated: 0, inProcessRuns: 0, executableRuns: 0, legitimateAllocations: 0, garbageKeysWritten: 0, kvSnapshotsCompared: 0, leadingZeroSpellingsAccepted: 0, plainInPoolRequests: 0, requestedIpsGranted: 0 };
const perProperty: Record<string, number> = {};

// Pools the properties use. `good` is valid and stays empty between cases.
const goodPool = 'fuzz-good';
const goodV6Pool = 'fuzz-good6';
const garbagePool = 'fuzz-garbage';
const dirtyPool = 'fuzz-dirty';

before(async () => {
  await agent.ready();
  await agent.kv.put(`ipam/${goodPool}`, [{ subnet: '10.50.0.0/16', gateway: '10.50.0.1' }]);
  await agent.kv.put(`ipam/${goodV6Pool}`, [{ subnet: 'fd00:50::/64' }]);
  await agent.kv.put(`ipam/${dirtyPool}`, [{ subnet: '10.70.0.0/29' }]);
  await agent.kv.put(`ipam/${garbagePool}`, 'placeholder');
});

after(() => reportFigures('hostile-input', 'totals', { ...figures, perProperty }));

// ---------------------------------------------------------------------------
// Running a case

type Runner = (env: Record<string, string | undefined>, stdin: string) => Promise<PluginRun>;

const inProcess: Runner = (env, stdin) => {
  figures.inProcessRuns++;
  return runInProcess({ env, stdin });
};

/** The built executable, with exactly these CNI variables (runPlugin's defaults removed). */
const executable: Runner = (env, stdin) => {
  figures.executableRuns++;
  const cleared = { CNI_COMMAND: undefined, CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined, CNI_PATH: undefined, CNI_ARGS: undefined };
  return runPlugin({ command: env.CNI_COMMAND, env: { ...cleared, ...env }, config: stdin });
};

type Command = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';
const perContainer = (c: Command) => c === 'ADD' || c === 'DEL' || c === 'CHECK';

/** The environment a runtime sets for a command (GC and STATUS get only CNI_COMMAND and CNI_PATH). */
function envFor(command: string, containerId = 'fuzz-c', ifname = 'eth0'): Record<string, string | undefined> {
  const base = { CNI_COMMAND: command, CNI_PATH: '/opt/cni/bin' };
  return perContainer(command as Command) ? { ...base, CNI_CONTAINERID: containerId, CNI_IFNAME: ifname, CNI_NETNS: '/var/run/netns/fuzz', CNI_ARGS: '' } : base;
}

/** A valid network config for this command, as the delegation chain hands it over. */
function validConfig(command: Command, dataDir: string, pool = goodPool): Record<string, any> {
  const cniVersion = perContainer(command) ? '1.0.0' : '1.1.0';
  const config: Record<string, any> = {
    cniVersion,
    name: 'fuzz-net',
    ipam: { type: 'ipam-delegated', consul_servers: [agent.url], data_dir: dataDir, host_id: 'fuzz-host' },
    prevResult: { cniVersion, ips: [], routes: [], dns: {}, pools: [{ name: pool }] },
  };
  if (!perContainer(command)) config['cni.dev/valid-attachments'] = [{ containerID: 'fuzz-x', ifname: 'eth0' }];
  return config;
}

/** Asserts a case was rejected: one clean CNI error with one of these codes, mentioning `mention`; returns it. */
function assertRejected(run: PluginRun, codes: readonly number[], mention: string | undefined, context: string) {
  const error = assertCleanError(run, context);
  assert.ok(codes.includes(error.code), `expected code ${codes.join(' or ')}, got ${error.code}\n${context}\n${describeRun(run)}`);
  if (mention !== undefined) {
    assert.ok(`${error.msg} ${error.details ?? ''}`.includes(mention), `the error must name ${JSON.stringify(mention)}\n${context}\n${describeRun(run)}`);
  }
  assert.ok(run.stdout.length < 8192, `the error must not echo the input: ${run.stdout.length} bytes\n${context}`);
  return error;
}

async function snapshot(): Promise<KvState> {
  return kvState(agent.url);
}

/** Asserts nothing in KV changed since `before`. */
async function assertUnchanged(before: KvState, context: string): Promise<void> {
  figures.kvSnapshotsCompared++;
  const after = await snapshot();
  assert.deepEqual(kvDiff(before, after), { added: [], removed: [], changed: [] }, `KV changed\n${context}`);
  assert.equal(after.index, before.index, `the KV index moved (a write or delete happened)\n${context}`);
}

/** Asserts the data_dir is still empty: rejected input must not leave files on the host either. */
function assertEmptyDir(dir: string, context: string): void {
  assert.deepEqual(readdirSync(dir), [], `files were written under data_dir\n${context}`);
}

/** Runs a property with the fixed seed; a failure names the property, seed and path for replay. */
async function property<T>(t: TestContext, name: string, numRuns: number, arbitrary: fc.Arbitrary<T>, predicate: (value: T) => Promise<void>): Promise<void> {
  const path = replayProperty === name ? replayPath : undefined;
  t.diagnostic(`property "${name}": seed ${seed}${path ? `, path ${path}` : ''}, ${numRuns} runs`);
  const out = await fc.check(
    fc.asyncProperty(arbitrary, async (value) => {
      figures.casesGenerated++;
      perProperty[name] = (perProperty[name] ?? 0) + 1;
      await predicate(value);
    }),
    { seed, numRuns, ...(path ? { path } : {}) },
  );
  if (out.failed) {
    const replay = `FC_SEED=${out.seed} FC_PROPERTY="${name}" FC_PATH="${out.counterexamplePath}" node --import tsx --test test/integration/hostile-input.test.ts`;
    const error = out.errorInstance as (Error & { cause?: unknown }) | undefined;
    const cause = error instanceof Error ? `${error.message}${error.cause ? ` (cause: ${String((error.cause as Error).message ?? error.cause)})` : ''}` : String(error);
    throw new Error(`property "${name}" failed (seed ${out.seed}, path ${out.counterexamplePath}); replay with:\n  ${replay}\n${fc.defaultReportMessage(out)}\nCause: ${cause}`);
  }
}

// ---------------------------------------------------------------------------
// Generators

const commands: Command[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'];
const anyCommand = fc.constantFrom(...commands);
const containerCommand = fc.constantFrom<Command>('ADD', 'DEL', 'CHECK');

/** Characters that mean something in a URL, a path, a Consul key or a terminal. */
const hostileChars = ['/', '?', '#', '%', '&', '=', ' ', '\t', '\n', '\r', '\u0000', '\u0001', '\u001b', '\u007f', '\\', ':', '@', '[', ']', '{', '}', '"', "'", '*', '+', '~', '!', '$', ';', ',', 'é', '💥', '\u202e', '\ufeff'];
const hostileFragments = ['..', '../', '%2F', '%2f', '%2e%2e', '%00', '?recurse', '?keys', '&cas=0', '#x', '/v1/kv/', '..%2F', '\\..\\'];
const hostileString = fc
  .array(fc.oneof(fc.constantFrom(...hostileChars), fc.constantFrom(...hostileFragments), fc.constantFrom('a', 'b', 'pool', '1', '.', '-', '_')), { minLength: 1, maxLength: 12 })
  .map((parts) => parts.join(''));
const keySegment = /^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$/;
/** A name that must never become a key segment or a path under data_dir. */
const hostileName = fc.oneof(
  hostileString.filter((s) => !keySegment.test(s)),
  fc.constantFrom('', '.', '..', '-pool', '_pool', '.hidden', 'a'.repeat(129), 'pool/..', 'pool%2F..', 'pool\n', ' pool', 'pool '),
);

const jsonScalarOrContainer = fc.jsonValue({ maxDepth: 2 });
const notString = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.array(jsonScalarOrContainer, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), jsonScalarOrContainer, { maxKeys: 3 }));
const notObject = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 20 }), fc.array(jsonScalarOrContainer, { maxLength: 3 }));
const notArray = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 20 }), fc.dictionary(fc.string({ maxLength: 5 }), jsonScalarOrContainer, { maxKeys: 3 }));
const notBoolean = fc.oneof(fc.integer(), fc.constantFrom('true', 'false', 'yes', '0', ''), fc.constant(null), fc.array(fc.boolean(), { maxLength: 2 }));
const nonInteger = fc.double({ noNaN: true, noDefaultInfinity: true }).filter((x) => !Number.isInteger(x));
const notMilliseconds = fc.oneof(fc.integer({ max: 0 }), nonInteger, fc.constantFrom('1000', '', '5s'), fc.boolean(), fc.constant(null), fc.array(fc.nat(), { maxLength: 2 }));
const notCount = fc.oneof(fc.integer({ max: -1 }), nonInteger, fc.constantFrom('8', ''), fc.boolean(), fc.constant(null));

function isHttpUrl(s: string): boolean {
  try {
    const url = new URL(s);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.search && !url.hash && !url.username && !url.password;
  } catch {
    return false;
  }
}
const notUrl = fc.oneof(
  notString,
  fc.string({ maxLength: 30 }).filter((s) => !isHttpUrl(s)),
  hostileString.filter((s) => !isHttpUrl(s)),
  fc.constantFrom('', 'ftp://127.0.0.1', '127.0.0.1:8500', 'http://user:pass@127.0.0.1:8500', 'http://127.0.0.1:8500/?dc=x', 'http://127.0.0.1:8500/#f', 'file:///etc/passwd', 'http//127.0.0.1', 'unix:///run/consul.sock', 'javascript:alert(1)'),
);
/** Strings without a digit are never addresses. */
const notAddressText = fc.oneof(fc.string({ maxLength: 20 }).filter((s) => !/\d/.test(s)), hostileString.filter((s) => !/\d/.test(s)));
const notIpWithPrefix = fc.oneof(
  notString,
  notAddressText,
  fc.constantFrom('10.50.0.5', '10.50.0.5/33', '::1/129', '10.50.0.5/24/1', ' 10.50.0.5/24', '10.50.0.5/ 24', '10.50.0.5/-1', '10.50.0.5/2.5', '10.50.0.5/', '/24', '10.50.0.5/24?x', '10.50.0.256/24'),
);

/** One field the plugin reads, how to make it wrong, and for which commands removing it is wrong too. */
interface FieldSpec {
  path: Array<string | number>;
  wrong: fc.Arbitrary<unknown>;
  requiredFor: readonly Command[];
  /** Where the error must point (the dotted path the plugin reports). */
  mention: string;
  code?: number;
}
const all = commands;
const fieldSpecs: FieldSpec[] = [
  { path: ['cniVersion'], wrong: notString, requiredFor: all, mention: 'cniVersion' },
  // GC collects one network's allocations: it needs the network's name, and the runtime's live attachments.
  { path: ['name'], wrong: notString, requiredFor: ['GC'], mention: 'name' },
  { path: ['ipam'], wrong: notObject, requiredFor: all, mention: 'ipam' },
  { path: ['ipam', 'consul_servers'], wrong: fc.oneof(notArray, fc.constant([])), requiredFor: all, mention: 'ipam.consul_servers' },
  { path: ['ipam', 'consul_servers', 0], wrong: notUrl, requiredFor: [], mention: 'ipam.consul_servers[0]' },
  ...['consul_token', 'consul_token_file', 'consul_ca_file', 'consul_cert_file', 'consul_key_file', 'data_dir'].map(
    (field): FieldSpec => ({ path: ['ipam', field], wrong: notString, requiredFor: [], mention: `ipam.${field}` }),
  ),
  { path: ['ipam', 'connect_timeout_ms'], wrong: notMilliseconds, requiredFor: [], mention: 'ipam.connect_timeout_ms' },
  { path: ['ipam', 'request_timeout_ms'], wrong: notMilliseconds, requiredFor: [], mention: 'ipam.request_timeout_ms' },
  { path: ['ipam', 'cas_retries'], wrong: notCount, requiredFor: [], mention: 'ipam.cas_retries' },
  { path: ['ipam', 'gc'], wrong: notBoolean, requiredFor: [], mention: 'ipam.gc' },
  { path: ['ipam', 'host_id'], wrong: fc.oneof(notString, hostileName), requiredFor: [], mention: 'ipam.host_id' },
  { path: ['prevResult'], wrong: notObject, requiredFor: ['ADD', 'DEL', 'CHECK'], mention: 'prevResult' },
  { path: ['prevResult', 'pools'], wrong: fc.oneof(notArray, fc.constant([])), requiredFor: ['ADD', 'DEL', 'CHECK'], mention: 'prevResult.pools' },
  { path: ['prevResult', 'pools', 0], wrong: notObject, requiredFor: [], mention: 'prevResult.pools[0]' },
  { path: ['prevResult', 'pools', 0, 'name'], wrong: fc.oneof(notString, hostileName), requiredFor: all, mention: 'prevResult.pools[0].name' },
  // null is no requested IP (ipam-ds-nomad writes it), so it is not a wrong value here.
  { path: ['prevResult', 'pools', 0, 'requested-ip'], wrong: fc.oneof(notString, notAddressText).filter((v) => v !== null), requiredFor: [], mention: 'prevResult.pools[0].requested-ip' },
  { path: ['prevResult', 'pools', 0, 'requested_ip'], wrong: fc.oneof(notString, notAddressText).filter((v) => v !== null), requiredFor: [], mention: 'prevResult.pools[0].requested_ip' },
  { path: ['prevResult', 'ips'], wrong: notArray, requiredFor: [], mention: 'prevResult.ips' },
  { path: ['prevResult', 'ips', 0], wrong: notObject, requiredFor: [], mention: 'prevResult.ips[0]' },
  { path: ['prevResult', 'ips', 0, 'address'], wrong: notIpWithPrefix, requiredFor: [], mention: 'prevResult.ips[0].address' },
  { path: ['prevResult', 'ips', 0, 'gateway'], wrong: fc.oneof(notString, notAddressText), requiredFor: [], mention: 'prevResult.ips[0].gateway' },
  { path: ['cni.dev/valid-attachments'], wrong: notArray, requiredFor: ['GC'], mention: 'cni.dev/valid-attachments' },
  { path: ['cni.dev/valid-attachments', 0], wrong: notObject, requiredFor: [], mention: 'cni.dev/valid-attachments[0]' },
  { path: ['cni.dev/valid-attachments', 0, 'containerID'], wrong: notString, requiredFor: [], mention: 'cni.dev/valid-attachments[0].containerID' },
  { path: ['cni.dev/valid-attachments', 0, 'ifname'], wrong: notString, requiredFor: [], mention: 'cni.dev/valid-attachments[0].ifname' },
];

/** Sets (or with `undefined`, removes) the value at a path, creating the containers on the way. */
function setPath(target: Record<string, any>, path: Array<string | number>, value: unknown): void {
  let node: any = target;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    if (node[key] === null || typeof node[key] !== 'object') node[key] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[key];
  }
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(node)) node.splice(last as number, 1);
    else delete node[last];
  } else node[last] = value;
}

/** prevResult.ips as a runtime caches them; a valid entry so that a mutation below it has a parent. */
const withIps = (config: Record<string, any>) => {
  config.prevResult.ips = [{ address: '10.50.0.5/16', gateway: '10.50.0.1' }];
  if (!config['cni.dev/valid-attachments']) config['cni.dev/valid-attachments'] = [{ containerID: 'fuzz-x', ifname: 'eth0' }];
  return config;
};

// ---------------------------------------------------------------------------
// The properties, each with its oracle. Every one takes a runner, so the same cases run in-process and as a process.

/** Stdin that is not a network config: garbage, truncated or padded JSON, JSON of the wrong shape, BOMs. */
const garbageStdinCase = fc.record({
  command: fc.constantFrom<Command | 'VERSION'>('ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'),
  stdin: fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.json({ maxDepth: 3 }),
    hostileString,
    fc.nat().map((cut) => {
      const text = JSON.stringify(validConfig('ADD', '/nonexistent'));
      return text.slice(0, cut % text.length);
    }),
    fc.string({ minLength: 1, maxLength: 20 }).map((tail) => `${JSON.stringify(validConfig('ADD', '/nonexistent'))}${tail}`).filter((s) => {
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true;
      }
    }),
    fc.constantFrom('', ' ', '\n', '\u0000', 'null', '[]', '{}', '""', '0', 'true', '\ufeff{"cniVersion":"1.0.0"}', '{"cniVersion":"1.0.0"', '{"cniVersion":1}', '{"cniVersion":null}'),
  ),
});

async function checkGarbageStdin(run: Runner, { command, stdin }: { command: Command | 'VERSION'; stdin: string }, dataDir: string): Promise<void> {
  const context = `${command} with stdin ${JSON.stringify(stdin).slice(0, 300)}`;
  const before = await snapshot();
  const r = await run(envFor(command), stdin);
  if (command === 'VERSION' && r.code === 0) {
    // VERSION with empty stdin, or with any JSON object naming a supported cniVersion, prints the versions.
    assert.ok(Array.isArray(r.json?.supportedVersions), `VERSION success must list the versions\n${context}\n${describeRun(r)}`);
    assert.doesNotMatch(r.stdout + r.stderr, stackTrace);
  } else {
    assertRejected(r, command === 'VERSION' ? [1, 6] : [1, 6, 7], undefined, context);
  }
  await assertUnchanged(before, context);
  assertEmptyDir(dataDir, context);
}

/** A valid config with one field of the wrong type, or a required one missing. */
const wrongFieldCase = fc
  .record({ command: anyCommand, spec: fc.constantFrom(...fieldSpecs), remove: fc.boolean() })
  .chain(({ command, spec, remove }) =>
    (remove && spec.requiredFor.includes(command) ? fc.constant(undefined) : spec.wrong).map((value) => ({ command, spec, value })),
  );

async function checkWrongField(run: Runner, { command, spec, value }: { command: Command; spec: FieldSpec; value: unknown }, dataDir: string): Promise<void> {
  const config = withIps(validConfig(command, dataDir));
  setPath(config, spec.path, value);
  const context = `${command} with ${spec.mention} = ${value === undefined ? '(missing)' : JSON.stringify(value)}`;
  const before = await snapshot();
  const r = await run(envFor(command), JSON.stringify(config));
  // A removed cniVersion or a wrong one is named as cniVersion; every other problem by its dotted path.
  assertRejected(r, [7], spec.mention, context);
  await assertUnchanged(before, context);
  assertEmptyDir(dataDir, context);
}

/** An unsupported cniVersion string. */
const wrongVersionCase = fc.record({
  command: anyCommand,
  // The support line is =0.4.0 || ^1.0.0: any 1.x.y (1.2.0, 1.10.3) is served, so none is generated here.
  version: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('0.3.1', '0.2.0', '2.0.0', 'v1.0.0', '1.0', '1.0.0 ', '01.0.0', '1.01.0', '1.1.0-rc1')).filter((v) => v !== '0.4.0' && !/^1\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.test(v)),
});

async function checkWrongVersion(run: Runner, { command, version }: { command: Command; version: string }, dataDir: string): Promise<void> {
  const config = validConfig(command, dataDir);
  config.cniVersion = version;
  const context = `${command} with cniVersion ${JSON.stringify(version)}`;
  const before = await snapshot();
  const r = await run(envFor(command), JSON.stringify(config));
  assertRejected(r, [1], undefined, context);
  await assertUnchanged(before, context);
  assertEmptyDir(dataDir, context);
}

/** Missing or malformed CNI_* variables (never NUL: a process environment cannot hold one). */
const noNul = (s: string) => !s.includes('\u0000');
const badContainerId = fc.oneof(
  fc.constant(undefined),
  fc.constant(''),
  hostileString.filter((s) => !/^[a-z0-9][a-z0-9_.\-]*$/i.test(s)),
  fc.constantFrom('-c', '.c', '_c', 'c/..', '../c', 'c d', 'c\n', 'é', 'c:1'),
);
const badIfname = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('', '.', '..', 'eth/0', 'eth:0', 'eth 0', 'eth0\n', '\teth0', 'a'.repeat(16), 'interface-name-too-long'),
  hostileString.filter((s) => s === '' || s === '.' || s === '..' || /[/:\s]/.test(s) || s.length > 15),
);
const badCommand = fc.oneof(fc.constantFrom('add', 'Add', 'ADD ', ' ADD', 'DELETE', 'RM', 'VERSION\n', 'GC;', 'STATUS?'), fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !commands.includes(s as Command) && s !== 'VERSION'));
const badArgs = fc.oneof(fc.constantFrom('a', '=b', 'K=V;junk', ';=', 'IgnoreUnknown'), fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s.split(';').some((p) => p !== '' && p.indexOf('=') <= 0)));
const badEnvCase = fc.oneof(
  fc.record({ variable: fc.constant('CNI_COMMAND'), command: fc.constant<Command>('ADD'), value: badCommand }),
  fc.record({ variable: fc.constant('CNI_CONTAINERID'), command: containerCommand, value: badContainerId }),
  fc.record({ variable: fc.constant('CNI_IFNAME'), command: containerCommand, value: badIfname }),
  fc.record({ variable: fc.constant('CNI_ARGS'), command: anyCommand, value: badArgs }),
);

async function checkBadEnv(run: Runner, { variable, command, value }: { variable: string; command: Command; value: string | undefined }, dataDir: string): Promise<void> {
  fc.pre(value === undefined || noNul(value));
  const env = { ...envFor(command), [variable]: value };
  const context = `${command} with ${variable}=${JSON.stringify(value)}`;
  const before = await snapshot();
  const r = await run(env, JSON.stringify(validConfig(command, dataDir)));
  assertRejected(r, [4], variable, context);
  await assertUnchanged(before, context);
  assertEmptyDir(dataDir, context);
}

/** Pool names with path, query, percent and control characters, for every command. */
const hostilePoolCase = fc.record({ command: anyCommand, name: hostileName });

async function checkHostilePool(run: Runner, { command, name }: { command: Command; name: string }, dataDir: string): Promise<void> {
  const context = `${command} with pool name ${JSON.stringify(name)}`;
  const before = await snapshot();
  const r = await run(envFor(command), JSON.stringify(validConfig(command, dataDir, name)));
  assertRejected(r, [7], 'prevResult.pools[0].name', context);
  await assertUnchanged(before, context);
  assertEmptyDir(dataDir, context);
}

// Requested IPs: odd spellings of addresses inside the pools, with and without hostile suffixes, and plain junk.

/**
 * The address a string means, by a strict reference reading (decimal IPv4 octets, leading zeros read as decimal
 * as ip6addr does; hex IPv6 groups); undefined when it is not one.
 */
function referenceAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = (s: string): bigint | undefined => {
    const parts = s.split('.');
    if (parts.length !== 4 || !parts.every((p) => /^\d{1,6}$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
  };
  const four = v4(text);
  if (four !== undefined) return { family: 4, value: four };
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(':')) return undefined;
  let tail: bigint[] = [];
  let head = text;
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const value = v4(dotted[2]!);
    if (value === undefined) return undefined;
    tail = [value >> 16n, value & 0xffffn];
    head = dotted[1]!.endsWith('::') ? dotted[1]! : dotted[1]!.slice(0, -1);
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  if (![...left, ...right].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const count = left.length + right.length + tail.length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const all = [...left.map((g) => BigInt(`0x${g}`)), ...Array<bigint>(8 - count).fill(0n), ...right.map((g) => BigInt(`0x${g}`)), ...tail];
  const value = all.reduce((acc, g) => (acc << 16n) | g, 0n);
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address.
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

const octet = fc.nat(255);
const spellOctet = (n: number) => fc.constantFrom(String(n), `0${n}`, n < 100 ? `00${n}` : String(n));
const inPoolV4 = fc
  .tuple(octet, octet)
  .chain(([a, b]) => fc.tuple(spellOctet(10), spellOctet(50), spellOctet(a), spellOctet(b)).map((parts) => parts.join('.')));
const hexGroup = fc.nat(0xffff).map((n) => n.toString(16));
const inPoolV6 = fc
  .tuple(hexGroup, hexGroup, hexGroup, hexGroup, fc.constantFrom('full', 'compressed', 'padded', 'upper'))
  .map(([a, b, c, d, style]) => {
    const full = ['fd00', '50', '0', '0', a, b, c, d];
    if (style === 'full') return full.join(':');
    if (style === 'padded') return full.map((g) => g.padStart(4, '0')).join(':');
    if (style === 'upper') return full.join(':').toUpperCase();
    return `fd00:50::${[a, b, c, d].join(':')}`;
  });
const hostileSuffix = fc.constantFrom('', '', '', '/16', '/../x', '?recurse', '?cas=0', '#', '%2F', '%00', '%eth0', '\n', ' ', '\t', '/', '\u0000', '..', ';');
const hostilePrefix = fc.constantFrom('', '', '', ' ', '/', '../', '[', '0x', '+', '\u202e');
/** Plain requests, as an operator writes them: canonical text of an address of the pool. */
const plainInPool = fc.oneof(
  fc.tuple(octet, octet).map(([a, b]) => `10.50.${a}.${b}`),
  fc.tuple(hexGroup, hexGroup).map(([a, b]) => new URL(`http://[fd00:50::${a}:${b}]`).hostname.slice(1, -1)),
);
const requestedIpCase = fc.record({
  ip: fc.oneof(
    { arbitrary: plainInPool, weight: 1 },
    { arbitrary: fc.oneof(inPoolV4, inPoolV6), weight: 2 },
    fc.tuple(hostilePrefix, fc.oneof(inPoolV4, inPoolV6, fc.ipV4(), fc.ipV4Extended(), fc.ipV6()), hostileSuffix).map(([p, ip, s]) => `${p}${ip}${s}`),
    hostileString,
    fc.constantFrom('10.50.0.0', '10.50.255.255', '10.50.0.1', 'fd00:50::', '0.0.0.0', '::', '::ffff:10.50.3.4', '10.50.3', '10.50.3.4.5', '10.50.3.256', '１０.50.3.4'),
  ),
  spelling: fc.constantFrom('requested-ip', 'requested_ip'),
});

/** The canonical text of a reference address: dotted decimal, or RFC 5952 (as WHATWG URLs print IPv6 hosts). */
function canonicalText({ family, value }: { family: 4 | 6; value: bigint }): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => ((value >> shift) & 0xffffn).toString(16));
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
}

/**
 * Whether a requested IP is a plain, valid request that ADD must grant: the canonical text of an address of the
 * pool's subnet that is not its network, broadcast or gateway address. Odd spellings may be refused; these never.
 */
function mustBeGranted(ip: string, reference: { family: 4 | 6; value: bigint } | undefined): boolean {
  if (reference === undefined || canonicalText(reference) !== ip) return false;
  if (reference.family === 4) {
    const base = (10n << 24n) | (50n << 16n);
    return reference.value >> 16n === base >> 16n && ![base, base | 1n, base | 0xffffn].includes(reference.value);
  }
  const base = 0xfd000050n << 96n;
  return reference.value >> 64n === base >> 64n && reference.value !== base;
}

async function checkRequestedIp(run: Runner, { ip, spelling }: { ip: string; spelling: string }, dataDir: string): Promise<void> {
  const reference = referenceAddress(ip);
  const pool = reference?.family === 6 || ip.includes(':') ? goodV6Pool : goodPool;
  const config = validConfig('ADD', dataDir, pool);
  config.prevResult.pools[0][spelling] = ip;
  const context = `ADD in ${pool} with ${spelling} ${JSON.stringify(ip)}`;
  const granted = mustBeGranted(ip, reference);
  if (granted) figures.plainInPoolRequests++;
  const before = await snapshot();
  try {
    const r = await run(envFor('ADD'), JSON.stringify(config));
    if (r.code !== 0) {
      assert.ok(!granted, `a plain request for a free address of the pool was refused\n${context}\n${describeRun(r)}`);
      assertRejected(r, [7, 103], undefined, context);
      await assertUnchanged(before, context);
      return;
    }
    // Accepted: it must be an address by the strict reading, and the key written must be its canonical text.
    figures.legitimateAllocations++;
    figures.requestedIpsGranted++;
    if (/(^|[.:])0\d/.test(ip)) figures.leadingZeroSpellingsAccepted++;
    const result = r.json as { ips: Array<{ address: string }> };
    assert.equal(result.ips.length, 1, `${context}\n${describeRun(r)}`);
    const given = result.ips[0]!.address.split('/')[0]!;
    assert.ok(reference !== undefined, `the plugin accepted ${JSON.stringify(ip)}, which is not an address\n${context}\n${describeRun(r)}`);
    const givenReference = referenceAddress(given);
    assert.deepEqual(givenReference, reference, `the address given is not the one requested\n${context}\n${describeRun(r)}`);
    const canonical = reference.family === 4 ? /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(given) : given === new URL(`http://[${given}]`).hostname.slice(1, -1);
    assert.ok(canonical, `the address given is not canonical text: ${given}\n${context}`);
    const after = await snapshot();
    const key = `ipam/${pool}/${given}`;
    assert.deepEqual(kvDiff(before, after), { added: [key], removed: [], changed: [] }, `exactly one key, named after the address, must be written\n${context}`);
    assert.deepEqual(JSON.parse(after.entries.get(key)!.value), { target: 'fuzz-c', ifname: 'eth0', host: 'fuzz-host', network: 'fuzz-net' }, context);
  } finally {
    // Whatever happened, the next case starts from the same KV: remove what this one added.
    for (const key of kvDiff(before, await snapshot()).added) await agent.kv.delete(key);
  }
}

/** Garbage in the pool key ipam/<pool>: never valid, by construction. */
const validRanges = fc.integer({ min: 1, max: 3 }).map((n) =>
  Array.from({ length: n }, (_, i) => ({ subnet: `10.${80 + i}.0.0/24`, rangeStart: `10.${80 + i}.0.10`, rangeEnd: `10.${80 + i}.0.200`, gateway: `10.${80 + i}.0.1` })),
);
type RangeLike = Record<string, unknown>;
const rangeBreakers: Array<fc.Arbitrary<(r: RangeLike, all: RangeLike[]) => void>> = [
  fc.constant((r: RangeLike) => delete r.subnet),
  // (Host bits, like 10.80.0.1/24, are served as the original serves them: not garbage.)
  fc.oneof(notString, notAddressText, fc.constantFrom('10.80.0.0/33', '10.80.0.0', '10.80.0.0/', 'fd00::/129', '10.80.0.0/24 ', '10.80.0.0/-8')).map((v) => (r: RangeLike) => void (r.subnet = v)),
  fc.constantFrom('rangeStart', 'rangeEnd', 'gateway').chain((field) =>
    // Bounds that leave no address of the subnet (rangeStart above it, rangeEnd below it) are garbage; a bound or
    // gateway merely outside the subnet is served as the original serves it.
    fc.oneof(fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.nat(), { maxLength: 2 })), notAddressText, fc.constantFrom(...(field === 'rangeStart' ? ['10.99.0.5'] : field === 'rangeEnd' ? ['10.79.0.5'] : []), 'fd00::5', '10.80.0.5/24', ' 10.80.0.5', '10.80.0.999')).map((v) => (r: RangeLike) => {
      r[field] = v;
    }),
  ),
  fc.constant((r: RangeLike) => {
    const start = r.rangeStart;
    r.rangeStart = r.rangeEnd;
    r.rangeEnd = start;
  }),
];
const garbagePoolValue = fc.oneof(
  fc.string({ maxLength: 100 }).filter((s) => {
    try {
      return !Array.isArray(JSON.parse(s));
    } catch {
      return true;
    }
  }),
  fc.jsonValue({ maxDepth: 3 }).filter((v) => !Array.isArray(v)).map((v) => JSON.stringify(v)),
  // ([] is a full pool, as the original reads it: not garbage.)
  fc.constantFrom('', 'null', '[null]', '[[]]', '[{}]', '["10.80.0.0/24"]', '{"subnet":"10.80.0.0/24"}'),
  fc.tuple(validRanges, fc.nat(), fc.oneof(...rangeBreakers)).map(([ranges, which, breaker]) => {
    const all = ranges.map((r) => ({ ...r })) as RangeLike[];
    breaker(all[which % all.length]!, all);
    return JSON.stringify(all);
  }),
);
const garbagePoolCase = fc.record({ command: anyCommand, value: garbagePoolValue });

async function checkGarbagePool(run: Runner, { command, value }: { command: Command; value: string }, dataDir: string): Promise<void> {
  await agent.kv.put(`ipam/${garbagePool}`, value);
  figures.garbageKeysWritten++;
  const config = validConfig(command, dataDir, garbagePool);
  if (command === 'CHECK') config.prevResult.ips = [{ address: '10.80.0.20/24' }];
  const context = `${command} with ipam/${garbagePool} = ${JSON.stringify(value).slice(0, 300)}`;
  const before = await snapshot();
  const r = await run(envFor(command), JSON.stringify(config));
  if (command === 'ADD' || command === 'CHECK') {
    // The pool key is read: it must be reported as invalid, naming the key.
    assertRejected(r, [101], `ipam/${garbagePool}`, context);
  } else if (command === 'DEL' || command === 'GC') {
    // DEL and GC never read the pool key; with nothing of this container or host in the folder, nothing to do.
    assert.equal(r.code, 0, `${context}\n${describeRun(r)}`);
    assert.doesNotMatch(r.stdout + r.stderr, stackTrace, context);
  } else {
    assert.equal(r.code, 0, `${context}\n${describeRun(r)}`);
  }
  await assertUnchanged(before, context);
}

// Garbage in allocation keys: each generated key knows whether it is a canonical address (and, when it spells one
// otherwise, which), and each value whether it is a valid Allocation and whose, so every command has an exact oracle.

interface GarbageEntry {
  suffix: string;
  canonical: boolean;
  /** The address the key names in another spelling (`010.70.0.1`, `FD00::13`): it holds that address all the same. */
  otherSpellingOf?: string;
  value: string;
  allocation?: { target: string; ifname?: string; host?: string; network?: string };
  /** Whether the host's data_dir holds its note of this allocation (GC releases only what its host noted). */
  noted: boolean;
}
const keySuffix: fc.Arbitrary<{ suffix: string; canonical: boolean; otherSpellingOf?: string }> = fc.oneof(
  fc.nat(9).map((n) => ({ suffix: `10.70.0.${n}`, canonical: true })),
  fc.integer({ min: 1, max: 0xff }).map((n) => ({ suffix: `fd00::${n.toString(16)}`, canonical: true })),
  // RFC 5952 text of an IPv4-mapped address: canonical, and another address than 10.70.0.n (as in the original's keys).
  fc.nat(7).map((n) => ({ suffix: `::ffff:10.70.0.${n}`, canonical: true })),
  fc.nat(7).chain((n) =>
    fc.constantFrom(
      { suffix: `10.70.0.0${n}`, otherSpellingOf: `10.70.0.${n}` },
      { suffix: `010.70.0.${n}`, otherSpellingOf: `10.70.0.${n}` },
      { suffix: ` 10.70.0.${n}` },
      { suffix: `10.70.0.${n} ` },
      { suffix: `10.70.0.${n}/x` },
      { suffix: `10.70.0.${n}/` },
      { suffix: `10.70.0.${n}%2F` },
      { suffix: `FD00::${n + 10}`, otherSpellingOf: `fd00::${n + 10}` },
      { suffix: `::ffff:a46:${n}`, otherSpellingOf: `::ffff:10.70.0.${n}` },
    ),
  ).map((key) => ({ ...key, canonical: false })),
  // Without digits or colons nothing is an address (hex digits a-f with a colon could be: `a::b`).
  hostileString.filter((s) => !/\d/.test(s) && !s.includes(':') && !s.includes('\ufeff')).map((suffix) => ({ suffix, canonical: false })),
);
const validAllocation = fc.record(
  {
    target: fc.constantFrom('fuzz-c', 'other-c'),
    ifname: fc.constantFrom('eth0', 'eth1'),
    host: fc.constantFrom('fuzz-host', 'other-host'),
    network: fc.constantFrom('fuzz-net', 'other-net'),
    extra: fc.nat(3),
  },
  { requiredKeys: ['target'] },
);
const garbageValue: fc.Arbitrary<{ value: string; allocation?: GarbageEntry['allocation'] }> = fc.oneof(
  validAllocation.map((a) => {
    const { extra, ...allocation } = a;
    return { value: JSON.stringify(extra === undefined ? allocation : { ...allocation, extra }), allocation };
  }),
  fc.oneof(
    fc.string({ maxLength: 40 }).filter((s) => {
      try {
        const v = JSON.parse(s);
        return v === null || typeof v !== 'object';
      } catch {
        return true;
      }
    }),
    fc.constantFrom('', 'null', '[]', '{}', '{"target":5}', '{"target":""}', '{"target":null}', '{"target":["fuzz-c"]}', '{"target":"fuzz-c","ifname":5}', '{"target":"fuzz-c","host":[]}', '{"Target":"fuzz-c"}', '["fuzz-c"]', '"fuzz-c"'),
  ).map((value) => ({ value })),
);
const garbageEntries = fc.uniqueArray(fc.record({ key: keySuffix, value: garbageValue, noted: fc.boolean() }), { minLength: 1, maxLength: 8, selector: (e) => e.key.suffix }).map((list) =>
  list.map(({ key, value, noted }): GarbageEntry => ({ ...key, ...value, noted })),
);
const dirtyCase = fc.record({
  command: anyCommand.filter((c) => c !== 'STATUS'),
  entries: garbageEntries,
  checkIp: fc.nat(7).map((n) => `10.70.0.${n}`),
  gcKeeps: fc.boolean(),
});

const belongsToFuzz = (a: GarbageEntry['allocation']) => a !== undefined && a.target === 'fuzz-c' && (a.ifname === undefined || a.ifname === 'eth0');

async function checkDirtyPool(
  run: Runner,
  { command, entries, checkIp, gcKeeps }: { command: Exclude<Command, 'STATUS'>; entries: GarbageEntry[]; checkIp: string; gcKeeps: boolean },
  dataDir: string,
): Promise<void> {
  const prefix = `ipam/${dirtyPool}/`;
  await fetch(`${agent.url}/v1/kv/${prefix}?recurse`, { method: 'DELETE' });
  const ops = entries.map((e) => ({ KV: { Verb: 'set', Key: `${prefix}${e.suffix}`, Value: Buffer.from(e.value).toString('base64') } }));
  const written = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
  assert.equal(written.status, 200, await written.text());
  figures.garbageKeysWritten += entries.length;
  const byKey = new Map(entries.map((e) => [`${prefix}${e.suffix}`, e]));
  // The host's notes, as its ADD writes them, for GC (ADD and DEL would take a note as a shortcut and change their
  // oracle): only for valid allocations under canonical keys, whose names are safe paths. One note per container
  // and interface: the last one written holds.
  const notes = new Map<string, string>();
  for (const e of command === 'GC' ? entries : []) {
    const a = e.allocation;
    if (e.noted && e.canonical && a?.ifname !== undefined) {
      mkdirSync(path.join(dataDir, dirtyPool, 'containers', a.target), { recursive: true });
      writeFileSync(path.join(dataDir, dirtyPool, 'containers', a.target, a.ifname), `${e.suffix}\n`);
      notes.set(`${a.target}/${a.ifname}`, e.suffix);
    }
  }

  const config = validConfig(command, dataDir, dirtyPool);
  if (command === 'CHECK') config.prevResult.ips = [{ address: `${checkIp}/29` }];
  if (command === 'GC') config['cni.dev/valid-attachments'] = gcKeeps ? [{ containerID: 'fuzz-c', ifname: 'eth0' }] : [];
  const context = `${command} on ${prefix} holding ${JSON.stringify(entries.map((e) => [e.suffix, e.value]))}${command === 'CHECK' ? ` checking ${checkIp}` : ''}`;
  const before = await snapshot();
  const r = await run(envFor(command), JSON.stringify(config));
  const after = await snapshot();
  const diff = kvDiff(before, after);
  assert.doesNotMatch(r.stdout + r.stderr, stackTrace, context);

  if (command === 'ADD') {
    // ADD reads every key of .1-.6 (one window): a broken one is 102; else the first with no key is given, or the pool is full.
    const free = [1, 2, 3, 4, 5, 6].map((n) => `10.70.0.${n}`).find((ip) => !byKey.has(`${prefix}${ip}`));
    const broken = [1, 2, 3, 4, 5, 6].some((n) => byKey.has(`${prefix}10.70.0.${n}`) && byKey.get(`${prefix}10.70.0.${n}`)?.allocation === undefined);
    if (broken) {
      assertRejected(r, [102], undefined, context);
      assert.deepEqual(diff, { added: [], removed: [], changed: [] }, context);
    } else if (free !== undefined) {
      assert.equal(r.code, 0, `${context}\nexpected ${free}\n${describeRun(r)}`);
      assert.equal(r.json?.ips?.[0]?.address, `${free}/29`, `${context}\n${describeRun(r)}`);
      assert.deepEqual(diff, { added: [`${prefix}${free}`], removed: [], changed: [] }, context);
      figures.legitimateAllocations++;
    } else {
      assertRejected(r, [104], undefined, context);
      assert.deepEqual(diff, { added: [], removed: [], changed: [] }, context);
    }
  } else if (command === 'DEL') {
    // Releases exactly the valid allocations of fuzz-c/eth0 under keys naming an address, in any spelling (releases
    // before RFC 5952 keys wrote another); passes over the rest.
    const expected = [...byKey.entries()].filter(([, e]) => (e.canonical || e.otherSpellingOf !== undefined) && belongsToFuzz(e.allocation)).map(([k]) => k).sort();
    assert.equal(r.code, 0, `${context}\n${describeRun(r)}`);
    assert.deepEqual({ ...diff, removed: diff.removed.sort() }, { added: [], removed: expected, changed: [] }, context);
  } else if (command === 'GC') {
    // Releases exactly fuzz-host's valid allocations of fuzz-net under canonical keys, noted by the host, whose attachment is not kept.
    const kept = (a: NonNullable<GarbageEntry['allocation']>) => gcKeeps && a.target === 'fuzz-c' && a.ifname === 'eth0';
    const collectable = (e: GarbageEntry) =>
      e.canonical &&
      e.allocation?.host === 'fuzz-host' &&
      e.allocation.network === 'fuzz-net' &&
      notes.get(`${e.allocation.target}/${e.allocation.ifname}`) === e.suffix &&
      !kept(e.allocation);
    const expected = [...byKey.entries()].filter(([, e]) => collectable(e)).map(([k]) => k).sort();
    figures.gcReleases += expected.length;
    assert.equal(r.code, 0, `${context}\n${describeRun(r)}`);
    assert.equal(r.stdout, '', context);
    assert.deepEqual({ ...diff, removed: diff.removed.sort() }, { added: [], removed: expected, changed: [] }, context);
  } else {
    // CHECK: success only when the key of the address holds fuzz-c/eth0's valid allocation.
    const entry = byKey.get(`${prefix}${checkIp}`);
    if (entry && belongsToFuzz(entry.allocation)) assert.equal(r.code, 0, `${context}\n${describeRun(r)}`);
    else assertRejected(r, [entry && entry.allocation === undefined ? 102 : 108], undefined, context);
    assert.deepEqual(diff, { added: [], removed: [], changed: [] }, context);
  }
  await fetch(`${agent.url}/v1/kv/${prefix}?recurse`, { method: 'DELETE' });
}

// ---------------------------------------------------------------------------
// The tests: the bulk in-process, then a few hundred through the executable.

test(`in-process: garbage, truncated and mis-shaped stdin (seed ${seed})`, T, async (t) => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  await property(t, 'garbage stdin', 600, garbageStdinCase, (c) => checkGarbageStdin(inProcess, c, dir));
});

test(`in-process: a wrong type (or a missing value) in every field the plugin reads (seed ${seed})`, T, async (t) => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  await property(t, 'wrong field', 1200, wrongFieldCase, (c) => checkWrongField(inProcess, c, dir));
  await property(t, 'wrong version', 150, wrongVersionCase, (c) => checkWrongVersion(inProcess, c, dir));
});

test(`in-process: missing and malformed CNI_* environment variables (seed ${seed})`, T, async (t) => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  await property(t, 'bad env', 400, badEnvCase, (c) => checkBadEnv(inProcess, c, dir));
});

test(`in-process: pool names and requested IPs with path, query, percent and control characters (seed ${seed})`, T, async (t) => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  await property(t, 'hostile pool name', 400, hostilePoolCase, (c) => checkHostilePool(inProcess, c, dir));
  await property(t, 'requested ip', 600, requestedIpCase, (c) => checkRequestedIp(inProcess, c, tempDir('ipam-da-consul-fuzz-')));
  // A property that passes by refusing everything proves nothing: a floor of granted requests. Every plain one
  // (canonical text, in the pool, not reserved) was granted above; these keep the generator honest too.
  assert.ok(figures.plainInPoolRequests >= 80, `too few plain in-pool requests generated: ${figures.plainInPoolRequests}`);
  assert.ok(figures.requestedIpsGranted >= figures.plainInPoolRequests, `too few requests granted: ${figures.requestedIpsGranted} of 600`);
});

test(`in-process: garbage in the pool key (seed ${seed})`, T, async (t) => {
  await property(t, 'garbage pool key', 300, garbagePoolCase, (c) => checkGarbagePool(inProcess, c, tempDir('ipam-da-consul-fuzz-')));
});

test(`in-process: garbage in allocation keys, with an exact oracle for ADD, DEL, CHECK and GC (seed ${seed})`, T, async (t) => {
  await property(t, 'garbage allocations', 500, dirtyCase, (c) => checkDirtyPool(inProcess, c, tempDir('ipam-da-consul-fuzz-')));
});

test(`executable: a mix of the rejected cases through dist/ipam-da-consul (seed ${seed})`, T, async (t) => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  const mixed = fc.oneof(
    garbageStdinCase.map((c) => () => checkGarbageStdin(executable, c, dir)),
    wrongFieldCase.map((c) => () => checkWrongField(executable, c, dir)),
    badEnvCase.map((c) => () => checkBadEnv(executable, c, dir)),
    hostilePoolCase.map((c) => () => checkHostilePool(executable, c, dir)),
    garbagePoolCase.map((c) => () => checkGarbagePool(executable, c, tempDir('ipam-da-consul-fuzz-'))),
  );
  await property(t, 'executable mix', 150, mixed, (check) => check());
});

test('executable: oversized and deeply nested stdin ends in one clean error, without a write', T, async () => {
  const dir = tempDir('ipam-da-consul-fuzz-');
  const config = JSON.stringify(validConfig('ADD', dir));
  const cases: Array<[string, string, number[]]> = [
    ['a valid config padded past 1 MiB', config + ' '.repeat(1024 * 1024), [6]],
    ['5 MiB of garbage', 'x'.repeat(5 * 1024 * 1024), [6]],
    ['2 MiB of white space', ' '.repeat(2 * 1024 * 1024), [6]],
    ['arrays nested 100,000 deep', `${'['.repeat(100_000)}${']'.repeat(100_000)}`, [6, 7]],
    ['a config whose pool name is 500 KB', JSON.stringify(validConfig('ADD', dir, 'p'.repeat(500_000))), [7]],
    ['a config with 20,000 pools', JSON.stringify({ ...validConfig('ADD', dir), prevResult: { pools: Array.from({ length: 20_000 }, () => ({ name: '../x' })) } }), [7]],
  ];
  for (const [label, stdin, codes] of cases) {
    const before = await snapshot();
    const r = await executable(envFor('ADD'), stdin);
    assertRejected(r, codes, undefined, label);
    await assertUnchanged(before, label);
    assertEmptyDir(dir, label);
    figures.casesGenerated++;
  }
});
