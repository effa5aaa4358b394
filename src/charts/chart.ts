/**
 * The chart model: a plain, serialisable description of an XState v5 machine definition
 * (its states, their entry/exit actions and invocations, and every transition), read from
 * the machine's state nodes. `render.ts` draws it; the live inspector page highlights the
 * states that `activeStateIds` returns for a snapshot.
 *
 * Pure: no Node or browser API, so that the inspector page can use it as it is.
 */
import type { AnyStateMachine, StateValue } from "xstate";

export interface ChartTransition {
  /** Id of the state node that declares the transition. */
  source: string;
  /** Ids of the target state nodes; empty for a targetless transition (actions only, no state change). */
  targets: string[];
  /** What the chart shows: `PING_MISSED`, `after sweepInterval`, `always`, with ` [guard]` when guarded. */
  label: string;
  /**
   * The event type exactly as XState dispatches it: `PING_MISSED`; `xstate.after.<delay>.<stateId>`
   * for a delayed transition; `""` for an eventless (`always`) one.
   */
  event: string;
  /** The guard's name (`and(...)` guards as `a && b`); absent when unguarded. */
  guard?: string;
  /** Action names, in order; anonymous ones as `(inline)`. */
  actions: string[];
}

export interface ChartState {
  /** The machine's own state-node id, e.g. `monitor.sweeping.waiting`. */
  id: string;
  /** The key in the parent's `states` (the machine id for the root). */
  key: string;
  type: "atomic" | "compound" | "parallel" | "final" | "history";
  description?: string;
  /** Id (as in `ChartState.id`) of the initial child of a compound state. */
  initial?: string;
  entry: string[];
  exit: string[];
  /** The invoked actors, by source name (or by invoke id when the source is inline logic). */
  invoke: string[];
  /** In document order. */
  children: ChartState[];
  /** The transitions this state declares, in XState's order: `on`, done/error, `after`, then `always`. */
  transitions: ChartTransition[];
}

export interface Chart {
  machineId: string;
  description?: string;
  root: ChartState;
}

/** The shape of a state node that this module reads (a subset of xstate's StateNode). */
type AnyNode = AnyStateMachine["root"];
type AnyTransition = NonNullable<AnyNode["always"]>[number];

const INLINE = "(inline)";

/** The name of an action: `"ping"`, `{ type: "report", params }` → `report`; anonymous ones → `(inline)`. */
function actionName(action: unknown): string {
  if (typeof action === "string") return action;
  if (typeof action === "object" && action !== null && "type" in action && typeof action.type === "string") {
    return action.type;
  }
  return INLINE;
}

/** The name of a guard; XState's `and`, `or`, `not` and `stateIn` helpers are spelled out. */
function guardName(guard: unknown): string {
  if (typeof guard === "string") return guard;
  if (typeof guard === "object" && guard !== null && "type" in guard && typeof guard.type === "string") {
    return guard.type;
  }
  if (typeof guard === "function") {
    const helper = guard as { name: string; guards?: unknown[]; stateValue?: unknown };
    const parts = (helper.guards ?? []).map((g) => {
      const name = guardName(g);
      return /[ &|]/.test(name) ? `(${name})` : name;
    });
    if (helper.name === "and" && parts.length > 0) return parts.join(" && ");
    if (helper.name === "or" && parts.length > 0) return parts.join(" || ");
    if (helper.name === "not" && parts.length === 1) return `!${parts[0]!}`;
    if (helper.name === "stateIn" && helper.stateValue !== undefined) return `in ${JSON.stringify(helper.stateValue)}`;
  }
  return INLINE;
}

/** The label of an event type (without the guard). */
function eventLabel(node: AnyNode, eventType: string): string {
  if (eventType === "") return "always";
  const delayed = node.after.find((t) => t.eventType === eventType);
  if (delayed !== undefined) {
    const delay = delayed.delay;
    return `after ${typeof delay === "string" ? delay : typeof delay === "number" ? `${delay}ms` : INLINE}`;
  }
  if (eventType === `xstate.done.state.${node.id}`) return "done";
  for (const prefix of ["xstate.done.actor.", "xstate.error.actor.", "xstate.snapshot."]) {
    if (eventType.startsWith(prefix)) {
      const kind = prefix === "xstate.done.actor." ? "done" : prefix === "xstate.error.actor." ? "error" : "snapshot";
      return `${kind}: ${eventType.slice(prefix.length)}`;
    }
  }
  return eventType;
}

function transitionOf(node: AnyNode, t: AnyTransition): ChartTransition {
  const event = typeof t.eventType === "string" ? t.eventType : "";
  const guard = t.guard === undefined ? undefined : guardName(t.guard);
  const transition: ChartTransition = {
    source: node.id,
    targets: (t.target ?? []).map((target) => target.id),
    label: guard === undefined ? eventLabel(node, event) : `${eventLabel(node, event)} [${guard}]`,
    event,
    actions: t.actions.map(actionName),
  };
  if (guard !== undefined) transition.guard = guard;
  return transition;
}

/**
 * XState adds a `raise` to the entry and a `cancel` to the exit of every state with `after`
 * transitions: the delay machinery, not actions of the machine, so the chart leaves them out.
 */
function isDelayMachinery(node: AnyNode, action: unknown): boolean {
  if (typeof action !== "function") return false;
  const builtIn = action as { type?: unknown; id?: unknown; sendId?: unknown };
  const ref = builtIn.type === "xstate.raise" ? builtIn.id : builtIn.type === "xstate.cancel" ? builtIn.sendId : undefined;
  return typeof ref === "string" && node.after.some((t) => t.eventType === ref);
}

function actionsOf(node: AnyNode, actions: readonly unknown[]): string[] {
  return actions.filter((a) => !isDelayMachinery(node, a)).map(actionName);
}

function stateOf(node: AnyNode): ChartState {
  const transitions: ChartTransition[] = [];
  for (const list of node.transitions.values()) for (const t of list) transitions.push(transitionOf(node, t));
  for (const t of node.always ?? []) transitions.push(transitionOf(node, t));
  const children = Object.values(node.states as Record<string, AnyNode>)
    .sort((a, b) => a.order - b.order)
    .map(stateOf);
  const state: ChartState = {
    id: node.id,
    key: node.key,
    type: node.type,
    entry: actionsOf(node, node.entry),
    exit: actionsOf(node, node.exit),
    invoke: node.invoke.map((inv) => (typeof inv.src === "string" ? inv.src : inv.id)),
    children,
    transitions,
  };
  if (node.description !== undefined) state.description = node.description;
  if (node.type === "compound") {
    const initial = node.initial.target[0];
    if (initial !== undefined) state.initial = initial.id;
  }
  return state;
}

/** The chart of a machine definition (no actor is created). */
export function chartOf(machine: AnyStateMachine): Chart {
  const root = stateOf(machine.root);
  const chart: Chart = { machineId: machine.id, root };
  if (root.description !== undefined) chart.description = root.description;
  return chart;
}

/** Every state of the chart, depth first in document order (the root first). */
export function allStates(chart: Chart): ChartState[] {
  const out: ChartState[] = [];
  const walk = (s: ChartState) => {
    out.push(s);
    s.children.forEach(walk);
  };
  walk(chart.root);
  return out;
}

/**
 * Every transition of the chart, in the order of `allStates` and then of each state's
 * `transitions`. The index of a transition in this list is the `<n>` of its `edge:<n>` in
 * the SVG of `renderSvg`.
 */
export function allTransitions(chart: Chart): ChartTransition[] {
  return allStates(chart).flatMap((s) => s.transitions);
}

/**
 * The ids (as in ChartState.id) of every active state node, for a snapshot value of that
 * machine, e.g. {registrations:"running",sweeping:"waiting"} → ["monitor",
 * "monitor.registrations", "monitor.registrations.running", "monitor.sweeping",
 * "monitor.sweeping.waiting"], in document order (the root first).
 * Throws when the value names a state the chart does not have (a value of another machine).
 */
export function activeStateIds(chart: Chart, value: StateValue): string[] {
  const ids: string[] = [];
  const visit = (state: ChartState, value: StateValue | undefined) => {
    ids.push(state.id);
    if (value === undefined) return;
    const keys = typeof value === "string" ? [value] : Object.keys(value);
    const childValue = (key: string) => (typeof value === "string" ? undefined : value[key]);
    for (const key of keys) {
      if (!state.children.some((c) => c.key === key)) {
        throw new Error(`charts: state "${key}" is not a child of "${state.id}" in the chart of ${chart.machineId}`);
      }
    }
    // Children in document order, so that the result does not depend on the value's key order.
    for (const child of state.children) if (keys.includes(child.key)) visit(child, childValue(child.key));
  };
  visit(chart.root, value);
  return ids;
}
