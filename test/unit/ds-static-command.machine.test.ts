import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor, fromPromise, toPromise } from 'xstate';
import { CniError, ErrorCode } from '../../src/cni/errors';
import type { PoolObject } from '../../src/cni/static-config';
import { dsStaticCommandMachine, type SelectorOutput } from '../../src/machines/ds-static-command.machine';
import { selectPoolsLogic, type SelectPoolsInput } from '../../src/services/select-pools';
import { commandInput, finalStates, rejects, resolves, runMachine } from '../support/machines';

const pools: PoolObject[] = [{ name: 'v4' }, { name: 'v6', requested_ip: 'fd00::5', note: 'kept as written' }];
const parsed = { cniVersion: '1.0.0', pools, ips: [{ address: '10.0.0.5/24' }] };

describe('the ipam-ds-static machine', () => {
  const reached = new Set<string>();
  async function run(actors: Record<string, unknown>, command: 'ADD' | 'DEL' = 'ADD') {
    const machine = dsStaticCommandMachine.provide({ actors: { parseStaticConfig: resolves(parsed), selectPools: resolves(pools), ...actors } as never });
    const result = await runMachine<SelectorOutput>(machine, commandInput('{"cniVersion":"1.0.0"}', { command }));
    reached.add(result.final);
    return result;
  }

  test('parse → select → emit: the selected pools as written, prevResult.ips copied through, no addresses of its own', async () => {
    let seen: SelectPoolsInput | undefined;
    const { output, visited } = await run({ selectPools: fromPromise<PoolObject[], SelectPoolsInput>(async ({ input }) => ((seen = input), [pools[1]!])) });
    assert.deepEqual(visited, ['parsing', 'selecting', 'succeeded']);
    assert.equal(seen?.command, 'ADD');
    assert.deepEqual(seen?.pools, pools);
    assert.deepEqual(output, { type: 'ok', result: { cniVersion: '1.0.0', ips: parsed.ips, routes: [], dns: {}, pools: [pools[1]] } });
  });

  test('bad stdin ends in invalidInput without selecting', async () => {
    let selected = false;
    const { output, visited } = await run({
      parseStaticConfig: rejects(new CniError(ErrorCode.InvalidConfig, 'invalid network config: ipam.pools')),
      selectPools: fromPromise(async () => ((selected = true), pools)),
    });
    assert.deepEqual(visited, ['parsing', 'invalidInput']);
    assert.equal(selected, false);
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.InvalidConfig);
  });

  test('an IPAM_POOL naming an unlisted pool ends in selectionRefused, in the config version', async () => {
    const { output, visited } = await run({ selectPools: rejects(new CniError(ErrorCode.InvalidConfig, 'CNI_ARGS IPAM_POOL names pool x')) });
    assert.deepEqual(visited.slice(-1), ['selectionRefused']);
    assert.equal(output.type === 'error' && output.error.code, ErrorCode.InvalidConfig);
    assert.equal(output.type === 'error' && output.cniVersion, '1.0.0');
  });

  test('every final state is reached', () => {
    assert.deepEqual([...reached].sort(), finalStates(dsStaticCommandMachine).sort());
  });
});

describe('selectPools', () => {
  const select = (command: SelectPoolsInput['command'], ipamPool?: string) =>
    toPromise(createActor(selectPoolsLogic, { input: { command, pools, args: new Map(ipamPool === undefined ? [] : [['IPAM_POOL', ipamPool]]) } }).start());

  test('on ADD, IPAM_POOL narrows and orders, passing the Pool objects on as written', async () => {
    assert.deepEqual(await select('ADD', 'v6'), [pools[1]]);
    assert.deepEqual(await select('ADD', 'v6,v4'), [pools[1], pools[0]]);
    assert.deepEqual(await select('ADD'), pools);
  });

  test('on DEL, CHECK and GC every listed pool, whatever IPAM_POOL says', async () => {
    for (const command of ['DEL', 'CHECK', 'GC'] as const) assert.deepEqual(await select(command, 'v6'), pools);
  });

  test('an unlisted or malformed IPAM_POOL is refused with the allocator\'s own errors', async () => {
    await assert.rejects(select('ADD', 'v9'), (error: CniError) => error.code === ErrorCode.InvalidConfig && /IPAM_POOL names pool v9, which the network config does not list/.test(error.message));
    await assert.rejects(select('ADD', '../x'), (error: CniError) => error.code === ErrorCode.InvalidEnvironment);
  });
});
