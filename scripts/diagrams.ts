/**
 * Draws every XState machine of src/machines/*.machine.ts into docs/state-diagrams/:
 * a Mermaid diagram (.mmd), the same graph in Graphviz DOT (.dot), an SVG rendered from the DOT
 * when `dot` is installed, a Markdown page per machine, and an index (README.md).
 *
 *   node --import tsx scripts/diagrams.ts           write the files (npm run diagrams)
 *   node --import tsx scripts/diagrams.ts --check   exit 1, listing the files that differ from what the machines draw now
 *
 * Everything is read from the machine definitions (`machine.root` and its state nodes), never from
 * a hand-kept list, so a new machine file gets its diagram on the next run. Output is deterministic
 * (definition order, no timestamps) so that the committed files can be compared in a test.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AnyStateMachine, AnyStateNode } from 'xstate';

/** The repository root. */
export const repoRoot = path.resolve(__dirname, '..');
/** Where the machines live, relative to the repository root. */
export const machinesDir = 'src/machines';
/** Where the diagrams go, relative to the repository root. */
export const diagramsDir = 'docs/state-diagrams';
/**
 * Names of final states that mean success (`ready` is STATUS's); a final state tagged `success` is one too.
 * Every other final state of a machine is an error exit.
 */
export const successNames: readonly string[] = ['succeeded', 'done', 'ready'];
/** Descriptions up to this many characters are drawn as notes; longer ones only in the page's state table. */
export const shortDescription = 60;

/** A machine exported by one of the machine files. */
export interface LoadedMachine {
  /** File base name of the outputs: the machine file's base (`add-command`), suffixed when a file exports several machines. */
  readonly name: string;
  /** The machine file, relative to the repository root, with forward slashes. */
  readonly file: string;
  readonly exportName: string;
  readonly machine: AnyStateMachine;
}

/** One state as drawn. */
export interface DiagramState {
  /** Identifier in the .mmd and .dot: the state's path joined with `__`. */
  readonly id: string;
  /** The state's key, as written in the machine. */
  readonly name: string;
  readonly kind: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** For final states of the machine itself (not of a nested region): which way the machine ends there. */
  readonly exit?: 'success' | 'error';
  /** The `src` of each actor the state invokes, in order. */
  readonly invokes: readonly string[];
  readonly description?: string;
  /** Id of the initial child of a compound state. */
  readonly initial?: string;
  readonly children: readonly DiagramState[];
}

/** One arrow. `from`/`to` are state ids; a transition with several targets is drawn as several arrows. */
export interface DiagramTransition {
  readonly from: string;
  readonly to: string;
  /** `done`, `error`, `after <delay>`, `always`, or the event's name. */
  readonly trigger: string;
  readonly guard?: string;
  /** Unguarded, but tried after guarded alternatives of the same trigger. */
  readonly otherwise: boolean;
  /** Targetless: runs its actions without leaving the state. */
  readonly internal: boolean;
}

/** A machine reduced to what its diagrams show. */
export interface MachineDiagram {
  readonly name: string;
  readonly file: string;
  readonly exportName: string;
  readonly machineId: string;
  readonly description?: string;
  readonly initial?: string;
  readonly states: readonly DiagramState[];
  readonly transitions: readonly DiagramTransition[];
}

/** A generated file that is not as the machines would draw it now. */
export interface Difference {
  /** Relative to the repository root. */
  readonly file: string;
  readonly problem: 'differs' | 'missing' | 'stale';
}

const generatedExtensions = ['.mmd', '.dot', '.md', '.svg'];
const anyStateId = '__any';

/** True for an XState v5 machine (duck-typed, so that two copies of xstate in node_modules still agree). */
export function isStateMachine(value: unknown): value is AnyStateMachine {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<AnyStateMachine>;
  return typeof candidate.root === 'object' && typeof candidate.transition === 'function' && typeof candidate.getInitialSnapshot === 'function';
}

/** The machine files, sorted, relative to the repository root. */
export async function findMachineFiles(root = repoRoot): Promise<string[]> {
  const entries = await readdir(path.join(root, machinesDir));
  return entries
    .filter((entry) => entry.endsWith('.machine.ts'))
    .sort()
    .map((entry) => `${machinesDir}/${entry}`);
}

/** Imports every machine file and returns each exported machine, in file then export order. */
export async function loadMachines(root = repoRoot): Promise<LoadedMachine[]> {
  const loaded: LoadedMachine[] = [];
  for (const file of await findMachineFiles(root)) {
    const exports = (await import(path.join(root, file))) as Record<string, unknown>;
    const machines = Object.entries(exports)
      .filter((entry): entry is [string, AnyStateMachine] => entry[0] !== 'default' && isStateMachine(entry[1]))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const base = path.basename(file, '.machine.ts');
    for (const [exportName, machine] of machines) {
      const name = machines.length === 1 ? base : `${base}-${kebab(exportName.replace(/Machine$/, ''))}`;
      loaded.push({ name, file, exportName, machine });
    }
  }
  return loaded;
}

/** Walks a machine's definition into states and arrows. */
export function describeMachine(loaded: LoadedMachine): MachineDiagram {
  const root = loaded.machine.root;
  const transitions: DiagramTransition[] = [];
  const states = childStates(root, true, transitions);
  transitions.unshift(...transitionsOf(root, anyStateId));
  return {
    name: loaded.name,
    file: loaded.file,
    exportName: loaded.exportName,
    machineId: loaded.machine.id,
    ...(root.description ? { description: root.description } : {}),
    ...(root.type === 'compound' && root.initial.target[0] ? { initial: stateId(root.initial.target[0]) } : {}),
    states,
    transitions,
  };
}

function childStates(node: AnyStateNode, topLevel: boolean, transitions: DiagramTransition[]): DiagramState[] {
  return Object.values(node.states as Record<string, AnyStateNode>).map((child) => {
    const id = stateId(child);
    transitions.push(...transitionsOf(child, id));
    const exit = topLevel && child.type === 'final' ? (isSuccess(child) ? 'success' : 'error') : undefined;
    const initial = child.type === 'compound' ? child.initial.target[0] : undefined;
    return {
      id,
      name: child.key,
      kind: child.type,
      ...(exit ? { exit } : {}),
      invokes: child.invoke.map((invoke) => srcName(invoke.src, invoke.id)),
      ...(child.description ? { description: child.description } : {}),
      ...(initial ? { initial: stateId(initial) } : {}),
      children: childStates(child, false, transitions),
    } satisfies DiagramState;
  });
}

/** Success by name (see `successNames`), or by a `success` tag on the final state. */
function isSuccess(node: AnyStateNode): boolean {
  return successNames.includes(node.key) || node.tags.includes('success');
}

function transitionsOf(node: AnyStateNode, from: string): DiagramTransition[] {
  const invokeIds = node.invoke.map((invoke) => invoke.id);
  const groups = [...node.transitions.entries()].map(([eventType, list]) => ({ trigger: triggerName(eventType, invokeIds, (list[0] as { delay?: unknown } | undefined)?.delay), list }));
  if (node.always?.length) groups.push({ trigger: 'always', list: node.always });
  const drawn: DiagramTransition[] = [];
  for (const { trigger, list } of groups) {
    const anyGuarded = list.some((t) => t.guard !== undefined);
    for (const t of list) {
      const guard = guardName(t.guard);
      const targets = t.target?.length ? t.target.map((target) => stateId(target)) : [from];
      for (const to of targets) {
        drawn.push({
          from,
          to,
          trigger,
          ...(guard ? { guard } : {}),
          otherwise: anyGuarded && guard === undefined,
          internal: !t.target?.length,
        });
      }
    }
  }
  return drawn;
}

/**
 * The trigger of an internal XState event, as a reader would say it: `done`/`error` of the state's
 * own invoke (`xstate.done.actor.<id>` / `xstate.error.actor.<id>`; the id is added when the state
 * invokes several actors), `after <delay>` (a named delay, or milliseconds), `done` of a compound state
 * (`xstate.done.state.<id>`).
 */
function triggerName(eventType: string, invokeIds: readonly string[], delay: unknown): string {
  const actor = /^xstate\.(done|error|snapshot)\.actor\.(.+)$/.exec(eventType);
  if (actor) {
    const [, kind, id] = actor;
    return invokeIds.length === 1 && invokeIds[0] === id ? kind! : `${kind} ${id}`;
  }
  if (eventType.startsWith('xstate.done.state.')) return 'done';
  if (eventType.startsWith('xstate.after.')) return `after ${typeof delay === 'number' ? `${delay}ms` : String(delay)}`;
  if (eventType === '*') return '* (any event)';
  return eventType;
}

/** A guard's name: named guards by name, `not`/`and`/`or` spelled out, inline functions as `inline`. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type);
  if (typeof guard === 'function') {
    const combinator = guard as { name: string; check?: unknown; guards?: unknown[]; stateValue?: unknown };
    if (typeof combinator.check === 'function' && Array.isArray(combinator.guards)) {
      const parts = combinator.guards.map((g) => {
        const name = guardName(g) ?? 'inline';
        return /[ &|]/.test(name) ? `(${name})` : name;
      });
      if (combinator.name === 'not') return `!${parts[0]}`;
      if (combinator.name === 'and') return parts.join(' && ');
      if (combinator.name === 'or') return parts.join(' || ');
    }
    if (typeof combinator.check === 'function' && combinator.stateValue !== undefined) return `in ${JSON.stringify(combinator.stateValue)}`;
    return combinator.name && combinator.name !== 'guard' ? combinator.name : 'inline';
  }
  return 'inline';
}

function srcName(src: unknown, invokeId: string): string {
  return typeof src === 'string' ? src : invokeId;
}

const reservedIds = new Set(['state', 'note', 'end', 'class', 'classdef', 'direction', 'style', 'as', 'left', 'right', 'of']);

function stateId(node: AnyStateNode): string {
  const id = node.path.map((key) => key.replace(/[^A-Za-z0-9_]/g, '_')).join('__');
  return reservedIds.has(id.toLowerCase()) || /^[0-9]/.test(id) ? `s_${id}` : id;
}

function kebab(text: string): string {
  return text.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

function allStates(states: readonly DiagramState[]): DiagramState[] {
  return states.flatMap((state) => [state, ...allStates(state.children)]);
}

/** The label of an arrow: trigger, then guard in brackets. */
export function transitionLabel(t: DiagramTransition): string {
  let label = t.trigger;
  if (t.guard) label += ` [${t.guard}]`;
  if (t.otherwise) label += ' (otherwise)';
  if (t.internal) label += ' (stays)';
  return label;
}

/** One drawn arrow: the transitions between the same two states, merged so that their labels do not overlap. */
export interface Arrow {
  readonly from: string;
  readonly to: string;
  /** One label per transition, in the machine's order. */
  readonly labels: readonly string[];
  readonly internal: boolean;
}

/** The transitions grouped into arrows, in order of each pair's first transition. */
export function arrowsOf(transitions: readonly DiagramTransition[]): Arrow[] {
  const arrows = new Map<string, { from: string; to: string; labels: string[]; internal: boolean }>();
  for (const t of transitions) {
    const key = `${t.from}\u0000${t.to}`;
    const arrow = arrows.get(key) ?? { from: t.from, to: t.to, labels: [], internal: true };
    arrow.labels.push(transitionLabel(t));
    arrow.internal &&= t.internal;
    arrows.set(key, arrow);
  }
  return [...arrows.values()];
}

function isShort(description: string | undefined): description is string {
  return description !== undefined && description.length <= shortDescription;
}

function generatedBy(d: MachineDiagram): string {
  return `Generated by scripts/diagrams.ts from ${d.file} (${d.exportName}). Do not edit: change the machine, then run npm run diagrams.`;
}

// ---------------------------------------------------------------- Mermaid

/** Mermaid entity codes for characters that would end a statement, start a comment or read as HTML. */
const mermaidEntities: Record<string, string> = { '#': '#35;', ';': '#59;', '<': '#lt;', '>': '#gt;', '"': '#quot;', '%': '#37;' };

/** Mermaid text: one line, special characters as entity codes. */
function mmd(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/[#;<>"%]/g, (c) => mermaidEntities[c]!);
}

/** The machine as a Mermaid `stateDiagram-v2`. */
export function toMermaid(d: MachineDiagram): string {
  const lines = [`%% ${generatedBy(d)}`, 'stateDiagram-v2', '  direction TB'];
  lines.push('  classDef successExit fill:#e3f4e1,stroke:#2e7d32,stroke-width:2px,color:#1b5e20');
  lines.push('  classDef errorExit fill:#fde2e1,stroke:#c62828,stroke-width:2px,color:#8e0000');
  const byParent = new Map<string, Arrow[]>();
  const scopeOf = new Map<string, string>();
  for (const state of allStates(d.states)) for (const child of state.children) scopeOf.set(child.id, state.id);
  // An arrow is written in the innermost composite holding both ends, so Mermaid nests it right.
  for (const arrow of arrowsOf(d.transitions)) {
    const scope = commonScope(arrow.from, arrow.to, scopeOf);
    byParent.set(scope, [...(byParent.get(scope) ?? []), arrow]);
  }
  if (d.transitions.some((t) => t.from === anyStateId)) lines.push(`  state "(any state)" as ${anyStateId}`);
  writeScope(lines, '  ', '', d.states, d.initial, byParent);
  const notes = allStates(d.states).filter((state) => isShort(state.description));
  for (const state of notes) lines.push(`  note right of ${state.id}`, `    ${mmd(state.description!)}`, '  end note');
  const success = d.states.filter((state) => state.exit === 'success').map((state) => state.id);
  const errors = d.states.filter((state) => state.exit === 'error').map((state) => state.id);
  if (success.length) lines.push(`  class ${success.join(', ')} successExit`);
  if (errors.length) lines.push(`  class ${errors.join(', ')} errorExit`);
  return `${lines.join('\n')}\n`;
}

/** Mermaid draws a state's arrow to itself across other labels: a simple state lists those transitions in its box instead. */
function isBodyLoop(arrow: Arrow, state: DiagramState): boolean {
  return arrow.from === state.id && arrow.to === state.id && state.children.length === 0;
}

function commonScope(from: string, to: string, scopeOf: Map<string, string>): string {
  const ancestors = (id: string) => {
    const chain: string[] = [];
    for (let scope = scopeOf.get(id); scope !== undefined; scope = scopeOf.get(scope)) chain.push(scope);
    return chain;
  };
  const fromChain = ancestors(from);
  return ancestors(to).find((scope) => fromChain.includes(scope)) ?? '';
}

function writeScope(
  lines: string[],
  indent: string,
  scope: string,
  states: readonly DiagramState[],
  initial: string | undefined,
  byParent: Map<string, Arrow[]>,
): void {
  const arrows = byParent.get(scope) ?? [];
  for (const state of states) {
    if (state.children.length === 0) {
      lines.push(`${indent}state "${mmd(state.name)}" as ${state.id}`);
    } else {
      lines.push(`${indent}state "${mmd(state.name)}" as ${state.id} {`);
      if (state.kind === 'parallel') {
        state.children.forEach((region, i) => {
          if (i > 0) lines.push(`${indent}  --`);
          writeScope(lines, `${indent}  `, state.id, [region], undefined, byParent);
        });
      } else {
        writeScope(lines, `${indent}  `, state.id, state.children, state.initial, byParent);
      }
      lines.push(`${indent}}`);
    }
    for (const src of state.invokes) lines.push(`${indent}${state.id} : invoke: ${mmd(src)}`);
    if (state.kind === 'history') lines.push(`${indent}${state.id} : history`);
    for (const label of arrows.find((arrow) => isBodyLoop(arrow, state))?.labels ?? []) lines.push(`${indent}${state.id} : ↻ ${mmd(label)}`);
  }
  if (initial) lines.push(`${indent}[*] --> ${initial}`);
  for (const arrow of arrows) {
    if (states.some((state) => isBodyLoop(arrow, state))) continue;
    lines.push(`${indent}${arrow.from} --> ${arrow.to} : ${arrow.labels.map(mmd).join('<br/>')}`);
  }
  for (const state of states) if (state.kind === 'final') lines.push(`${indent}${state.id} --> [*]`);
}

// ---------------------------------------------------------------- Graphviz

/** A DOT double-quoted string; line breaks become DOT's centred `\n`. */
function q(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/[ \t]*\r?\n[ \t]*/g, '\\n').replace(/\s+/g, ' ')}"`;
}

/** Text inside a DOT HTML-like label. */
function html(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Breaks text into lines of about `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

const palette = {
  state: { fill: '#eef3fb', line: '#4a6fa5' },
  success: { fill: '#e3f4e1', line: '#2e7d32', text: '#1b5e20' },
  error: { fill: '#fde2e1', line: '#c62828', text: '#8e0000' },
  edge: '#444444',
};

function nodeLabel(state: DiagramState): string {
  const parts = [`<b>${html(state.name)}</b>`];
  for (const src of state.invokes) parts.push(`<font point-size="9">invoke: ${html(src)}</font>`);
  if (state.kind === 'history') parts.push('<font point-size="9">history</font>');
  if (isShort(state.description)) parts.push(`<font point-size="8" color="#555555"><i>${wrap(state.description, 32).map(html).join('<br/>')}</i></font>`);
  return `<${parts.join('<br/>')}>`;
}

function nodeAttributes(state: DiagramState): string {
  const attributes = [`label=${nodeLabel(state)}`];
  if (state.description) attributes.push(`tooltip=${q(state.description)}`);
  if (state.kind === 'final') attributes.push('peripheries=2');
  if (state.exit === 'success') attributes.push(`fillcolor=${q(palette.success.fill)}`, `color=${q(palette.success.line)}`, `fontcolor=${q(palette.success.text)}`, 'penwidth=1.5');
  if (state.exit === 'error') attributes.push(`fillcolor=${q(palette.error.fill)}`, `color=${q(palette.error.line)}`, `fontcolor=${q(palette.error.text)}`, 'penwidth=1.5');
  return attributes.join(', ');
}

/** Graphviz can only aim arrows at nodes: a composite state is reached through a point inside its cluster. */
function anchorOf(state: DiagramState): string {
  return `${state.id}__start`;
}

/** The machine as a Graphviz digraph, top down like the Mermaid one: every exit on the bottom row, error exits grouped in a cluster. */
export function toDot(d: MachineDiagram): string {
  const lines = [
    `// ${generatedBy(d)}`,
    `digraph ${q(d.name)} {`,
    `  graph [rankdir=TB, compound=true, newrank=true, nodesep=0.3, ranksep=0.45, fontname="Helvetica", fontsize=13, labelloc=t, label=${q(`${d.name} (machine id: ${d.machineId})`)}];`,
    `  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, fillcolor=${q(palette.state.fill)}, color=${q(palette.state.line)}];`,
    `  edge [fontname="Helvetica", fontsize=9, color=${q(palette.edge)}, fontcolor=${q(palette.edge)}, arrowsize=0.7];`,
    '  __start [shape=circle, style=filled, fillcolor=black, label="", width=0.18, tooltip="start"];',
  ];
  const composites = new Map(allStates(d.states).filter((state) => state.children.length > 0).map((state) => [state.id, state]));
  const exits = new Map(d.states.filter((state) => state.exit).map((state) => [state.id, state.exit!]));
  if (d.transitions.some((t) => t.from === anyStateId)) lines.push(`  ${anyStateId} [label="(any state)", style="dashed,rounded"];`);

  const writeStates = (indent: string, states: readonly DiagramState[]) => {
    for (const state of states) {
      if (state.children.length === 0) {
        lines.push(`${indent}${q(state.id)} [${nodeAttributes(state)}];`);
        continue;
      }
      const invokes = state.invokes.map((src) => `<br/><font point-size="9">invoke: ${html(src)}</font>`).join('');
      lines.push(`${indent}subgraph ${q(`cluster_${state.id}`)} {`);
      lines.push(`${indent}  graph [label=<<b>${html(state.name)}</b>${state.kind === 'parallel' ? ' (parallel)' : ''}${invokes}>, style="rounded,dashed", color=${q(palette.state.line)}${state.description ? `, tooltip=${q(state.description)}` : ''}];`);
      const initialStyle = state.initial ? 'shape=circle, style=filled, fillcolor=black, width=0.12' : 'shape=point, style=invis';
      lines.push(`${indent}  ${q(anchorOf(state))} [label="", ${initialStyle}];`);
      writeStates(`${indent}  `, state.children);
      if (state.initial) lines.push(`${indent}  ${q(anchorOf(state))} -> ${q(state.initial)};`);
      if (state.children.some((child) => child.kind === 'final')) {
        lines.push(`${indent}  ${q(`${state.id}__end`)} [label="", shape=doublecircle, style=filled, fillcolor=black, width=0.1];`);
        for (const child of state.children) if (child.kind === 'final') lines.push(`${indent}  ${q(child.id)} -> ${q(`${state.id}__end`)};`);
      }
      lines.push(`${indent}}`);
    }
  };
  // Happy-path states first, then the error exits in a cluster of their own, drawn at the far end.
  writeStates('  ', d.states.filter((state) => state.exit !== 'error'));
  const errorStates = d.states.filter((state) => state.exit === 'error');
  if (errorStates.length) {
    lines.push('  subgraph cluster_error_exits {');
    lines.push(`    graph [label="error exits", fontsize=11, fontcolor=${q(palette.error.line)}, style="rounded,dashed", color=${q(palette.error.line)}];`);
    writeStates('    ', errorStates);
    lines.push('  }');
  }
  const finals = d.states.filter((state) => state.kind === 'final');
  if (finals.length > 1) lines.push(`  { rank=same; ${finals.map((state) => `${q(state.id)};`).join(' ')} }`);
  lines.push('  __end [shape=doublecircle, style=filled, fillcolor=black, label="", width=0.12, tooltip="end"];');

  if (d.initial) lines.push(`  __start -> ${q(d.initial)};`);
  for (const t of arrowsOf(d.transitions)) {
    const attributes = [`label=${q(t.labels.join('\n'))}`];
    let from = t.from;
    let to = t.to;
    const fromComposite = composites.get(t.from);
    const toComposite = composites.get(t.to);
    if (fromComposite) {
      from = anchorOf(fromComposite);
      attributes.push(`ltail=${q(`cluster_${fromComposite.id}`)}`);
    }
    if (toComposite) {
      to = anchorOf(toComposite);
      if (t.from !== t.to) attributes.push(`lhead=${q(`cluster_${toComposite.id}`)}`);
    }
    // Heavier arrows between states keep the happy path a straight spine; arrows to error exits bend around it.
    if (exits.get(t.to) === 'error') attributes.push(`color=${q(palette.error.line)}`, `fontcolor=${q(palette.error.line)}`, 'style=dashed');
    else attributes.push('weight=4');
    if (exits.get(t.to) === 'success') attributes.push(`color=${q(palette.success.line)}`, `fontcolor=${q(palette.success.line)}`, 'penwidth=1.5');
    if (t.internal) attributes.push('style=dotted');
    lines.push(`  ${q(from)} -> ${q(to)} [${attributes.join(', ')}];`);
  }
  for (const state of d.states) {
    if (state.kind !== 'final') continue;
    const colour = state.exit === 'error' ? palette.error.line : palette.success.line;
    lines.push(`  ${q(state.id)} -> __end [color=${q(colour)}${state.exit === 'error' ? ', style=dashed' : ''}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- Markdown

function successNameList(): string {
  const names = successNames.map((name) => `\`${name}\``);
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names.join('');
}

/** Markdown table cell text. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s+/g, ' ');
}

const legend = [
  '## Legend',
  '',
  '- Black dot: where the machine starts; ringed dot (`[*]` in the Mermaid source): where it stops.',
  '- Box: a state, named as in the machine. `invoke: <src>` is the actor it runs on entry; when that actor resolves the machine takes the `done` arrow, when it rejects the `error` arrow.',
  '- `↻ <trigger>` inside a Mermaid box: a transition from the state back into itself (drawn as a loop in the SVG; Mermaid would draw the loop over other labels).',
  '- Arrow label: what triggers it — `done`, `error`, `after <delay>` (a named or millisecond delay), `always` (taken as soon as its guard holds), or an event name — then the guard in `[brackets]`. Arrows with the same trigger are tried in the order the machine lists them; `(otherwise)` marks the unguarded one taken when no guard before it holds. `(stays)` marks a transition without a target.',
  `- Green, double border: a success exit — a final state named ${successNameList()} (or tagged \`success\`). Red, double border, dashed arrows: an error exit — any other final state of the machine. (Final states of a nested state are drawn plain: they end that state, not the machine.)`,
  `- Descriptions of at most ${shortDescription} characters are drawn beside their state; every description is in the table above (and in the SVG as a tooltip).`,
].join('\n');

/** The machine's Markdown page: title, description, the Mermaid diagram, a link to the SVG, the states, a legend. */
export function toMarkdown(d: MachineDiagram, mermaid: string): string {
  const rows = allStates(d.states).map((state) => {
    const kind = state.exit ? `${state.exit} exit` : state.kind;
    const invokes = state.invokes.map((src) => `\`${src}\``).join(', ');
    return `| \`${state.id.replace(/__/g, '.')}\` | ${kind} | ${invokes} | ${cell(state.description ?? '')} |`;
  });
  return [
    `<!-- ${generatedBy(d)} -->`,
    `# State diagram: ${d.name}`,
    '',
    `\`${d.exportName}\` (machine id \`${d.machineId}\`) in [\`${d.file}\`](../../${d.file}).`,
    '',
    d.description ? `> ${d.description}\n` : '',
    '```mermaid',
    mermaid.trimEnd(),
    '```',
    '',
    `Rendered with Graphviz: [${d.name}.svg](${d.name}.svg) (from [${d.name}.dot](${d.name}.dot)). Mermaid source: [${d.name}.mmd](${d.name}.mmd).`,
    '',
    '## States',
    '',
    '| state | kind | invokes | description |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    legend,
    '',
  ]
    .filter((line, i, all) => !(line === '' && all[i - 1] === ''))
    .join('\n');
}

/** docs/state-diagrams/README.md: a warning to regenerate, and a link to each machine's page. */
export function toIndex(diagrams: readonly MachineDiagram[]): string {
  const rows = diagrams.map((d) => `| [${d.name}](${d.name}.md) | [\`${d.file}\`](../../${d.file}) | ${cell(d.description ?? '')} | [svg](${d.name}.svg) · [mmd](${d.name}.mmd) · [dot](${d.name}.dot) |`);
  return [
    '<!-- Generated by scripts/diagrams.ts. Do not edit: change the machines, then run npm run diagrams. -->',
    '# State diagrams',
    '',
    '> **Generated from the machines — do not edit by hand.** Whenever a machine in `src/machines/` changes, or a new `*.machine.ts` appears, run `npm run diagrams` and commit what it writes here. `test/unit/state-diagrams.test.ts` (part of `npm test`) fails until the committed diagrams match the machines; `node --import tsx scripts/diagrams.ts --check` lists the files that are out of date.',
    '',
    '| machine | source | what it does | files |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    '## How they are drawn',
    '',
    '`scripts/diagrams.ts` imports every `src/machines/*.machine.ts`, takes each export that is an XState machine, and walks its definition: states (nested ones as composites), invokes, `on` events, invoke `onDone`/`onError`, `after` delays, `always` transitions, guards by name and final states. For each machine it writes a Mermaid diagram (`.mmd`, embedded in the `.md` page, which code hosts render), the same graph in Graphviz DOT (`.dot`), and an SVG rendered by `dot -Tsvg` (`scripts/install-graphviz.sh` installs Graphviz; SVGs are not compared by the check, since renderer versions differ).',
    '',
    `A final state named ${successNameList()} (or tagged \`success\`, as in \`{ type: 'final', tags: ['success'] }\`) is a success exit, drawn green; any other final state of a machine is an error exit, drawn red. Name a new final state accordingly, or tag it.`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- files

/** Every compared file, by path relative to the repository root: .mmd, .dot and .md per machine, and the index. */
export async function drawAll(root = repoRoot): Promise<Map<string, string>> {
  const diagrams = (await loadMachines(root)).map(describeMachine);
  const files = new Map<string, string>();
  for (const d of diagrams) {
    const mermaid = toMermaid(d);
    files.set(`${diagramsDir}/${d.name}.mmd`, mermaid);
    files.set(`${diagramsDir}/${d.name}.dot`, toDot(d));
    files.set(`${diagramsDir}/${d.name}.md`, toMarkdown(d, mermaid));
  }
  files.set(`${diagramsDir}/README.md`, toIndex(diagrams));
  return files;
}

/** Where the files on disk differ from `expected`; also lists generated-looking files that no machine draws any more. */
export async function compareWithDisk(expected: Map<string, string>, root = repoRoot): Promise<Difference[]> {
  const differences: Difference[] = [];
  for (const [file, content] of expected) {
    const absolute = path.join(root, file);
    if (!existsSync(absolute)) differences.push({ file, problem: 'missing' });
    else if ((await readFile(absolute, 'utf8')) !== content) differences.push({ file, problem: 'differs' });
  }
  for (const file of await staleFiles(expected, root)) differences.push({ file, problem: 'stale' });
  return differences;
}

async function staleFiles(expected: Map<string, string>, root: string): Promise<string[]> {
  const dir = path.join(root, diagramsDir);
  if (!existsSync(dir)) return [];
  const names = new Set([...expected.keys()].map((file) => path.basename(file).replace(/\.[^.]+$/, '')));
  return (await readdir(dir))
    .filter((entry) => generatedExtensions.includes(path.extname(entry)) && !names.has(entry.replace(/\.[^.]+$/, '')))
    .sort()
    .map((entry) => `${diagramsDir}/${entry}`);
}

function hasDot(): boolean {
  return spawnSync('dot', ['-V'], { stdio: 'ignore' }).status === 0;
}

/** Writes every file that changed, renders the SVGs, and removes files of machines that are gone. */
export async function writeAll(expected: Map<string, string>, root = repoRoot): Promise<void> {
  await mkdir(path.join(root, diagramsDir), { recursive: true });
  for (const { file, problem } of await compareWithDisk(expected, root)) {
    if (problem === 'stale') {
      await unlink(path.join(root, file));
      console.log(`removed ${file}`);
    } else {
      await writeFile(path.join(root, file), expected.get(file)!);
      console.log(`wrote ${file}`);
    }
  }
  if (!hasDot()) {
    console.error('diagrams: Graphviz `dot` not found, SVGs not rendered (scripts/install-graphviz.sh installs it)');
    return;
  }
  for (const [file, content] of expected) {
    if (!file.endsWith('.dot')) continue;
    const rendered = spawnSync('dot', ['-Tsvg'], { input: content, encoding: 'utf8' });
    if (rendered.status !== 0) throw new Error(`dot -Tsvg failed on ${file}: ${rendered.stderr}`);
    const svg = file.replace(/\.dot$/, '.svg');
    const absolute = path.join(root, svg);
    if (!existsSync(absolute) || (await readFile(absolute, 'utf8')) !== rendered.stdout) {
      await writeFile(absolute, rendered.stdout);
      console.log(`wrote ${svg}`);
    }
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const check = argv.includes('--check');
  const expected = await drawAll();
  if (!check) {
    await writeAll(expected);
    return 0;
  }
  const differences = await compareWithDisk(expected);
  for (const { file, problem } of differences) console.error(`${problem}: ${file}`);
  if (differences.length) console.error('diagrams: out of date; run npm run diagrams and commit docs/state-diagrams/');
  return differences.length ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
