/**
 * The inspection hub on the real monitor, shards and client actors (SimulatedClock,
 * recording outbox, no NATS), and the inspector server's HTTP and WebSocket edges.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import WebSocket from "ws";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS, type CoordinatorConfig } from "../../src/config/config.js";
import { electionInputFor } from "../../src/election/election-driver.js";
import { electionMachine } from "../../src/machines/election.js";
import type { ClientContext } from "../../src/machines/client.js";
import type { Command, RegistrationRecord } from "../../src/machines/commands.js";
import type { ReplyFact } from "../../src/machines/liveness.js";
import { monitorMachine, type MonitorEvent } from "../../src/machines/monitor.js";
import { shardOf } from "../../src/machines/shard.js";
import { InspectionHub } from "../../src/observe/inspect/inspection.js";
import type { View } from "../../src/observe/inspect/view-types.js";
import { sanitizeContext } from "../../src/observe/inspect/inspector.js";
import { InspectorServer } from "../../src/observe/inspect/inspector-server.js";
import { parseViewMessage } from "../../src/observe/inspect/page-message.js";
import { createLogger } from "../../src/observe/logger.js";

const P = DEFAULT_MONITOR_TIMINGS;

/** The monitor under a root with a recording outbox, inspected by a hub, on a SimulatedClock. */
function inspectedMonitor(shardCount: number) {
  const clock = new SimulatedClock();
  const hub = new InspectionHub({ coordinatorId: "c1", clusterId: "t", now: () => clock.now() });
  const commands: Command[] = [];
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) => receive((c) => commands.push(c))),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", id: "outbox", systemId: "outbox" },
      { src: "monitor", id: "monitor", systemId: "monitor", input: { settings: { ...P, shardCount } } },
    ],
  });
  const actor = createActor(root, { clock, inspect: hub.inspect }).start();
  const monitor = () => actor.system.get("monitor") as AnyActorRef;
  let revision = 0;
  const record = (subject: string): RegistrationRecord => ({
    registration: { subject, metadata: {} },
    revision: ++revision,
    atMs: 1_000_000 + clock.now(),
  });
  /** Replies read since the last sweep, as the edge keeps them. */
  const pending: ReplyFact[] = [];
  /** Commands the edge has acted on (pings a SWEEP sends are answered in the same step). */
  let seen = 0;
  return {
    clock,
    hub,
    commands,
    /** Every SWEEP the edge answered with. */
    sweeps: [] as Extract<MonitorEvent, { type: "SWEEP" }>[],
    send: (e: MonitorEvent) => monitor().send(e),
    load: (subjects: string[]) => monitor().send({ type: "REGISTRATIONS_LOADED", records: subjects.map(record) }),
    shardContext: (index: number) =>
      (monitor().getSnapshot().children[`shard-${index}`] as AnyActorRef).getSnapshot().context as Record<string, unknown>,
    /** A client actor's own context (what it heard), not the hub's view of it. */
    clientContext(subject: string, shardCount: number): ClientContext {
      const shard = monitor().getSnapshot().children[`shard-${shardOf(subject, shardCount)}`] as AnyActorRef;
      const clients = (shard.getSnapshot().context as { clients: Map<string, AnyActorRef> }).clients;
      return clients.get(subject)!.getSnapshot().context as ClientContext;
    },
    /**
     * Advances the clock in steps of 5 ms, acting as the edge: every client in `answering`
     * replies to each of its pings within the step (rtt 1.5 ms), and each replies.collect is
     * answered with one SWEEP carrying the replies since the last one.
     */
    advance(ms: number, answering: Set<string> = new Set()) {
      for (let t = 0; t < ms; t += 5) {
        clock.increment(5);
        const atMs = 1_000_000 + clock.now();
        for (; seen < commands.length; seen++) {
          const c = commands[seen]!;
          if (c.type === "clients.ping") {
            for (const subject of c.subjects) if (answering.has(subject)) pending.push({ subject, atMs, rttMs: 1.5 });
          } else if (c.type === "replies.collect") {
            const sweep = { type: "SWEEP" as const, atMs, stalledMs: 0, replies: pending.splice(0) };
            this.sweeps.push(sweep);
            monitor().send(sweep);
          }
        }
      }
    },
  };
}

test("inspection - at 10,000 clients a view carries one page of rows, every shard's count, and a bounded, sampled event list", () => {
  const m = inspectedMonitor(256);
  const subjects = Array.from({ length: 10_000 }, (_, i) => `load.client-${String(i).padStart(5, "0")}`);
  // A new leader's takeover: 10,000 NodePresent reports at once.
  m.load(subjects);
  const view = m.hub.view({});
  assert.is(view.counts.total, 10_000);
  assert.is(view.counts.alive, 10_000);
  assert.is(view.clients.total, 10_000);
  assert.is(view.clients.rows.length, 100, "one page of rows");
  assert.is(view.clients.rows[0]!.subject, "load.client-00000");
  assert.is(view.shards.length, 256);
  assert.is(
    view.shards.reduce((n, s) => n + s.clients, 0),
    10_000,
    "the shard counts add up to every client",
  );
  const presentReports = m.commands.filter((c) => c.type === "report.presence").length;
  assert.is(presentReports, 10_000);
  assert.ok(view.events.length <= 400, `the event ring is bounded (${view.events.length})`);
  assert.ok(view.events.filter((e) => e.type === "NodePresent").length <= 200, "a burst is kept only up to the budget");
  assert.ok(view.rates.sampled || view.rates.eventsPerSecond === 0, "the rest is counted, not kept");
  const size = JSON.stringify(view).length;
  assert.ok(size < 250_000, `a view stays small at 10,000 clients (${size} bytes)`);
  const page2 = m.hub.view({ clients: { offset: 9_950 } });
  assert.is(page2.clients.rows.length, 50);
  assert.is(page2.clients.rows[49]!.subject, "load.client-09999");
});

/**
 * A coordinator with three partitions as the hub sees it: three election actor systems on one
 * observer, created in partition order as the coordinator does. Partitions 0 and 2 lead (their
 * lease create answered), partition 1 follows another coordinator.
 */
function inspectedPartitions() {
  const clock = new SimulatedClock();
  const hub = new InspectionHub({ coordinatorId: "me", clusterId: "t", now: () => clock.now() });
  const config = { ...DEFAULT_TIMINGS, ...DEFAULT_MONITOR_TIMINGS, coordinatorId: "me", seed: 5, shardCount: 8 } as CoordinatorConfig;
  const systems = [0, 1, 2].map((p) => {
    const commands: Command[] = [];
    const machine = electionMachine.provide({
      actors: { outbox: fromCallback<Command>(({ receive }) => receive((c) => commands.push(c))) },
    });
    return { commands, actor: createActor(machine, { clock, inspect: hub.inspect, input: electionInputFor(config, p) }) };
  });
  for (const { actor } of systems) actor.start();
  const heartbeat = () => systems[1]!.actor.send({ type: "HEARTBEAT", coordinatorId: "other", epoch: 5, resigning: false });
  // In steps: a timer set by a timer that fires (the backoff after the leader timeout) fires in a later step.
  for (let t = 0; t < config.leaderTimeoutMs + config.electionBackoffMaxMs + 100; t += 50) {
    if (t % config.heartbeatIntervalMs === 0) heartbeat();
    clock.increment(50);
  }
  for (const p of [0, 2]) {
    const { actor, commands } = systems[p]!;
    assert.ok(
      commands.some((c) => c.type === "lease.create"),
      `partition ${p} stands`,
    );
    actor.send({ type: "LEASE_CREATED", epoch: 10 + p, revision: 10 + p, latencyMs: 1 });
  }
  const load = (p: number, subjects: string[]) =>
    (systems[p]!.actor.system.get("monitor") as AnyActorRef).send({
      type: "REGISTRATIONS_LOADED",
      records: subjects.map((subject, i) => ({ registration: { subject, metadata: {} }, revision: i + 1, atMs: 1_000_000 })),
    });
  load(0, ["p0.a", "p0.b"]);
  load(2, ["p2.a"]);
  return { clock, hub, systems };
}

test("inspection - with several partitions the tree is balancer → each partition's election → its monitor → shards → clients", () => {
  const { hub, systems } = inspectedPartitions();
  const view = hub.view({ select: "monitor.2" });
  const tree = view.tree!;
  assert.equal([tree.key, tree.kind, tree.state], ["balancer", "balancer", "leads 2 of 3"]);
  const elections = tree.children!;
  assert.equal(
    elections.map((e) => [e.key, e.partition, e.detail]),
    [
      ["election.0", 0, "epoch 10"],
      ["election.1", 1, "other leads, epoch 5"],
      ["election.2", 2, "epoch 12"],
    ],
  );
  assert.is(elections[1]!.children, undefined, "no monitor where it follows");
  const monitor0 = elections[0]!.children![0]!;
  assert.equal([monitor0.key, monitor0.detail], ["monitor.0", "2 clients"]);
  const clients0 = monitor0.children!.flatMap((shard) => {
    assert.match(shard.key, /^shard-\d+\.0$/, "each partition's shard-N is its own");
    return shard.children!.map((c) => c.key);
  });
  assert.equal(clients0.sort(), ["client:p0.a", "client:p0.b"]);
  const monitor2 = elections[2]!.children![0]!;
  assert.equal(
    monitor2.children!.flatMap((s) => s.children!.map((c) => [c.key, c.partition])),
    [["client:p2.a", 2]],
  );
  // The header: a role per partition.
  assert.equal(
    view.coordinator.partitions!.map((p) => [p.partition, p.role, p.epoch, p.leaderId]),
    [
      [0, "leader", 10, "me"],
      [1, "follower", 5, "other"],
      [2, "leader", 12, "me"],
    ],
  );
  assert.is(view.coordinator.role, "leader");
  // Every partition's actor can be selected by its key; the shard grid and the table cover them all.
  assert.equal([view.selected!.key, view.selected!.kind, view.selected!.machine], ["monitor.2", "monitor", "monitor"]);
  assert.match(hub.view({ select: "election.1" }).selected!.state, /^follower/);
  assert.is(view.counts.total, 3);
  assert.equal(
    view.shards.reduce((n, s) => n + s.clients, 0),
    3,
  );
  assert.is(hub.view({ select: "client:p2.a" }).selected!.context.subject, "p2.a");
  // Events are shown under their partition's actor.
  const actors = new Set(hub.view({}).events.map((e) => e.actor));
  assert.ok(actors.has("election.0") && actors.has("election.2"), [...actors].join(", "));
  assert.not.ok(actors.has("election"), "no actor is named without its partition");
  for (const { actor } of systems) actor.stop();
});

test("inspection - with one partition the tree and keys are as they always were", () => {
  const m = inspectedMonitor(8);
  m.load(["one.a"]);
  const view = m.hub.view({ select: "monitor" });
  assert.is(view.coordinator.partitions, undefined);
  assert.equal(view.selected?.key, "monitor");
  assert.ok(m.hub.view({ select: `shard-${shardOf("one.a", 8)}` }).selected, "shard keys carry no partition");
});

const ROUTINE = new Set(["SWEEP", "replies.collect", "clients.ping", "NodeState", "after sweepInterval"]);

test("inspection - routine sweeps, pings and replies are counted per client and only sampled into the event list", () => {
  const m = inspectedMonitor(8);
  const subjects = Array.from({ length: 200 }, (_, i) => `r.c${i}`);
  m.load(subjects);
  m.advance(3000, new Set(subjects));
  const view = m.hub.view({});
  const pings = m.commands.flatMap((c) => (c.type === "clients.ping" ? c.subjects : []));
  assert.ok(pings.length >= 400, `every client was pinged (${pings.length})`);
  const replies = m.sweeps.reduce((n, s) => n + s.replies.length, 0);
  assert.ok(replies >= 400, `and replied (${replies})`);
  const routine = view.events.filter((e) => ROUTINE.has(e.type));
  assert.ok(routine.length > 0, "some routine events are kept");
  assert.ok(routine.length <= 4 * 4, `sweeps, pings and replies are sampled: at most the budget of 4 a second (${routine.length})`);
  assert.ok(view.rates.sampled);
  // Per client, not per batch: 3 s of counts, as the page shows them.
  const rate = (type: string) => view.rates.byType.find((t) => t.type === type)?.perSecond ?? 0;
  assert.is(rate("ping"), Math.round((pings.length / 3) * 10) / 10, "the ping rate counts every client pinged");
  assert.is(rate("reply"), Math.round((replies / 3) * 10) / 10, "the reply rate counts every reply in the sweeps");
  assert.ok(rate("SWEEP") > 0 && rate("SWEEP") < rate("reply"), "the sweep events are counted too, and are fewer than the replies");
  assert.ok(rate("replies.collect") > 0 && rate("after sweepInterval") > 0);
});

test("inspection - a sweep with nothing in it is only counted, a stalled one is always listed, and the selected monitor's are kept", () => {
  const m = inspectedMonitor(64);
  m.load(["i.one", "i.two"]);
  m.advance(3000, new Set(["i.one", "i.two"]));
  let view = m.hub.view({});
  const idle = view.events.filter(
    (e) => e.type === "replies.collect" || e.type === "after sweepInterval" || (e.type === "SWEEP" && e.detail === "0 replies"),
  );
  assert.equal(idle, [], "62 of 64 shards have no client: their sweeps do not crowd the list");
  const sweeps = view.events.filter((e) => e.type === "SWEEP");
  assert.ok(sweeps.length > 0 && sweeps.every((e) => /^[12] repl(y|ies)/.test(e.detail)), "the sweeps with replies are sampled");
  // The monitor's SWEEP and one per shard that has clients (a shard without any gets none).
  const busyShards = new Set(["i.one", "i.two"].map((s) => shardOf(s, 64))).size;
  const sweepRate = view.rates.byType.find((t) => t.type === "SWEEP")?.perSecond ?? 0;
  assert.ok(
    sweepRate >= (1 + busyShards) * 19 && sweepRate <= (1 + busyShards) * 21,
    `every sweep is counted, and only shards with clients get one (${sweepRate}/s)`,
  );

  m.send({ type: "SWEEP", atMs: 1_000_000 + m.clock.now(), stalledMs: 250, replies: [] });
  view = m.hub.view({ afterSeq: view.lastSeq });
  const stalled = view.events.filter((e) => e.type === "SWEEP" && e.detail === "0 replies stalled 250ms (verdicts deferred)");
  assert.is(stalled.length, 1 + busyShards, "the monitor's and every busy shard's, outside the routine budget");

  m.hub.select("monitor");
  m.advance(200);
  view = m.hub.view({});
  const mine = view.selected!.events.map((e) => e.type);
  assert.ok(mine.filter((t) => t === "replies.collect").length >= 3, mine.join(", "));
  assert.ok(mine.filter((t) => t === "after sweepInterval").length >= 3);
  assert.ok(mine.filter((t) => t === "SWEEP").length >= 3);
  assert.ok(
    view.selected!.events.every((e) => e.type !== "SWEEP" || e.actor === "monitor" || e.detail !== "0 replies"),
    "not its empty SWEEP to each shard",
  );
});

test("inspection - every event of the selected client is kept, while the others' are sampled", () => {
  const m = inspectedMonitor(8);
  const subjects = Array.from({ length: 200 }, (_, i) => `s.c${i}`);
  m.load(subjects);
  m.hub.select("client:s.c7");
  m.advance(4000, new Set(subjects));
  const view = m.hub.view({});
  const selected = view.selected!;
  assert.is(selected.kind, "client");
  assert.is(selected.machine, "client");
  assert.is(selected.context.subject, "s.c7");
  // Its pings, replies and NodeState travel in batches with other clients': each batch that names it is its event.
  const pingsOfSelected = m.commands.filter((c) => c.type === "clients.ping" && c.subjects.includes("s.c7")).length;
  const repliesOfSelected = m.sweeps.filter((s) => s.replies.some((r) => r.subject === "s.c7")).length;
  const statesOfSelected = m.commands.filter((c) => c.type === "reports.state" && c.reports.some((r) => r.clientSubject === "s.c7")).length;
  assert.ok(
    pingsOfSelected >= 2 && repliesOfSelected >= 2 && statesOfSelected >= 1,
    `${pingsOfSelected} ${repliesOfSelected} ${statesOfSelected}`,
  );
  const ofType = (type: string) => selected.events.filter((e) => e.type === type);
  assert.is(ofType("clients.ping").length, pingsOfSelected, "every ping of the selected client");
  assert.ok(
    ofType("clients.ping").every((e) => e.channel === "command" && e.actor.startsWith("shard-")),
    "sent by its shard",
  );
  assert.is(ofType("SWEEP").length, repliesOfSelected, "every reply of the selected client, once (its shard's SWEEP, not the monitor's)");
  assert.ok(
    ofType("SWEEP").every((e) => / s\.c7 replied rtt=1\.5ms/.test(e.detail)),
    ofType("SWEEP")[0]?.detail,
  );
  assert.ok(
    ofType("SWEEP").every((e) => e.actor === `shard-${shardOf("s.c7", 8)}`),
    "to its shard",
  );
  assert.is(ofType("NodeState").length, statesOfSelected, "every NodeState of the selected client");
  assert.ok(
    ofType("NodeState").every((e) => e.channel === "report" && e.detail.startsWith("s.c7 state=alive")),
    ofType("NodeState")[0]?.detail,
  );
  assert.ok(
    selected.events.every((e) => e.actor === "client:s.c7" || e.detail.includes("s.c7")),
    "only its own events",
  );
  const otherPings = view.events.filter((e) => e.type === "clients.ping" && !e.detail.includes("s.c7")).length;
  const allPings = m.commands.filter((c) => c.type === "clients.ping").length;
  assert.ok(otherPings <= 4 * 5, `the other clients' pings are sampled (${otherPings} of ${allPings})`);
});

test("inspection - a client's row shows its latest reply from its shard's table, though its actor heard nothing", () => {
  const m = inspectedMonitor(4);
  m.load(["q.one"]);
  const registeredAt = m.clientContext("q.one", 4).lastSeenMs;
  m.hub.select("client:q.one");
  m.advance(2 * P.pingIntervalMs, new Set(["q.one"]));
  const replies = m.sweeps.flatMap((s) => s.replies);
  assert.ok(replies.length >= 1, "it replied");
  const last = replies.at(-1)!;
  assert.ok(last.atMs > registeredAt);
  const view = m.hub.view({});
  const row = view.clients.rows.find((r) => r.subject === "q.one")!;
  assert.equal([row.state, row.machineState, row.lastSeenMs, row.rttMs, row.missedPings], ["alive", "alive", last.atMs, 1.5, 0]);
  // The actor itself heard no event since its registration: it keeps its registration's time.
  assert.is(m.clientContext("q.one", 4).lastSeenMs, registeredAt);
  assert.is(
    view.selected!.events.filter((e) => e.channel === "event" && e.actor === "client:q.one").length,
    0,
    "no event reached the actor",
  );
  // The selected client's context, as the page shows it, is as fresh as its row.
  assert.is(view.selected!.context.lastSeen, new Date(last.atMs).toISOString());
  assert.is(view.selected!.context.rttMs, 1.5);
});

test("inspection - a dead client stays in the table; filtering, sorting and paging happen in the hub", () => {
  const m = inspectedMonitor(4);
  m.load(["b.two", "a.one", "c.three", "d.four"]);
  m.advance(P.deadTimeoutMs + P.pingIntervalMs, new Set(["a.one", "b.two", "d.four"]));
  let view: View = m.hub.view({});
  assert.equal(
    view.clients.rows.map((r) => [r.subject, r.state, r.live]),
    [
      ["a.one", "alive", true],
      ["b.two", "alive", true],
      ["c.three", "dead", false],
      ["d.four", "alive", true],
    ],
  );
  assert.is(view.counts.dead, 1);
  const dead = view.clients.rows.find((r) => r.subject === "c.three")!;
  assert.is(dead.machineState, "dead");
  assert.is(dead.missedPings >= 5, true);

  view = m.hub.view({ clients: { state: "dead" } });
  assert.equal(
    view.clients.rows.map((r) => r.subject),
    ["c.three"],
  );
  view = m.hub.view({ clients: { text: "O", sort: "subject", descending: true } });
  assert.equal(
    view.clients.rows.map((r) => r.subject),
    ["d.four", "b.two", "a.one"],
    "case-insensitive filter, reverse order",
  );
  view = m.hub.view({ clients: { offset: 2, limit: 1 } });
  assert.equal(
    view.clients.rows.map((r) => r.subject),
    ["c.three"],
  );
  assert.is(view.clients.total, 4);

  // The dead client's chart state can still be shown.
  view = m.hub.view({ select: "client:c.three" });
  assert.is(view.selected?.state, "dead");
  assert.is(view.selected?.status, "done");
  const reports = view.events.filter((e) => e.channel === "report").map((e) => `${e.type} ${e.actor}`);
  assert.ok(reports.includes("NodeDead client:c.three"), `the NodeDead report is listed under its client (${reports.join(", ")})`);
});

test("inspector - a shard's client map and liveness table are shown and sent as counts, not their contents", () => {
  const m = inspectedMonitor(1);
  m.load(["t.one", "t.two", "t.three"]);
  assert.equal(sanitizeContext(m.shardContext(0)), { index: 0, clients: "3 client actors", liveness: "3 clients in the liveness table" });
  assert.equal(m.hub.view({ select: "shard-0" }).selected!.context, { index: 0, clients: "3 actors", liveness: "3 clients" });
});

test("inspection - the page's messages are validated", () => {
  assert.type(parseViewMessage(null), "string");
  assert.type(parseViewMessage({ type: "other" }), "string");
  const ok = parseViewMessage({
    type: "view",
    coordinator: "c1",
    select: "monitor",
    clients: { state: "suspect", sort: "bogus", limit: 50, text: 3 },
  });
  assert.equal(ok, { coordinatorId: "c1", request: { select: "monitor", expandShard: null, clients: { state: "suspect", limit: 50 } } });
});

const quiet = createLogger({ format: "json", verbose: false, level: "error" });

test("inspector server - serves the page and the charts, and streams views over a WebSocket", async () => {
  const server = await InspectorServer.start({ host: "127.0.0.1", port: 0, logger: quiet });
  try {
    const m = inspectedMonitor(4);
    server.addHub(m.hub);
    m.load(["x.one"]);
    const page = await fetch(server.url);
    assert.is(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="\/app.js">/);
    for (const path of ["app.js", "style.css"]) assert.is((await fetch(`${server.url}${path}`)).status, 200, path);
    const chart = await fetch(`${server.url}chart/client.svg`);
    assert.is(chart.status, 200);
    assert.match(await chart.text(), /id="state:client\.suspect"/);
    assert.is((await fetch(`${server.url}chart/nope.svg`)).status, 404);

    const ws = new WebSocket(`${server.url.replace("http", "ws")}ws`);
    const views: { view: View | null }[] = [];
    ws.on("message", (d) => views.push(JSON.parse(String(d)) as { view: View | null }));
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    ws.send(JSON.stringify({ type: "view", select: "client:x.one" }));
    const deadline = Date.now() + 3000;
    while (!views.some((v) => v.view?.selected?.key === "client:x.one") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const last = views.find((v) => v.view?.selected?.key === "client:x.one")!;
    assert.ok(last, "a view of the selected client arrives");
    assert.is(last.view!.coordinator.coordinatorId, "c1");
    assert.is(last.view!.clients.rows[0]!.subject, "x.one");
    ws.close();
  } finally {
    await server.stop();
  }
});

test("inspector server - refuses another Host (DNS rebinding) and WebSockets opened by another site", async () => {
  const server = await InspectorServer.start({ host: "127.0.0.1", port: 0, logger: quiet });
  try {
    const port = server.port;
    const { request } = await import("node:http");
    const status = await new Promise<number | undefined>((resolve, reject) =>
      request({ host: "127.0.0.1", port, path: "/", headers: { host: `evil.example:${port}` } }, (res) => resolve(res.statusCode))
        .on("error", reject)
        .end(),
    );
    assert.is(status, 403);
    const refused = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: "http://evil.example" } });
      ws.on("open", () => resolve("open"));
      ws.on("unexpected-response", (_req, res) => resolve(String(res.statusCode)));
      ws.on("error", () => resolve("error"));
    });
    assert.is(refused, "403");
    const sameOrigin = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { origin: `http://127.0.0.1:${port}` } });
    await new Promise((resolve, reject) => sameOrigin.once("open", resolve).once("error", reject));
    sameOrigin.close();
  } finally {
    await server.stop();
  }
});

test("inspector server - a port in use is a clear error", async () => {
  const first = await InspectorServer.start({ host: "127.0.0.1", port: 0, logger: quiet });
  try {
    await InspectorServer.start({ host: "127.0.0.1", port: first.port, logger: quiet }).then(
      () => assert.unreachable("a second server on the same port must fail"),
      (err: Error) =>
        assert.match(err.message, new RegExp(`inspector: port ${first.port} on 127.0.0.1 is in use; pass another with --inspect=<port>`)),
    );
  } finally {
    await first.stop();
  }
});

test.run();
