/**
 * The monitor, its shards and the client actors on a SimulatedClock, with a recording
 * outbox in place of the driver. No NATS.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config.js";
import type { Command, RegistrationRecord } from "../../src/machines/commands.js";
import { monitorMachine, type MonitorEvent } from "../../src/machines/monitor.js";
import { shardOf } from "../../src/machines/shard.js";
import type { ClientReport, ReportType } from "../../src/protocol/presence.js";

const P = DEFAULT_MONITOR_TIMINGS; // ping 750, dead 5000, state 1500

/** A root that runs a recording outbox and the monitor, as the election machine does. */
function presence(shardCount = 4) {
  const clock = new SimulatedClock();
  const log: { at: number; command: Command }[] = [];
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) => receive((command) => log.push({ at: clock.now(), command }))),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      { src: "monitor", id: "monitor", systemId: "monitor", input: { settings: { ...P, shardCount } } },
    ],
  });
  const actor = createActor(root, { clock }).start();
  const monitor = () => actor.system.get("monitor") as AnyActorRef;
  let revision = 100;
  const h = {
    clock,
    log,
    send: (event: MonitorEvent) => monitor().send(event),
    advance: (ms: number) => {
      for (let i = 0; i < ms; i++) clock.increment(1);
    },
    record: (subject: string, metadata = {}): RegistrationRecord => ({
      registration: { subject, metadata },
      revision: ++revision,
      atMs: 1_000_000 + clock.now(),
    }),
    load: (...subjects: string[]) =>
      h.send({ type: "REGISTRATIONS_LOADED", records: subjects.map((s) => h.record(s)) }),
    register: (subject: string, metadata = {}) => h.send({ type: "REGISTERED", record: h.record(subject, metadata) }),
    pong: (subject: string, rttMs = 2) => h.send({ type: "PONG", subject, atMs: 1_000_000 + clock.now(), rttMs }),
    reports: (subject?: string): (ClientReport & { at: number })[] =>
      log.flatMap((e) =>
        e.command.type === "report.presence" && (subject === undefined || e.command.report.clientSubject === subject)
          ? [{ ...e.command.report, at: e.at }]
          : [],
      ),
    types: (subject?: string): ReportType[] => h.reports(subject).map((r) => r.type),
    pings: (subject: string) =>
      log.filter((e) => e.command.type === "client.ping" && e.command.subject === subject).map((e) => e.at),
    commandTypes: () => log.map((e) => e.command.type),
    /** The subjects of each shard actor's client children, by shard actor id. */
    shards: (): Record<string, string[]> =>
      Object.fromEntries(
        Object.entries(monitor().getSnapshot().children as Record<string, AnyActorRef>).map(([id, shard]) => [
          id,
          Object.keys(shard.getSnapshot().children),
        ]),
      ),
    clientCount: () => {
      const shards = Object.values(monitor().getSnapshot().children) as AnyActorRef[];
      return shards.reduce((n, s) => n + Object.keys(s.getSnapshot().children).length, 0);
    },
    /** Answers every ping of `subject` right away from now on, for `ms`. */
    answerFor(subject: string, ms: number) {
      for (let i = 0; i < ms; i++) {
        const before = log.length;
        h.advance(1);
        if (log.slice(before).some((e) => e.command.type === "client.ping" && e.command.subject === subject)) h.pong(subject);
      }
    },
  };
  return h;
}

test("monitor - loads stored registrations before it pulls new ones", () => {
  const p = presence();
  assert.equal(p.commandTypes(), ["registrations.load"], "the first and only command is the load");
  p.advance(10_000);
  assert.equal(p.commandTypes(), ["registrations.load"], "nothing is pulled while the load is outstanding");
  p.load("a", "b", "c");
  const types = p.commandTypes();
  assert.equal(types.slice(0, 4), ["registrations.load", "report.presence", "report.presence", "report.presence"]);
  assert.is(types[4], "registrations.pull", "pulling starts only after every stored client is monitored");
  assert.equal(p.types().sort(), ["NodePresent", "NodePresent", "NodePresent"]);
  assert.is(p.clientCount(), 3);
});

test("monitor - a load in parts monitors each part at once, and pulls only after the last", () => {
  const p = presence();
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["a", "b"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 2, "the first part is monitored at once");
  assert.equal(p.types(), ["NodePresent", "NodePresent"]);
  assert.not.ok(p.commandTypes().includes("registrations.pull"), "no pulling while parts are still coming");
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["c"].map((s) => p.record(s)) });
  p.send({ type: "REGISTRATIONS_LOADED", records: ["d"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 4);
  assert.is(p.commandTypes().at(-1), "registrations.pull", "pulling starts after the last part");
  // A part that comes after loading (it cannot, from the edge) changes nothing.
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["e"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 4);
});

test("client - a client that answers every ping stays alive and gets NodeState every state interval", () => {
  const p = presence();
  p.load();
  p.register("svc.a", { zone: "eu-1" });
  p.answerFor("svc.a", 6000);
  const pings = p.pings("svc.a");
  assert.ok(pings.length >= 7, `pinged about every ${P.pingIntervalMs} ms of quiet (saw ${pings.length})`);
  assert.is(pings[0], P.pingIntervalMs, "the first ping goes out one ping interval after registering");
  assert.equal(
    p.types("svc.a"),
    ["NodePresent", "NodeState", "NodeState", "NodeState", "NodeState"],
    "no suspicion, and a NodeState every 1500 ms",
  );
  const states = p.reports("svc.a").filter((r) => r.type === "NodeState");
  assert.equal(
    states.map((r) => r.at),
    [1500, 3000, 4500, 6000],
  );
  for (const r of p.reports("svc.a")) {
    assert.is(r.state, "alive");
    assert.equal(r.metadata, { zone: "eu-1" }, "metadata travels in every report");
  }
  assert.is(states.at(-1)!.rttMs, 2, "the last round-trip time is reported");
});

test("client - a silent client is suspect after a missed ping and dead at the dead timeout, once", () => {
  const p = presence();
  p.load("svc.quiet");
  p.advance(20_000);
  const reports = p.reports("svc.quiet");
  assert.equal(
    reports.map((r) => `${r.at} ${r.type} ${r.state} missed=${r.missedPings}`),
    [
      "0 NodePresent alive missed=0",
      "1500 NodeState alive missed=0",
      "1500 NodeSuspect suspect missed=1",
      "3000 NodeState suspect missed=2",
      "4500 NodeState suspect missed=4",
      "5000 NodeDead dead missed=5",
    ],
  );
  // Pinged at 750 (missed at 1500), then every ping interval while suspect, until dead.
  assert.equal(p.pings("svc.quiet"), [750, 1500, 2250, 3000, 3750, 4500]);
  const removals = p.log.filter((e) => e.command.type === "registration.remove");
  assert.equal(
    removals.map((e) => e.command),
    [{ type: "registration.remove", subject: "svc.quiet", revision: 101 }],
    "the dead client's registration is removed, against its revision",
  );
  assert.is(p.clientCount(), 0, "the dead client's actor is stopped");
});

test("client - a suspect client that replies is reported recovered", () => {
  const p = presence();
  p.load("svc.flaky");
  p.advance(1600); // missed the first ping: suspect at 1500
  assert.is(p.types("svc.flaky").at(-1), "NodeSuspect");
  p.pong("svc.flaky", 7);
  const last = p.reports("svc.flaky").at(-1)!;
  assert.equal([last.type, last.state, last.missedPings, last.rttMs], ["NodeRecovered", "alive", 0, 7]);
  p.answerFor("svc.flaky", 8000);
  assert.not.ok(p.types("svc.flaky").includes("NodeDead"), "a client that replies again is never dead");
  // Flapping: silent again, suspect again, recovered again.
  p.advance(1600);
  p.pong("svc.flaky");
  assert.equal(
    p.types("svc.flaky").filter((t) => t !== "NodeState"),
    ["NodePresent", "NodeSuspect", "NodeRecovered", "NodeSuspect", "NodeRecovered"],
  );
});

test("client - a ping that fails at once (no responders) is a missed ping, not instant death", () => {
  const p = presence();
  p.load("svc.gone");
  // The edge turns a no-responders error into nothing at all: the client actor only ever
  // learns of activity. So right after the failing ping the client is still alive...
  p.advance(P.pingIntervalMs + 1);
  assert.equal(p.types("svc.gone"), ["NodePresent"]);
  // ...suspect one ping interval later, and dead only at the dead timeout.
  p.advance(P.pingIntervalMs);
  assert.is(p.types("svc.gone").at(-1), "NodeSuspect");
  p.advance(P.deadTimeoutMs - 2 * P.pingIntervalMs - 2);
  assert.not.ok(p.types("svc.gone").includes("NodeDead"));
  p.advance(1);
  assert.is(p.types("svc.gone").at(-1), "NodeDead");
});

test("client - registering again replaces the metadata and reports NodePresent, but proves no life: a suspect client stays suspect and dies on time", () => {
  const p = presence();
  p.load("svc.r");
  p.advance(1600);
  assert.is(p.types("svc.r").at(-1), "NodeSuspect");
  p.register("svc.r", { restart: 1 });
  assert.is(p.clientCount(), 1, "never a second actor for the same subject");
  const present = p.reports("svc.r").at(-1)!;
  assert.equal([present.type, present.state, present.missedPings], ["NodePresent", "suspect", 1]);
  assert.equal(present.metadata, { restart: 1 });
  // Registrations every second (someone else re-registering a dead client's subject) do not
  // move its dead timer: it dies at the dead timeout after its last reply, reported once.
  let now = 1600;
  while (now + 1000 < P.deadTimeoutMs) {
    p.advance(1000);
    now += 1000;
    p.register("svc.r", { restart: now });
  }
  p.advance(P.deadTimeoutMs - 1 - now);
  assert.not.ok(p.types("svc.r").includes("NodeDead"));
  p.advance(1);
  assert.is(p.types("svc.r").at(-1), "NodeDead");
  assert.is(p.reports("svc.r").filter((r) => r.type === "NodeDead").length, 1);
});

test("client - a client that registers again and replies recovers", () => {
  const p = presence();
  p.load("svc.back");
  p.advance(1600);
  assert.is(p.types("svc.back").at(-1), "NodeSuspect");
  p.register("svc.back", { build: 2 });
  p.pong("svc.back");
  assert.is(p.types("svc.back").at(-1), "NodeRecovered");
  assert.equal(p.reports("svc.back").at(-1)!.metadata, { build: 2 });
  p.advance(P.deadTimeoutMs - 1);
  assert.not.ok(p.types("svc.back").includes("NodeDead"));
});

test("client - a dead client that replies late stays dead until it registers again", () => {
  const p = presence();
  p.load("svc.late");
  p.advance(P.deadTimeoutMs);
  assert.is(p.types("svc.late").at(-1), "NodeDead");
  const count = p.reports("svc.late").length;
  p.pong("svc.late");
  p.advance(3000);
  assert.is(p.reports("svc.late").length, count, "nothing after NodeDead");
  p.register("svc.late");
  assert.is(p.types("svc.late").at(-1), "NodePresent");
  assert.is(p.clientCount(), 1);
});

test("client - an unregistering client is reported left, and nothing follows", () => {
  const p = presence();
  p.load("svc.bye");
  p.advance(100);
  p.send({ type: "UNREGISTERED", subject: "svc.bye" });
  assert.is(p.types("svc.bye").at(-1), "NodeLeft");
  assert.is(p.reports("svc.bye").at(-1)!.state, "left");
  const count = p.reports("svc.bye").length;
  const pings = p.pings("svc.bye").length;
  p.advance(10_000);
  assert.is(p.reports("svc.bye").length, count);
  assert.is(p.pings("svc.bye").length, pings, "a client that left is not pinged");
  assert.is(p.clientCount(), 0);
  // An unregistration of an unknown subject changes nothing.
  p.send({ type: "UNREGISTERED", subject: "svc.never" });
  assert.is(p.reports("svc.never").length, 0);
});

test("monitor - clients are spread over the shards, and spawning 2,000 keeps each one distinct", () => {
  const p = presence(16);
  const subjects = Array.from({ length: 2000 }, (_, i) => `fleet.node-${i}`);
  p.load(...subjects);
  assert.is(p.clientCount(), 2000);
  assert.is(p.types().filter((t) => t === "NodePresent").length, 2000);
  // Where the monitor really put them: each shard actor's children.
  const shards = p.shards();
  assert.equal(Object.keys(shards), Array.from({ length: 16 }, (_, i) => `shard-${i}`), "16 shard actors");
  const perShard = Object.values(shards).map((children) => children.length);
  assert.ok(Math.min(...perShard) > 60 && Math.max(...perShard) < 200, `an even spread: ${perShard.join(",")}`);
  const placed = Object.values(shards).flat();
  assert.is(placed.length, 2000, "every client has one actor");
  assert.equal(new Set(placed), new Set(subjects), "in exactly one shard each");
  // Each sits in the shard that its ping replies and its unregistration are routed to.
  for (const [id, children] of Object.entries(shards)) {
    const misplaced = children.filter((subject) => `shard-${shardOf(subject, 16)}` !== id);
    assert.equal(misplaced, [], `${id} holds only its own subjects`);
  }
  // Duplicates within one load count once.
  const q = presence(4);
  q.load("dup.a", "dup.a", "dup.b");
  assert.is(q.clientCount(), 2);
});

test.run();
