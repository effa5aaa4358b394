/**
 * The state charts: read from the machine definitions, checked against an independent walk
 * of the same definitions, rendered to SVG and Mermaid, and the checked-in diagrams in
 * visualizations/ kept up to date (this is how the test suite runs `npm run viz:check`).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef, type AnyStateMachine } from "xstate";
import { activeStateIds, allStates, allTransitions, chartOf, type Chart } from "../../src/charts/chart.js";
import { MACHINE_NAMES, MACHINES } from "../../src/charts/machines.js";
import { renderSvg, toDot, toMermaid } from "../../src/charts/render.js";
import { checkVisualizations, VISUALIZATIONS_DIR } from "../../src/charts/visualizations.js";
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config.js";
import type { Command } from "../../src/machines/commands.js";
import { clientMachine } from "../../src/machines/client.js";

/** The raw config of a state, as written in the machine file. */
interface StateConfig {
  type?: string;
  states?: Record<string, StateConfig>;
  on?: Record<string, unknown>;
  after?: Record<string, unknown>;
  always?: unknown;
}

const asArray = (x: unknown): unknown[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** Walks the machine's raw config (not its state nodes): every state id, transition count and `after` delay. */
function fromConfig(machine: AnyStateMachine) {
  const ids: string[] = [];
  const delays: string[] = [];
  let transitions = 0;
  const walk = (id: string, config: StateConfig) => {
    ids.push(id);
    for (const t of Object.values(config.on ?? {})) transitions += asArray(t).length;
    for (const [delay, t] of Object.entries(config.after ?? {})) {
      transitions += asArray(t).length;
      for (const _ of asArray(t)) delays.push(`${id} after ${delay}`);
    }
    transitions += asArray(config.always).length;
    for (const [key, child] of Object.entries(config.states ?? {})) walk(`${id}.${key}`, child);
  };
  walk(machine.id, machine.config as StateConfig);
  return { ids, delays, transitions };
}

const edge = (chart: Chart, source: string, label: string, target: string) =>
  allTransitions(chart).find((t) => t.source === source && t.label === label && t.targets.includes(target));

for (const name of MACHINE_NAMES) {
  test(`charts - ${name} chart has every state of the ${name} machine`, () => {
    const chart = chartOf(MACHINES[name]);
    const expected = fromConfig(MACHINES[name]);
    assert.is(chart.machineId, name);
    assert.equal(allStates(chart).map((s) => s.id).sort(), expected.ids.sort());
  });

  test(`charts - ${name} chart has every transition of the ${name} machine, delays named`, () => {
    const chart = chartOf(MACHINES[name]);
    const expected = fromConfig(MACHINES[name]);
    const transitions = allTransitions(chart);
    assert.is(transitions.length, expected.transitions, "one chart transition per transition in the config");
    const delayed = transitions
      .filter((t) => t.label.startsWith("after "))
      .map((t) => `${t.source} ${t.label.replace(/ \[.*\]$/, "")}`);
    assert.equal(delayed.sort(), expected.delays.sort(), "every after transition, labelled by its delay's name");
    for (const t of transitions) {
      assert.not.ok(t.actions.includes("(inline)") || t.guard === "(inline)", `${t.source} ${t.label}: everything is named`);
      assert.ok(t.label.length > 0);
    }
  });
}

test("charts - client chart shows the lifecycle transitions with their delays, guards and actions", () => {
  const chart = chartOf(clientMachine);
  const toSuspect = edge(chart, "client.tracking.liveness.alive.awaitingReply", "after pingInterval", "client.tracking.liveness.suspect");
  assert.ok(toSuspect, "alive.awaitingReply --after pingInterval--> suspect");
  assert.equal(toSuspect!.actions, ["countMissedPing"]);
  assert.is(toSuspect!.event, "xstate.after.pingInterval.client.tracking.liveness.alive.awaitingReply");
  const recovered = edge(chart, "client.tracking.liveness.suspect", "PONG [isForThisClient]", "client.tracking.liveness.alive");
  assert.ok(recovered, "suspect --PONG--> alive");
  assert.is(recovered!.guard, "isForThisClient");
  assert.equal(recovered!.actions, ["recordActivity", "setState", "report"]);
  assert.ok(edge(chart, "client.registered", "always", "client.tracking"), "registered --always--> tracking");
  assert.ok(edge(chart, "client.tracking.silence.counting", "after deadTimeout", "client.dead"));
  assert.ok(edge(chart, "client.tracking", "LEAVE [isForThisClient]", "client.left"));
  // Reentering self-transitions are there: they restart the timers.
  assert.ok(edge(chart, "client.tracking.liveness.alive", "PONG [isForThisClient]", "client.tracking.liveness.alive"));
  assert.ok(edge(chart, "client.tracking.stateReports.waiting", "after stateInterval", "client.tracking.stateReports.waiting"));

  const byId = new Map(allStates(chart).map((s) => [s.id, s]));
  assert.is(byId.get("client.tracking")!.type, "parallel");
  assert.is(byId.get("client.dead")!.type, "final");
  assert.is(byId.get("client")!.initial, "client.registered");
  assert.equal(byId.get("client.dead")!.entry, ["setState", "report", "removeRegistration", "notifyFinished"]);
  assert.equal(byId.get("client.tracking.liveness.alive.quiet")!.entry, [], "XState's own timer actions are left out");
  assert.ok(byId.get("client.dead")!.description?.includes("dead timeout"));
});

test("charts - election chart names composed guards, targetless transitions and invocations", () => {
  const chart = chartOf(MACHINES.election);
  assert.ok(edge(chart, "election.follower", "HEARTBEAT [isLiveLeaderHeartbeat && isNewLeader]", "election.follower"));
  const stop = allTransitions(chart).find((t) => t.source === "election.candidate.acquiring" && t.event === "RESIGN");
  assert.equal(stop?.targets, [], "RESIGN while acquiring only records the request");
  assert.equal(stop?.actions, ["requestStop"]);
  const leader = allStates(chart).find((s) => s.id === "election.leader")!;
  assert.equal(leader.invoke, ["monitor"]);
  assert.equal(leader.exit, ["stopMonitoring"]);
  assert.equal(chart.root.invoke, ["outbox"]);
});

test("charts - activeStateIds follows a real client actor through alive, suspect and dead", () => {
  const clock = new SimulatedClock();
  const root = setup({
    actors: { outbox: fromCallback<Command>(() => undefined), client: clientMachine },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      {
        src: "client",
        systemId: "client",
        input: {
          record: { registration: { subject: "svc.a", metadata: {} }, revision: 1, atMs: 0 },
          timings: DEFAULT_MONITOR_TIMINGS,
        },
      },
    ],
  });
  const actor = createActor(root, { clock }).start();
  const client = actor.system.get("client") as AnyActorRef;
  const chart = chartOf(clientMachine);
  const active = () => activeStateIds(chart, client.getSnapshot().value);
  const tracking = (liveness: string[]) => [
    "client",
    "client.tracking",
    "client.tracking.liveness",
    ...liveness.map((s) => `client.tracking.liveness.${s}`),
    "client.tracking.silence",
    "client.tracking.silence.counting",
    "client.tracking.stateReports",
    "client.tracking.stateReports.waiting",
  ];

  assert.equal(active(), tracking(["alive", "alive.quiet"]));
  clock.increment(DEFAULT_MONITOR_TIMINGS.pingIntervalMs);
  assert.equal(active(), tracking(["alive", "alive.awaitingReply"]));
  clock.increment(DEFAULT_MONITOR_TIMINGS.pingIntervalMs);
  assert.equal(active(), tracking(["suspect", "suspect.awaitingReply"]));
  client.send({ type: "PONG", subject: "svc.a", atMs: 1, rttMs: 1 });
  assert.equal(active(), tracking(["alive", "alive.quiet"]));
  for (let t = 0; t < DEFAULT_MONITOR_TIMINGS.deadTimeoutMs; t += 50) clock.increment(50);
  assert.equal(activeStateIds(chart, "dead"), ["client", "client.dead"]);
  assert.throws(() => activeStateIds(chart, "leading"), /not a child of "client"/);
  actor.stop();
});

test("charts - renderSvg draws every state and transition with the ids the inspector page uses", async () => {
  for (const name of MACHINE_NAMES) {
    const chart = chartOf(MACHINES[name]);
    const svg = await renderSvg(chart);
    assert.ok(svg.startsWith("<svg"), `${name}: starts with <svg`);
    assert.ok(svg.trimEnd().endsWith("</svg>"), `${name}: ends with </svg>`);
    assert.is(svg.match(/<g[\s>]/g)?.length, svg.match(/<\/g>/g)?.length, `${name}: balanced <g>`);
    assert.not.match(svg, /Generated by graphviz/, "no version comment");
    const groups = new Map([...svg.matchAll(/<g id="([^"]*)" class="([^"]*)"/g)].map((m) => [m[1]!.replace(/&#45;/g, "-"), m[2]!]));
    for (const state of allStates(chart)) {
      const cls = groups.get(`state:${state.id}`);
      assert.ok(cls, `${name}: <g id="state:${state.id}">`);
      assert.ok(cls!.split(" ").includes("state") && cls!.split(" ").includes(state.type), `${name} ${state.id}: class "${cls}"`);
    }
    const drawn = allTransitions(chart).reduce((n, t) => n + t.targets.length, 0);
    const edges = [...groups].filter(([id, cls]) => id.startsWith("edge:") && cls.split(" ").includes("transition"));
    assert.is(edges.length, drawn, `${name}: one edge:<n> per transition target`);
    assert.is(await renderSvg(chart), svg, `${name}: deterministic`);
  }
});

test("charts - toDot uses clusters for compound states and attaches edges to their borders", () => {
  const dot = toDot(chartOf(clientMachine));
  assert.match(dot, /subgraph "cluster_client.tracking" \{/);
  assert.match(dot, /compound=true/);
  assert.match(dot, /lhead="cluster_client.tracking.liveness.suspect"/);
  assert.match(dot, /ltail="cluster_client.tracking"/);
});

test("charts - mermaid source declares every state and every transition", () => {
  for (const name of MACHINE_NAMES) {
    const chart = chartOf(MACHINES[name]);
    const mmd = toMermaid(chart);
    assert.ok(mmd.includes("stateDiagram-v2"));
    const local = (id: string) => id.slice(chart.machineId.length + 1).replace(/\./g, "_");
    for (const state of allStates(chart).slice(1)) {
      assert.match(mmd, new RegExp(`state "${state.key}[^"]*" as ${local(state.id)}\\n`), `${name}: declares ${state.id}`);
    }
    for (const t of allTransitions(chart)) {
      for (const target of t.targets) assert.ok(mmd.includes(`${local(t.source)} --> ${local(target)} : `), `${name}: ${t.source} -> ${target}`);
    }
  }
});

test("charts - the diagrams in visualizations/ are up to date (npm run viz)", async () => {
  const stale = await checkVisualizations(VISUALIZATIONS_DIR);
  assert.equal(stale, [], `out of date: ${stale.join(", ")}; run npm run viz`);
});

test.run();
