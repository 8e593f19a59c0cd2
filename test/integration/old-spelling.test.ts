// Keys in the second spelling that releases of this plugin before RFC 5952 keys wrote (ip6addr's zeroElide:
// fd00:1:2:3:4:5::1 for fd00:1:2:3:4:5:0:1). An operator who upgrades has live allocations under them: ADD must
// never hand such an address to a second container, and DEL, CHECK and GC must find the container's own.
// Everything against a real Consul through the built executables, KV read back afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsul, type ConsulAgent } from '../support/consul';
import { addressOf, allocationKeys, assertCniError, assertSuccess, describeRun, putPool, runPlugin, scenario, type Scenario } from '../support/plugin';

let agent: ConsulAgent;
const T = { timeout: 60_000 };

before(async () => {
  agent = await startConsul();
});

after(async () => {
  await agent?.stop();
});

/** fd00:1:2:3:4:5:0:<n> as the old releases keyed it: the single zero group shortened to `::`. */
const oldSpelling = (n: number): string => `fd00:1:2:3:4:5::${n.toString(16)}`;
const canonical = (n: number): string => `fd00:1:2:3:4:5:0:${n.toString(16)}`;

/** Live allocations, as an old release wrote them, of fd00:1:2:3:4:5:0:<n> for each n. */
async function oldAllocations(s: Scenario, numbers: readonly number[]): Promise<void> {
  for (const n of numbers) await agent.kv.put(`ipam/${s.pool}/${oldSpelling(n)}`, { target: `old-${n}`, ifname: 'eth0', host: 'old-host' });
}

const add = (s: Scenario, containerId: string) => runPlugin({ command: 'ADD', containerId, config: s.config() });

test('ADD from a host with an empty data_dir never hands out an address held under its old spelling', T, async () => {
  const s = scenario([agent.url], 'old-spelling');
  // fd00:1:2:3:4:5:0:1 .. :7 (the network address :0 is never handed out): seven addresses, six held the old way.
  await putPool(agent.kv, s.pool, [{ subnet: 'fd00:1:2:3:4:5:0:0/125' }]);
  await oldAllocations(s, [1, 2, 3, 5, 6, 7]);
  const run = await add(s, 'new-1');
  assert.deepEqual(assertSuccess(run).ips, [{ address: `${canonical(4)}/125` }], describeRun(run));
  // The pool is full now: a second ADD must not take one of the old keys' addresses.
  const full = await add(s, 'new-2');
  assertCniError(full, 104);
  const keys = await allocationKeys(agent.kv, s.pool);
  assert.deepEqual(keys.sort(), [...[1, 2, 3, 5, 6, 7].map((n) => `ipam/${s.pool}/${oldSpelling(n)}`), `ipam/${s.pool}/${canonical(4)}`].sort());
});
