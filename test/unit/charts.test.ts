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
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config/config.js";
import type { Command } from "../../src/machines/commands.js";
import { clientMachine } from "../../src/machines/client.js";
import { shardMachine } from "../../src/machines/shard.js";

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
    assert.equal(
      allStates(chart)
        .map((s) => s.id)
        .sort(),
      expected.ids.sort(),
    );
  });

  test(`charts - ${name} chart has every transition of the ${name} machine, delays named`, () => {
    const chart = chartOf(MACHINES[name]);
    const expected = fromConfig(MACHINES[name]);
    const transitions = allTransitions(chart);
    assert.is(transitions.length, expected.transitions, "one chart transition per transition in the config");
    const delayed = transitions.filter((t) => t.label.startsWith("after ")).map((t) => `${t.source} ${t.label.replace(/ \[.*\]$/, "")}`);
    assert.equal(delayed.sort(), expected.delays.sort(), "every after transition, labelled by its delay's name");
    for (const t of transitions) {
      assert.not.ok(t.actions.includes("(inline)") || t.guard === "(inline)", `${t.source} ${t.label}: everything is named`);
      assert.ok(t.label.length > 0);
    }
  });
}

test("charts - client chart shows the lifecycle as facts from the sweep, with no delay", () => {
  const chart = chartOf(clientMachine);
  const missed = edge(chart, "client.alive", "PING_MISSED", "client.suspect");
  assert.ok(missed, "alive --PING_MISSED--> suspect");
  assert.equal(missed!.actions, ["applyFact"]);
  assert.is(missed!.event, "PING_MISSED");
  const recovered = edge(chart, "client.suspect", "REPLIED", "client.alive");
  assert.ok(recovered, "suspect --REPLIED--> alive");
  assert.is(recovered!.guard, undefined);
  assert.equal(recovered!.actions, ["applyFact", "setState", "report"]);
  const again = allTransitions(chart).find((t) => t.source === "client.suspect" && t.event === "PING_MISSED");
  assert.equal(again?.targets, [], "another missed ping while suspect only updates the facts");
  assert.ok(edge(chart, "client", "DEAD_TIMEOUT", "client.dead"), "dead from alive or suspect");
  assert.ok(edge(chart, "client", "LEAVE", "client.left"));
  const reset = allTransitions(chart).find((t) => t.source === "client" && t.event === "RESET");
  assert.equal(reset?.targets, [], "a registration again changes no state");
  assert.equal(
    reset?.actions,
    ["applyRegistration", "applyFact", "report"],
    "with the shard's latest liveness, so NodePresent carries the last reply",
  );
  assert.equal(
    allTransitions(chart).filter((t) => t.label.startsWith("after ") || t.event === ""),
    [],
    "no timer and no eventless transition",
  );

  const byId = new Map(allStates(chart).map((s) => [s.id, s]));
  assert.equal([...byId.keys()], ["client", "client.alive", "client.suspect", "client.dead", "client.left"]);
  assert.is(byId.get("client")!.initial, "client.alive");
  assert.equal(byId.get("client")!.entry, ["report"], "NodePresent when it starts");
  assert.is(byId.get("client.dead")!.type, "final");
  assert.is(byId.get("client.left")!.type, "final");
  assert.equal(byId.get("client.dead")!.entry, ["setState", "report", "removeRegistration", "notifyFinished"]);
  assert.equal(byId.get("client.suspect")!.entry, ["setState", "report"]);
  assert.ok(byId.get("client.alive")!.description?.includes("hears nothing"));
});

test("charts - monitor chart has its two parallel regions and the sweep on the named sweepInterval delay", () => {
  const chart = chartOf(MACHINES.monitor);
  const byId = new Map(allStates(chart).map((s) => [s.id, s]));
  assert.is(byId.get("monitor")!.type, "parallel");
  assert.equal(
    chart.root.children.map((c) => c.id),
    ["monitor.registrations", "monitor.sweeping"],
  );
  const sweep = edge(chart, "monitor.sweeping.waiting", "after sweepInterval", "monitor.sweeping.waiting");
  assert.ok(sweep, "waiting --after sweepInterval--> waiting");
  assert.is(sweep!.event, "xstate.after.sweepInterval.monitor.sweeping.waiting");
  assert.equal(sweep!.actions, ["collectReplies"]);
  const split = allTransitions(chart).find((t) => t.source === "monitor" && t.event === "SWEEP");
  assert.equal(split?.targets, [], "a SWEEP in any state is split over the shards");
  assert.equal(split?.actions, ["sweepShards"]);
  assert.ok(edge(chart, "monitor.registrations.loading", "REGISTRATIONS_LOADED", "monitor.registrations.running"));
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

test("charts - activeStateIds follows a real client actor through alive, suspect and dead, driven by its shard's sweeps", () => {
  const T = DEFAULT_MONITOR_TIMINGS;
  const clock = new SimulatedClock();
  const commands: Command[] = [];
  const root = setup({
    actors: { outbox: fromCallback<Command>(({ receive }) => receive((c) => commands.push(c))), shard: shardMachine },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      { src: "shard", systemId: "shard", input: { index: 0, shards: 1, timings: T } },
    ],
  });
  const actor = createActor(root, { clock }).start();
  const shard = actor.system.get("shard") as AnyActorRef;
  shard.send({ type: "REGISTER", records: [{ registration: { subject: "svc.a", metadata: {} }, revision: 1, atMs: 0 }] });
  const client = (shard.getSnapshot().context as { clients: Map<string, AnyActorRef> }).clients.get("svc.a")!;
  const chart = chartOf(clientMachine);
  const active = () => activeStateIds(chart, client.getSnapshot().value);
  /** Sweeps every sweep interval up to `untilMs` (no reply unless given), as the monitor would. */
  let now = 0;
  const sweepUntil = (untilMs: number, replies: { subject: string; atMs: number; rttMs: number }[] = []) => {
    while (now < untilMs) {
      now += T.sweepIntervalMs;
      clock.set(now);
      shard.send({ type: "SWEEP", atMs: now, stalledMs: 0, replies: replies.splice(0) });
    }
  };
  const pinged = () => commands.filter((c) => c.type === "clients.ping" && c.subjects.includes("svc.a")).length;

  assert.equal(active(), ["client", "client.alive"]);
  sweepUntil(T.pingIntervalMs);
  assert.is(pinged(), 1, "pinged within a ping interval of registering");
  assert.equal(active(), ["client", "client.alive"], "an outstanding ping changes nothing");
  sweepUntil(2 * T.pingIntervalMs);
  assert.equal(active(), ["client", "client.suspect"], "the ping went unanswered for a ping interval");
  assert.is(client.getSnapshot().context.missedPings, 1);
  sweepUntil(now + T.sweepIntervalMs, [{ subject: "svc.a", atMs: now, rttMs: 2 }]);
  assert.equal(active(), ["client", "client.alive"], "a reply while suspect: REPLIED");
  sweepUntil(now + T.deadTimeoutMs + T.sweepIntervalMs);
  assert.equal(activeStateIds(chart, client.getSnapshot().value), ["client", "client.dead"]);
  assert.is(client.getSnapshot().status, "done");
  assert.equal(
    commands.flatMap((c) => (c.type === "report.presence" ? [c.report.type] : [])),
    ["NodePresent", "NodeSuspect", "NodeRecovered", "NodeSuspect", "NodeDead"],
  );
  assert.throws(() => activeStateIds(chart, "leading"), /not a child of "client"/);
  assert.equal(activeStateIds(chartOf(MACHINES.monitor), { registrations: "running", sweeping: "waiting" }), [
    "monitor",
    "monitor.registrations",
    "monitor.registrations.running",
    "monitor.sweeping",
    "monitor.sweeping.waiting",
  ]);
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

test("charts - toDot uses clusters for compound and parallel states and attaches edges to their borders", () => {
  const monitor = toDot(chartOf(MACHINES.monitor));
  assert.match(monitor, /subgraph "cluster_monitor.registrations" \{/);
  assert.match(monitor, /subgraph "cluster_monitor.sweeping" \{/);
  const election = toDot(chartOf(MACHINES.election));
  assert.match(election, /compound=true/);
  assert.match(election, /lhead="cluster_election.candidate"/);
  assert.match(election, /ltail="cluster_election.leader"/);
  // The client's transitions in any state (DEAD_TIMEOUT, LEAVE) leave from an "in any state"
  // tail of their own, not from the initial dot (and the edge never crosses the border).
  const client = toDot(chartOf(clientMachine));
  assert.match(client, /"any:client" \[id="any:client", class="any"/);
  assert.match(client, /"any:client" -> "client\.left" \[[^\]]*label=<[^\n]*LEAVE/);
  assert.match(client, /"any:client" -> "client\.dead" \[[^\]]*label=<[^\n]*DEAD_TIMEOUT/);
  assert.not.match(client, /"initial:client" -> "client\.(left|dead)"/);
  assert.not.match(client, /ltail=/);
  assert.not.match(toDot(chartOf(MACHINES.monitor)), /"any:/, "only where a machine has such transitions");
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
      const source = t.source === chart.machineId ? "root" : local(t.source);
      for (const target of t.targets) assert.ok(mmd.includes(`${source} --> ${local(target)} : `), `${name}: ${t.source} -> ${target}`);
    }
  }
  // What the machine does in any state is on a declared pseudo-state, not lost.
  const client = toMermaid(chartOf(clientMachine));
  assert.match(
    client,
    /\n {2}state "client \(in any state\)" as root\n {2}root : entry \/ report\n {2}root : RESET \/ applyRegistration, applyFact, report\n/,
  );
  assert.match(client, /\n {2}root --> left : LEAVE \/ applyFact\n/);
  assert.match(toMermaid(chartOf(MACHINES.monitor)), /\n {2}root : SWEEP \/ sweepShards\n/);
});

test("charts - the diagrams in visualizations/ are up to date (npm run viz)", async () => {
  const stale = await checkVisualizations(VISUALIZATIONS_DIR);
  assert.equal(stale, [], `out of date: ${stale.join(", ")}; run npm run viz`);
});

test.run();
