/**
 * Draws a chart: as Graphviz DOT, as SVG (the DOT laid out by Graphviz compiled to
 * WebAssembly, so it works offline, in Node and in the browser), and as Mermaid.
 *
 * SVG structure, which the live inspector page relies on:
 * - every state is a `<g id="state:<ChartState.id>">` whose class includes `state` and its
 *   type (`atomic`, `compound`, `parallel`, `final`); atomic and final states are Graphviz
 *   nodes (class `node state atomic`), compound and parallel ones clusters (class
 *   `cluster state compound`);
 * - every transition with a target is a `<g id="edge:<n>">` with class `edge transition`,
 *   where n is the transition's index in `allTransitions(chart)` (a transition with several
 *   targets draws `edge:<n>`, `edge:<n>.1`, ...). Targetless transitions (actions only) are
 *   listed inside their state, as UML does with internal transitions;
 * - initial pseudo-states are `<g id="initial:<parent id>">` (class `node initial`), with
 *   their edge `<g id="initial:<parent id>:edge">` (class `edge initial`).
 *
 * Deterministic: the same chart gives byte-identical DOT, SVG and Mermaid.
 */
import { Graphviz } from "@hpcc-js/wasm-graphviz";
import { allStates, allTransitions, type Chart, type ChartState, type ChartTransition } from "./chart.js";

const FONT = "Helvetica,Arial,sans-serif";
const INK = "#1f2933";
const MUTED = "#616e7c";
const LINE = "#7b8794";
const STATE_FILL = "#f5f7fa";
const FINAL_FILL = "#e4e7eb";
const CLUSTER_FILL = "#fcfcfd";
const REGION_LINE = "#9aa5b1";

/** A DOT string literal. */
const q = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;

/** Text inside a Graphviz HTML-like label. */
const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** Breaks a list of words into lines of at most about `width` characters. */
function wrap(words: string[], width: number, separator: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const [i, word] of words.entries()) {
    const piece = i < words.length - 1 ? word + separator.trimEnd() : word;
    if (line !== "" && line.length + 1 + piece.length > width) {
      lines.push(line);
      line = piece;
    } else line = line === "" ? piece : `${line} ${piece}`;
  }
  if (line !== "") lines.push(line);
  return lines;
}

const small = (text: string, color = MUTED, size = 9): string => `<FONT POINT-SIZE="${size}" COLOR="${color}">${text}</FONT>`;

/** The parts of a transition's label, without the event's own line. */
function transitionText(t: ChartTransition): { event: string; guard?: string; actions: string[] } {
  const event = t.guard === undefined ? t.label : t.label.slice(0, t.label.length - t.guard.length - 3);
  const text: { event: string; guard?: string; actions: string[] } = { event, actions: t.actions };
  if (t.guard !== undefined) text.guard = t.guard;
  return text;
}

/** An edge label: the event in bold, the guard, then `/ actions` in a smaller font. */
function edgeLabel(t: ChartTransition): string {
  const { event, guard, actions } = transitionText(t);
  const rows = [`<B>${esc(event)}</B>`];
  if (guard !== undefined) rows.push(small(esc(`[${guard}]`), INK, 9));
  if (actions.length > 0) {
    for (const [i, line] of wrap(actions, 28, ", ").entries()) rows.push(small(esc(i === 0 ? `/ ${line}` : line)));
  }
  return `<${rows.join("<BR/>")}>`;
}

/** The rows under a state's name: entry, exit, invoke, and its targetless transitions. */
function detailRows(state: ChartState): string[] {
  const rows: string[] = [];
  const list = (kind: string, names: string[]) => {
    if (names.length === 0) return;
    for (const [i, line] of wrap(names, 34, ", ").entries()) {
      rows.push(small(esc(i === 0 ? `${kind} / ${line}` : line)));
    }
  };
  list("entry", state.entry);
  list("exit", state.exit);
  if (state.invoke.length > 0) rows.push(small(esc(`invoke ${state.invoke.join(", ")}`)));
  for (const t of state.transitions) {
    if (t.targets.length > 0) continue;
    const { event, guard, actions } = transitionText(t);
    const head = guard === undefined ? event : `${event} [${guard}]`;
    rows.push(small(`${esc(head)}${actions.length > 0 ? ` / ${esc(actions.join(", "))}` : ""}`, INK));
  }
  return rows;
}

/** An HTML-like table label: a bold title and the detail rows, left-aligned. */
function tableLabel(title: string, rows: string[], titleSize: number): string {
  const cells = [`<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="${titleSize}"><B>${title}</B></FONT></TD></TR>`];
  for (const row of rows) cells.push(`<TR><TD ALIGN="LEFT">${row}</TD></TR>`);
  return `<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">${cells.join("")}</TABLE>>`;
}

const isCluster = (s: ChartState): boolean => s.type === "compound" || s.type === "parallel";
const clusterName = (s: ChartState): string => `cluster_${s.id}`;
const initialName = (s: ChartState): string => `initial:${s.id}`;
const initialEdgeName = (s: ChartState): string => `initial:${s.id}:edge`;
const anyName = (s: ChartState): string => `any:${s.id}`;
/** A transition of a compound state into one of its own states: taken in any of them. */
const isFromAnyState = (source: ChartState, target: ChartState): boolean => target.id.startsWith(`${source.id}.`);

/** The node that edges to or from a cluster attach to (then clipped at the cluster border). */
function anchorOf(s: ChartState): string {
  if (!isCluster(s)) return s.id;
  if (s.type === "compound") return initialName(s);
  const first = s.children[0];
  if (first === undefined) throw new Error(`charts: parallel state ${s.id} has no regions`);
  return anchorOf(first);
}

/** The Graphviz source of a chart. */
export function toDot(chart: Chart): string {
  const out: string[] = [];
  const byId = new Map(allStates(chart).map((s) => [s.id, s]));
  const parentOf = new Map<string, ChartState>();
  for (const s of byId.values()) for (const c of s.children) parentOf.set(c.id, s);
  // Such a transition cannot leave from the cluster's border (the edge never crosses it), nor
  // from its initial dot (it would read as the initial transition): it gets its own tail.
  const fromAny = new Set(
    allTransitions(chart).flatMap((t) => t.targets.filter((target) => target.startsWith(`${t.source}.`)).map(() => t.source)),
  );

  out.push(`digraph ${q(chart.machineId)} {`);
  out.push(
    `  graph [compound=true, rankdir=LR, newrank=true, fontname=${q(FONT)}, fontsize=11, fontcolor=${q(INK)}, ` +
      `nodesep=0.3, ranksep=0.5, pad=0.15, bgcolor="white", id=${q(`chart:${chart.machineId}`)}, class="chart"];`,
  );
  out.push(
    `  node [fontname=${q(FONT)}, fontsize=11, fontcolor=${q(INK)}, shape=box, style="rounded,filled", ` +
      `fillcolor=${q(STATE_FILL)}, color=${q(LINE)}, penwidth=1.1, margin="0.2,0.06", height=0.3];`,
  );
  out.push(`  edge [fontname=${q(FONT)}, fontsize=10, fontcolor=${q(INK)}, color=${q(LINE)}, arrowsize=0.6, penwidth=1];`);

  const emitState = (s: ChartState, depth: number) => {
    const pad = "  ".repeat(depth);
    if (!isCluster(s)) {
      const attrs = [`id=${q(`state:${s.id}`)}`, `class=${q(`state ${s.type}`)}`, `label=${tableLabel(esc(s.key), detailRows(s), 11)}`];
      if (s.type === "final") attrs.push(`fillcolor=${q(FINAL_FILL)}`, "peripheries=2", "penwidth=1.4");
      if (s.description !== undefined) attrs.push(`tooltip=${q(s.description)}`);
      out.push(`${pad}${q(s.id)} [${attrs.join(", ")}];`);
      return;
    }
    const parent = parentOf.get(s.id);
    const isRoot = parent === undefined;
    const isRegion = parent?.type === "parallel";
    out.push(`${pad}subgraph ${q(clusterName(s))} {`);
    const rows = detailRows(s);
    if (isRoot && s.description !== undefined) rows.unshift(small(`<I>${esc(s.description)}</I>`));
    const title = s.type === "parallel" ? `${esc(s.key)}&#160;&#160;${small("parallel")}` : esc(s.key);
    const attrs = [
      `id=${q(`state:${s.id}`)}`,
      `class=${q(`state ${s.type}${isRegion ? " region" : ""}`)}`,
      `label=${tableLabel(title, rows, isRoot ? 14 : 11)}`,
      `labeljust="l"`,
      `style=${q(isRegion ? "dashed,rounded" : "rounded,filled")}`,
      `color=${q(isRegion ? REGION_LINE : LINE)}`,
      `fillcolor=${q(CLUSTER_FILL)}`,
      `penwidth=${isRoot ? 1.4 : 1.1}`,
      `margin=10`,
    ];
    // Graph attributes are inherited by nested clusters: an empty tooltip stops that.
    attrs.push(`tooltip=${q(s.description ?? "")}`);
    for (const a of attrs) out.push(`${pad}  ${a};`);
    if (s.type === "compound" && s.initial !== undefined) {
      const target = byId.get(s.initial);
      if (target === undefined) throw new Error(`charts: initial state ${s.initial} of ${s.id} is not in the chart`);
      out.push(
        `${pad}  ${q(initialName(s))} [id=${q(initialName(s))}, class="initial", shape=point, width=0.1, height=0.1, ` +
          `style=filled, fillcolor=${q(INK)}, color=${q(INK)}, label=""];`,
      );
      const lhead = isCluster(target) ? `, lhead=${q(clusterName(target))}` : "";
      out.push(
        `${pad}  ${q(initialName(s))} -> ${q(anchorOf(target))} [id=${q(initialEdgeName(s))}, class="initial", ` +
          `color=${q(INK)}, arrowsize=0.5${lhead}];`,
      );
    }
    if (fromAny.has(s.id)) {
      out.push(
        `${pad}  ${q(anyName(s))} [id=${q(anyName(s))}, class="any", shape=plaintext, style="", margin=0, ` +
          `label=<${small("<I>in any state</I>")}>];`,
      );
    }
    for (const c of s.children) emitState(c, depth + 1);
    // Regions start side by side; final states come last.
    if (s.type === "parallel") out.push(`${pad}  { rank=same; ${s.children.map((c) => q(anchorOf(c))).join("; ")}; }`);
    out.push(`${pad}}`);
  };
  emitState(chart.root, 1);

  // The machine's final states come last: invisible edges rank them after every other state.
  const finals = chart.root.children.filter((c) => c.type === "final");
  const others = allStates(chart).filter((s) => !isCluster(s) && s.type !== "final" && !chart.root.children.includes(s));
  for (const f of finals) {
    for (const o of others) out.push(`  ${q(o.id)} -> ${q(f.id)} [style=invis, weight=0];`);
  }

  // Graphviz stacks the labels of several loops on one node; spread them over its sides.
  const loops = new Map<string, number>();
  for (const [n, t] of allTransitions(chart).entries()) {
    const source = byId.get(t.source);
    if (source === undefined) throw new Error(`charts: transition source ${t.source} is not in the chart`);
    for (const [k, targetId] of t.targets.entries()) {
      const target = byId.get(targetId);
      if (target === undefined) throw new Error(`charts: transition target ${targetId} is not in the chart`);
      const attrs = [`id=${q(k === 0 ? `edge:${n}` : `edge:${n}.${k}`)}`, `class="transition"`, `label=${edgeLabel(t)}`];
      const self = source.id === target.id;
      if (self) {
        const k = loops.get(source.id) ?? 0;
        loops.set(source.id, k + 1);
        if (k > 0) {
          const side = ["n", "s", "e", "w"][k % 4]!;
          attrs.push(`tailport=${side}`, `headport=${side}`);
        }
      }
      const any = isCluster(source) && isFromAnyState(source, target);
      if (isCluster(source) && !self && !any) attrs.push(`ltail=${q(clusterName(source))}`);
      if (isCluster(target) && !self) attrs.push(`lhead=${q(clusterName(target))}`);
      if (t.event === "") attrs.push(`style="dashed"`);
      out.push(`  ${q(any ? anyName(source) : anchorOf(source))} -> ${q(anchorOf(target))} [${attrs.join(", ")}];`);
    }
  }
  out.push("}");
  return `${out.join("\n")}\n`;
}

let graphviz: Promise<Graphviz> | undefined;

/** The SVG of a chart: its DOT laid out by Graphviz, starting at `<svg` (no XML prolog, no version comment). */
export async function renderSvg(chart: Chart): Promise<string> {
  graphviz ??= Graphviz.load();
  const svg = (await graphviz).dot(toDot(chart), "svg");
  const start = svg.indexOf("<svg");
  if (start < 0) throw new Error(`charts: Graphviz returned no SVG for ${chart.machineId}`);
  return svg
    .slice(start)
    .replace(/<!-- Generated by graphviz[^>]*-->\n?/g, "")
    .replace(/\r\n/g, "\n");
}

/** A Mermaid identifier for a state: its id without the machine id, dots as underscores. */
function mermaidId(chart: Chart, id: string): string {
  const local = id === chart.root.id ? "root" : id.slice(chart.root.id.length + 1);
  return local.replace(/[^A-Za-z0-9_]/g, "_");
}

/** A transition label for Mermaid, where `:` and `;` would end the label. */
function mermaidLabel(t: ChartTransition): string {
  const text = t.actions.length > 0 ? `${t.label} / ${t.actions.join(", ")}` : t.label;
  return text.replace(/[:;#]/g, " ");
}

/** The Mermaid stateDiagram-v2 source of a chart. */
export function toMermaid(chart: Chart): string {
  const out: string[] = ["---", `title: ${chart.machineId}`, "---", "stateDiagram-v2"];
  out.push("  direction LR");
  const id = (stateId: string) => mermaidId(chart, stateId);

  const emitChildren = (s: ChartState, depth: number) => {
    const pad = "  ".repeat(depth);
    for (const [i, c] of s.children.entries()) {
      if (s.type === "parallel" && i > 0) out.push(`${pad}--`);
      const notes = [...c.entry.map((a) => `entry / ${a}`), ...c.exit.map((a) => `exit / ${a}`)];
      if (c.invoke.length > 0) notes.push(`invoke ${c.invoke.join(", ")}`);
      for (const t of c.transitions) if (t.targets.length === 0) notes.push(mermaidLabel(t));
      if (c.children.length > 0) {
        // Mermaid gives a composite state a label only, so its details go into the label.
        const label = [c.key, ...notes].join(" · ").replace(/"/g, "'");
        out.push(`${pad}state "${label}" as ${id(c.id)}`);
        out.push(`${pad}state ${id(c.id)} {`);
        emitChildren(c, depth + 1);
        out.push(`${pad}}`);
      } else {
        out.push(`${pad}state "${c.key}" as ${id(c.id)}`);
        for (const note of notes) out.push(`${pad}${id(c.id)} : ${note.replace(/[:;#]/g, " ")}`);
      }
      if (c.type === "final") out.push(`${pad}${id(c.id)} --> [*]`);
    }
    if (s.type === "compound" && s.initial !== undefined) out.push(`${pad}[*] --> ${id(s.initial)}`);
  };
  // What belongs to the machine as a whole (its entry, invocations, and transitions taken in
  // any state) goes on a pseudo-state `root`, where its outgoing transitions leave from.
  const root = chart.root;
  const rootNotes = [
    ...root.entry.map((a) => `entry / ${a}`),
    ...root.exit.map((a) => `exit / ${a}`),
    ...(root.invoke.length > 0 ? [`invoke ${root.invoke.join(", ")}`] : []),
    ...root.transitions.filter((t) => t.targets.length === 0).map(mermaidLabel),
  ];
  if (rootNotes.length > 0 || root.transitions.length > 0) {
    out.push(`  state "${root.key} (in any state)" as root`);
    for (const note of rootNotes) out.push(`  root : ${note.replace(/[:;#]/g, " ")}`);
  }
  emitChildren(root, 1);
  for (const t of allTransitions(chart)) {
    for (const target of t.targets) out.push(`  ${id(t.source)} --> ${id(target)} : ${mermaidLabel(t)}`);
  }
  return `${out.join("\n")}\n`;
}
