/**
 * The committed diagrams in docs/state-diagrams/ must be what the machines draw now, and every
 * final state and invoked actor of every machine must be on its diagram. When this fails after a
 * machine changed: `npm run diagrams`, then commit docs/state-diagrams/.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { and, not, setup, type AnyStateMachine, type AnyStateNode } from 'xstate';
import {
  compareWithDisk,
  describeMachine,
  diagramsDir,
  drawAll,
  loadMachines,
  machinesDir,
  repoRoot,
  toDot,
  toMermaid,
  type LoadedMachine,
} from '../../scripts/diagrams';

/** Every state node under `node`, depth first, with its key. */
function walk(node: AnyStateNode): AnyStateNode[] {
  return Object.values(node.states as Record<string, AnyStateNode>).flatMap((child) => [child, ...walk(child)]);
}

/** The Mermaid id that the diagram gives the state named `name`, read back from its `state "name" as id` line. */
function mermaidIdOf(mermaid: string, name: string): string | undefined {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^\\s*state "${escaped}" as (\\S+)`, 'm').exec(mermaid)?.[1];
}

function lineExists(text: string, line: string): boolean {
  return text.split('\n').some((l) => l.trim() === line);
}

describe('state diagrams', () => {
  it('the committed .mmd, .dot and .md files are what the machines draw now', async () => {
    const differences = await compareWithDisk(await drawAll());
    assert.deepEqual(
      differences.map(({ file, problem }) => `${problem}: ${file}`),
      [],
      'docs/state-diagrams/ is out of date: run `npm run diagrams` and commit docs/state-diagrams/',
    );
  });

  it('finds a machine in every machine file', async () => {
    const files = (await readdir(path.join(repoRoot, machinesDir))).filter((f) => f.endsWith('.machine.ts')).map((f) => `${machinesDir}/${f}`);
    const loaded = await loadMachines();
    assert.ok(files.length > 0);
    assert.deepEqual([...new Set(loaded.map((m) => m.file))].sort(), files.sort());
  });

  it('draws every final state and every invoked actor of every machine', async () => {
    const drawn = await drawAll();
    for (const loaded of await loadMachines()) {
      const mermaid = drawn.get(`${diagramsDir}/${loaded.name}.mmd`);
      const dot = drawn.get(`${diagramsDir}/${loaded.name}.dot`);
      const page = drawn.get(`${diagramsDir}/${loaded.name}.md`);
      assert.ok(mermaid && dot && page, `no diagram for ${loaded.name}`);
      assert.ok(page.includes(mermaid.trimEnd()), `${loaded.name}.md embeds its Mermaid diagram`);
      const exits = new Set(Object.values(loaded.machine.root.states as Record<string, AnyStateNode>).filter((n) => n.type === 'final'));
      for (const node of walk(loaded.machine.root)) {
        const where = `${loaded.name}: ${node.path.join('.')}`;
        for (const invoke of node.invoke) {
          const src = typeof invoke.src === 'string' ? invoke.src : invoke.id;
          assert.ok(mermaid.includes(`invoke: ${src}`), `${where} invokes ${src}, missing from the .mmd`);
          assert.ok(dot.includes(`invoke: ${src}`), `${where} invokes ${src}, missing from the .dot`);
        }
        if (node.type !== 'final') continue;
        const id = mermaidIdOf(mermaid, node.key);
        assert.ok(id, `${where} is a final state, missing from the .mmd`);
        assert.ok(lineExists(mermaid, `${id} --> [*]`), `${where} is a final state, not drawn to [*]`);
        assert.ok(dot.includes(`<b>${node.key}</b>`), `${where} is a final state, missing from the .dot`);
        if (exits.has(node)) {
          const classed: string[] = mermaid.split('\n').filter((l) => /^\s*class .*(successExit|errorExit)$/.test(l) && l.split(/[\s,]+/).includes(id));
          assert.equal(classed.length, 1, `${where} is an exit of the machine: drawn as exactly one of success or error`);
        }
      }
    }
  });

  it('draws nested states, delays, eventless transitions, events and combined guards', () => {
    const machine = setup({
      guards: { ready: () => true, allowed: () => true },
      delays: { patience: 1000 },
      actors: {},
    }).createMachine({
      id: 'sample',
      description: 'A made-up machine using what the command machines do not (yet).',
      initial: 'waiting',
      states: {
        waiting: {
          after: { 500: 'working', patience: { target: 'failed' } },
          on: { POKE: { guard: not('ready'), actions: [] }, GO: { target: 'working', guard: and(['ready', 'allowed']) } },
        },
        working: {
          initial: 'first',
          states: {
            first: { always: { target: 'second', guard: 'ready' } },
            second: { on: { FINISH: 'finished' } },
            finished: { type: 'final' },
          },
          onDone: 'done',
        },
        done: { type: 'final' },
        failed: { type: 'final', description: 'Gave up.' },
      },
    });
    const diagram = describeMachine({ name: 'sample', file: 'sample.machine.ts', exportName: 'sampleMachine', machine: machine as AnyStateMachine } satisfies LoadedMachine);
    const mermaid = toMermaid(diagram);
    const dot = toDot(diagram);
    for (const line of [
      'waiting --> working : GO [ready && allowed]<br/>after 500ms',
      'waiting --> failed : after patience',
      'waiting : ↻ POKE [!ready] (stays)',
      'state "working" as working {',
      '[*] --> working__first',
      'working__first --> working__second : always [ready]',
      'working__second --> working__finished : FINISH',
      'working__finished --> [*]',
      'working --> done : done',
      'class done successExit',
      'class failed errorExit',
    ]) {
      assert.ok(lineExists(mermaid, line), `expected the line «${line}» in\n${mermaid}`);
    }
    assert.match(dot, /subgraph "cluster_working"/);
    assert.match(dot, /"working__start" -> "done" \[label="done", ltail="cluster_working"/);
    assert.match(dot, /"waiting" -> "waiting" \[label="POKE \[!ready\] \(stays\)"/);
  });
});
