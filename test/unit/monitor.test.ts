/**
 * The monitor, its shards and the client actors on a SimulatedClock, with a recording
 * outbox in place of the edge. No NATS.
 *
 * The outbox answers `replies.collect` as the edge does: with one SWEEP whose `atMs` is the
 * simulated time (on a wall clock that starts at T0) and whose replies are the ones read
 * since the last SWEEP. A client the test marks as answering replies to each of its pings
 * `rttMs` later; the test can also queue replies itself, and stall the event loop.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef, type InspectionEvent } from "xstate";
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config/config.js";
import { clientMachine } from "../../src/machines/client.js";
import type { Command, RegistrationRecord } from "../../src/machines/commands.js";
import type { LivenessTable, ReplyFact } from "../../src/machines/liveness.js";
import { monitorMachine, type MonitorEvent } from "../../src/machines/monitor.js";
import { shardOf } from "../../src/machines/shard.js";
import type { ClientReport, ReportType } from "../../src/protocol/presence.js";

const P = DEFAULT_MONITOR_TIMINGS; // ping 750, dead 5000, state 1500, sweep 50
/** Wall-clock ms at simulated time 0: every `atMs` is T0 + the simulated time. */
const T0 = 1_700_000_000_000;
/** A sweep asked this much later than its interval says the loop stalled (as the edge does). */
const STALL_THRESHOLD_MS = 100;

const isClient = (ref: unknown): ref is AnyActorRef => (ref as { logic?: unknown } | undefined)?.logic === clientMachine;

interface Options {
  shardCount?: number;
  sweepIntervalMs?: number;
}

/** A root that runs the recording outbox and the monitor, as the election machine does. */
function presence({ shardCount = 4, sweepIntervalMs = P.sweepIntervalMs }: Options = {}) {
  const settings = { ...P, sweepIntervalMs, shardCount };
  const clock = new SimulatedClock();
  const wall = () => T0 + clock.now();
  const log: { at: number; command: Command }[] = [];
  const sweeps: { at: number; stalledMs: number; replies: ReplyFact[] }[] = [];
  /** Replies on their way: each goes out with the first SWEEP at or after its `atMs`. */
  let inFlight: ReplyFact[] = [];
  /** Subjects that answer every ping, with their round trip. */
  const answering = new Map<string, number>();
  let lastAsk: number | null = null;
  const edge = { flagStalls: true };
  /** Every event delivered to a client actor, and every timer a client actor set. */
  const clientEvents: { at: number; subject: string; type: string }[] = [];
  const clientTimers: string[] = [];

  const collect = () => {
    const now = clock.now();
    const late = lastAsk === null ? 0 : now - lastAsk - sweepIntervalMs;
    lastAsk = now;
    const stalledMs = edge.flagStalls && late > STALL_THRESHOLD_MS ? late : 0;
    const replies = inFlight.filter((r) => r.atMs <= wall());
    inFlight = inFlight.filter((r) => r.atMs > wall());
    sweeps.push({ at: now, stalledMs, replies });
    monitor().send({ type: "SWEEP", atMs: wall(), stalledMs, replies });
  };
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) =>
        receive((command) => {
          log.push({ at: clock.now(), command });
          if (command.type === "replies.collect") collect();
          if (command.type === "clients.ping") {
            // As the edge does: each reply brings back the key its ping carried.
            command.subjects.forEach((subject, i) => {
              const rtt = answering.get(subject);
              if (rtt !== undefined) inFlight.push({ subject, key: command.keys[i]!, atMs: wall() + rtt, rttMs: rtt });
            });
          }
        }),
      ),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      { src: "monitor", id: "monitor", systemId: "monitor", input: { settings } },
    ],
  });
  const actor = createActor(root, {
    clock,
    inspect: (e: InspectionEvent) => {
      if (e.type === "@xstate.event" && isClient(e.actorRef)) {
        clientEvents.push({ at: clock.now(), subject: e.actorRef.id, type: e.event.type });
      }
    },
  });
  const scheduler = actor.system.scheduler;
  const schedule = scheduler.schedule.bind(scheduler);
  scheduler.schedule = (source, target, event, delay, id) => {
    if (isClient(source)) clientTimers.push(`${source.id}: ${event.type}`);
    schedule(source, target, event, delay, id);
  };
  actor.start();
  const monitor = () => actor.system.get("monitor") as AnyActorRef;
  const shardActors = () => Object.values(monitor().getSnapshot().children) as AnyActorRef[];
  /** A shard's client actors, by subject (the shard keeps them in its own map, not as children). */
  const clientsOf = (shard: AnyActorRef) => shard.getSnapshot().context.clients as Map<string, AnyActorRef>;
  let revision = 100;
  const h = {
    clock,
    log,
    sweeps,
    edge,
    clientEvents,
    clientTimers,
    wall,
    monitor,
    send: (event: MonitorEvent) => monitor().send(event),
    /** Lets simulated time run on, one ms at a time (every timer fires at its own time). */
    advance: (ms: number) => {
      for (let i = 0; i < ms; i++) clock.increment(1);
    },
    record: (subject: string, metadata = {}): RegistrationRecord => ({
      registration: { subject, metadata },
      revision: ++revision,
      atMs: wall(),
    }),
    load: (...subjects: string[]) => h.send({ type: "REGISTRATIONS_LOADED", records: subjects.map((s) => h.record(s)) }),
    register: (subject: string, metadata = {}) => h.send({ type: "REGISTERED", record: h.record(subject, metadata) }),
    /** `subject` answers every ping from now on, `rttMs` after it. */
    answer: (subject: string, rttMs = 2) => void answering.set(subject, rttMs),
    /** `subject` stops answering (replies on their way still arrive). */
    silence: (subject: string) => void answering.delete(subject),
    /** A reply of `subject`, read now: it goes out with the next SWEEP. */
    reply: (subject: string, rttMs = 2) => void inFlight.push({ subject, atMs: wall(), rttMs }),
    /**
     * The event loop stalls so that the next sweep comes `ms` late. Replies on their way were
     * waiting in the socket: they are read after the stall, and go with the late sweep (as
     * the edge does, reading before it answers) or, at worst, only with the one after.
     */
    stall: (ms: number, readIn: "late sweep" | "next sweep" = "next sweep") => {
      const due = lastAsk! + sweepIntervalMs + ms;
      const held = inFlight.length;
      inFlight = inFlight.map((r) => ({ ...r, atMs: T0 + due + (readIn === "late sweep" ? 0 : 1) }));
      clock.increment(due - clock.now());
      return held;
    },
    /** Lifecycle reports (report.presence), optionally of one subject. */
    reports: (subject?: string): (ClientReport & { at: number })[] =>
      log.flatMap((e) =>
        e.command.type === "report.presence" && (subject === undefined || e.command.report.clientSubject === subject)
          ? [{ ...e.command.report, at: e.at }]
          : [],
      ),
    types: (subject?: string): ReportType[] => h.reports(subject).map((r) => r.type),
    /** NodeState reports (reports.state), optionally of one subject. */
    states: (subject?: string): (ClientReport & { at: number })[] =>
      log.flatMap((e) =>
        e.command.type === "reports.state"
          ? e.command.reports.filter((r) => subject === undefined || r.clientSubject === subject).map((r) => ({ ...r, at: e.at }))
          : [],
      ),
    pings: (subject: string) =>
      log.filter((e) => e.command.type === "clients.ping" && e.command.subjects.includes(subject)).map((e) => e.at),
    /** The replies of `subject` that reached the monitor, in order. */
    delivered: (subject: string) => sweeps.flatMap((s) => s.replies.filter((r) => r.subject === subject)),
    commandTypes: () => log.map((e) => e.command.type),
    /** The subjects of each shard actor's client actors, by shard actor id. */
    shards: (): Record<string, string[]> => Object.fromEntries(shardActors().map((shard) => [shard.id, [...clientsOf(shard).keys()]])),
    tables: (): LivenessTable[] => shardActors().map((shard) => shard.getSnapshot().context.liveness as LivenessTable),
    clientCount: () => shardActors().reduce((n, s) => n + clientsOf(s).size, 0),
    /** Timers pending in the whole actor system, by the id of the actor that set them. */
    pendingTimers: () => Object.values(actor.system.getSnapshot()._scheduledEvents).map((e) => e.source.id),
  };
  return h;
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!);

test("monitor - loads stored registrations before it pulls new ones, and sweeps from the start", () => {
  const p = presence();
  assert.equal(p.monitor().getSnapshot().value, { registrations: "loading", sweeping: "waiting" });
  assert.equal(p.commandTypes(), ["registrations.load"], "the first command is the load");
  p.advance(10_000);
  const others = p.commandTypes().filter((t) => t !== "replies.collect");
  assert.equal(others, ["registrations.load"], "nothing is pulled while the load is outstanding");
  assert.is(p.sweeps.length, 10_000 / P.sweepIntervalMs, "the sweep runs while loading");
  assert.equal(p.monitor().getSnapshot().value, { registrations: "loading", sweeping: "waiting" });
  const before = p.log.length;
  p.load("a", "b", "c");
  const types = p.log.slice(before).map((e) => e.command.type);
  assert.equal(
    types,
    ["report.presence", "report.presence", "report.presence", "registrations.pull"],
    "pulling starts only after every stored client is monitored",
  );
  assert.equal(p.types().sort(), ["NodePresent", "NodePresent", "NodePresent"]);
  assert.is(p.clientCount(), 3);
  assert.equal(p.monitor().getSnapshot().value, { registrations: "running", sweeping: "waiting" });
  // The loaded clients are swept: each is pinged within a ping interval.
  p.advance(P.pingIntervalMs);
  for (const s of ["a", "b", "c"]) assert.is(p.pings(s).length, 1, `${s} pinged`);
});

test("monitor - a load in parts reports each part present at once, pings and judges it only from the last part on, and pulls after it", () => {
  const p = presence();
  p.answer("a");
  p.answer("c");
  p.answer("d");
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["a", "b"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 2, "the first part is monitored at once");
  assert.equal(p.types(), ["NodePresent", "NodePresent"]);
  // While the rest is loading, the load has the event loop to itself: the first part is
  // neither pinged, reported nor judged, however long the load takes.
  p.advance(P.deadTimeoutMs + P.stateIntervalMs);
  assert.equal([p.pings("a"), p.pings("b"), p.states("a"), p.states("b")], [[], [], [], []], "nothing for a held part");
  assert.equal(p.types(), ["NodePresent", "NodePresent"], "nobody is dead before it was ever pinged");
  assert.not.ok(p.commandTypes().includes("registrations.pull"), "no pulling while parts are still coming");
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["c"].map((s) => p.record(s)) });
  const loadedAt = p.clock.now();
  p.send({ type: "REGISTRATIONS_LOADED", records: ["d"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 4);
  assert.is(p.commandTypes().at(-1), "registrations.pull", "pulling starts after the last part");
  p.advance(P.deadTimeoutMs + P.pingIntervalMs + 2 * P.sweepIntervalMs);
  for (const s of ["a", "b", "c", "d"]) {
    const first = p.pings(s)[0];
    assert.ok(
      first !== undefined && first - loadedAt <= P.pingIntervalMs + P.sweepIntervalMs,
      `${s}: first ping ${first! - loadedAt} ms after the load`,
    );
    const state = p.states(s)[0];
    assert.ok(
      state !== undefined && state.at - loadedAt <= P.stateIntervalMs + P.sweepIntervalMs,
      `${s}: first NodeState ${state!.at - loadedAt} ms after the load`,
    );
  }
  // The silent client of the first part: dead a dead timeout after the load, not after its part.
  const dead = p.reports("b").find((r) => r.type === "NodeDead");
  assert.ok(dead !== undefined, "b is reported dead");
  assert.ok(
    dead.at - loadedAt >= P.deadTimeoutMs && dead.at - loadedAt <= P.deadTimeoutMs + P.sweepIntervalMs,
    `b dead ${dead.at - loadedAt} ms after the load`,
  );
  assert.equal(
    ["a", "c", "d"].map((s) => p.types(s)),
    [["NodePresent"], ["NodePresent"], ["NodePresent"]],
    "the answering ones stay alive",
  );
  // A part that comes after loading (it cannot, from the edge) changes nothing.
  p.send({ type: "REGISTRATIONS_CHUNK", records: ["e"].map((s) => p.record(s)) });
  assert.is(p.clientCount(), 3, "b is gone, e was not taken");
});

test("monitor - a load whose last part is empty still starts the held clients, at the time of the last held part", () => {
  const p = presence();
  p.answer("a");
  p.send({ type: "REGISTRATIONS_CHUNK", records: [p.record("a")] });
  const partAt = p.clock.now();
  p.advance(300);
  p.send({ type: "REGISTRATIONS_LOADED", records: [] });
  p.advance(P.pingIntervalMs + P.sweepIntervalMs);
  const first = p.pings("a")[0];
  assert.ok(first !== undefined && first - partAt <= P.pingIntervalMs + P.sweepIntervalMs, `a pinged ${first! - partAt} ms after its part`);
});

test("client - clients that answer every ping get one NodeState per state interval, spread, and their actors hear nothing", () => {
  const p = presence();
  const subjects = Array.from({ length: 60 }, (_, i) => `svc.steady-${i}`);
  for (const s of subjects) p.answer(s, 2);
  p.send({ type: "REGISTRATIONS_LOADED", records: subjects.map((s) => p.record(s, { zone: s.length % 3 })) });
  const RUN = 6 * P.stateIntervalMs;
  p.advance(RUN);
  assert.equal(
    p.types(),
    subjects.map(() => "NodePresent"),
    "no lifecycle report but the first",
  );
  for (const s of subjects) {
    // NodeState: the first within the first state interval, then exactly one per interval.
    const states = p.states(s);
    assert.is(states.length, 6, `${s}: ${states.length} NodeStates in 6 state intervals`);
    assert.ok(states[0]!.at >= P.stateIntervalMs / 2 && states[0]!.at <= P.stateIntervalMs, `${s}: first at ${states[0]!.at}`);
    assert.equal(gaps(states.map((r) => r.at)), [1500, 1500, 1500, 1500, 1500], `${s}: one every state interval`);
    for (const r of states) {
      assert.equal([r.state, r.missedPings, r.rttMs], ["alive", 0, 2], `${s} at ${r.at}`);
      assert.equal(r.metadata, { zone: s.length % 3 }, "metadata travels in every report");
      assert.ok(
        T0 + r.at - r.lastSeenMs < P.pingIntervalMs + 2 * P.sweepIntervalMs,
        `${s}: last seen ${T0 + r.at - r.lastSeenMs} ms before`,
      );
    }
    // Pings: the first within the first ping interval, then one every ping interval.
    const pings = p.pings(s);
    assert.ok(pings[0]! >= P.pingIntervalMs / 2 && pings[0]! <= P.pingIntervalMs, `${s}: first ping at ${pings[0]}`);
    for (const gap of gaps(pings)) {
      assert.ok(gap >= P.pingIntervalMs && gap < P.pingIntervalMs + P.sweepIntervalMs, `${s}: ping ${gap} ms after the last`);
    }
    assert.ok(pings.length >= 10, `${s}: ${pings.length} pings`);
  }
  // Spread: the NodeStates of one interval go out over many sweeps, not all at once.
  const perSweep = new Map<number, number>();
  for (const r of p.states()) if (r.at <= P.stateIntervalMs) perSweep.set(r.at, (perSweep.get(r.at) ?? 0) + 1);
  assert.ok(perSweep.size >= 10, `the first NodeStates went out in ${perSweep.size} of 15 sweeps`);
  assert.ok(Math.max(...perSweep.values()) <= subjects.length / 4, `at most ${Math.max(...perSweep.values())} in one sweep`);
  // Pings and NodeStates go out as one command per shard sweep.
  const perShardSweep = new Set<string>();
  for (const { at, command } of p.log) {
    if (command.type !== "clients.ping" && command.type !== "reports.state") continue;
    const list = command.type === "clients.ping" ? command.subjects : command.reports.map((r) => r.clientSubject);
    const shards = new Set(list.map((s) => shardOf(s, 4)));
    assert.is(shards.size, 1, "one shard's clients per command");
    const key = `${command.type} ${at} ${[...shards][0]}`;
    assert.not.ok(perShardSweep.has(key), `one ${command.type} per shard sweep (${key})`);
    perShardSweep.add(key);
  }
  // The budget of design §10: no event and no timer for any client actor in steady state.
  assert.equal(
    p.clientEvents.filter((e) => e.type !== "xstate.init"),
    [],
    "no event reached a client actor after it started",
  );
  assert.is(p.clientEvents.length, subjects.length, "each client actor started once");
  assert.equal(p.clientTimers, [], "no client actor set a timer");
  assert.equal(p.pendingTimers(), ["monitor"], "the only pending timer is the monitor's sweep");
});

for (const sweepIntervalMs of [50, 120]) {
  test(`client - a silent client is suspect after a missed ping and dead within a sweep of the dead timeout (sweep ${sweepIntervalMs} ms)`, () => {
    const S = sweepIntervalMs;
    const p = presence({ sweepIntervalMs: S });
    p.answer("svc.quiet", 3);
    p.answer("svc.ok", 3);
    p.load("svc.quiet", "svc.ok");
    p.advance(2000);
    p.silence("svc.quiet");
    p.advance(10_000);
    assert.ok(
      p.sweeps.every((s) => s.at % S === 0),
      "every sweep on the sweep interval",
    );
    const lastReply = p.delivered("svc.quiet").at(-1)!.atMs - T0;
    const pings = p.pings("svc.quiet").filter((t) => t > lastReply);
    const reports = p.reports("svc.quiet");
    assert.equal(
      reports.map((r) => r.type),
      ["NodePresent", "NodeSuspect", "NodeDead"],
      "suspect once, dead once",
    );
    const [, suspect, dead] = reports;
    // The first ping after the last reply (a ping interval after the ping it answered) goes
    // unanswered: suspect a ping interval later.
    assert.ok(
      pings[0]! - lastReply > 0 && pings[0]! - lastReply < P.pingIntervalMs + S,
      `pinged ${pings[0]! - lastReply} ms after the last reply`,
    );
    assert.ok(
      suspect!.at - pings[0]! >= P.pingIntervalMs && suspect!.at - pings[0]! < P.pingIntervalMs + S,
      `suspect ${suspect!.at - pings[0]!} ms after the ping`,
    );
    assert.equal([suspect!.state, suspect!.missedPings, suspect!.lastSeenMs], ["suspect", 1, T0 + lastReply]);
    // Pinged again at once, then every ping interval (on the sweep grid) until dead.
    assert.is(pings[1], suspect!.at, "pinged again as it is found suspect");
    for (const gap of gaps(pings.slice(1)))
      assert.ok(gap >= P.pingIntervalMs && gap < P.pingIntervalMs + S, `pinged again after ${gap} ms`);
    assert.ok(pings.at(-1)! < dead!.at, "not pinged once dead");
    // Dead within one sweep interval of the dead timeout after its last reply.
    const silentFor = dead!.at - lastReply;
    assert.ok(silentFor >= P.deadTimeoutMs && silentFor < P.deadTimeoutMs + S, `dead after ${silentFor} ms of silence`);
    assert.equal([dead!.state, dead!.lastSeenMs], ["dead", T0 + lastReply]);
    assert.is(dead!.missedPings, pings.length - 1, "every unanswered ping but the last (still out) counted");
    // NodeState while suspect says so; none after death.
    const states = p.states("svc.quiet");
    for (const r of states.filter((r) => r.at > suspect!.at)) assert.equal([r.state, r.missedPings > 0], ["suspect", true]);
    assert.ok(
      states.every((r) => r.at < dead!.at),
      "no NodeState after NodeDead",
    );
    const removals = p.log.filter((e) => e.command.type === "registration.remove");
    assert.equal(
      removals.map((e) => [e.at, e.command]),
      [[dead!.at, { type: "registration.remove", subject: "svc.quiet", revision: 101 }]],
      "the dead client's registration is removed, against its revision",
    );
    assert.equal(p.shards()[`shard-${shardOf("svc.quiet", 4)}`]!.includes("svc.quiet"), false, "its actor is stopped");
    assert.is(p.clientCount(), 1);
    assert.equal(p.types("svc.ok"), ["NodePresent"], "the client that answers is not touched");
  });
}

test("client - a suspect client that replies is reported recovered, and flaps back", () => {
  const p = presence();
  p.load("svc.flaky");
  p.advance(1600); // misses its first ping (sent by +750): suspect by +1500
  assert.equal(p.types("svc.flaky"), ["NodePresent", "NodeSuspect"]);
  p.reply("svc.flaky", 7);
  const read = p.wall();
  p.advance(P.sweepIntervalMs);
  const last = p.reports("svc.flaky").at(-1)!;
  assert.equal([last.type, last.state, last.missedPings, last.rttMs, last.lastSeenMs], ["NodeRecovered", "alive", 0, 7, read]);
  assert.is(last.at, 1650, "at the next sweep");
  p.answer("svc.flaky");
  p.advance(8000);
  assert.equal(p.types("svc.flaky"), ["NodePresent", "NodeSuspect", "NodeRecovered"], "a client that replies again is never dead");
  // Flapping: silent again, suspect again, recovered again.
  p.silence("svc.flaky");
  p.advance(2 * P.pingIntervalMs + P.sweepIntervalMs);
  p.reply("svc.flaky");
  p.advance(P.sweepIntervalMs);
  assert.equal(p.types("svc.flaky"), ["NodePresent", "NodeSuspect", "NodeRecovered", "NodeSuspect", "NodeRecovered"]);
});

test("client - a ping that fails at once (no responders) is a missed ping, not instant death", () => {
  const p = presence();
  p.load("svc.gone");
  // The edge turns a no-responders error into nothing at all: no reply comes. Right after
  // the failing ping the client is still alive...
  p.advance(P.pingIntervalMs + 1);
  const firstPing = p.pings("svc.gone")[0]!;
  assert.equal(p.types("svc.gone"), ["NodePresent"]);
  // ...suspect one ping interval after it...
  p.advance(firstPing + P.pingIntervalMs - p.clock.now());
  assert.equal(p.types("svc.gone"), ["NodePresent", "NodeSuspect"]);
  assert.is(p.reports("svc.gone").at(-1)!.at, firstPing + P.pingIntervalMs);
  // ...and dead only at the dead timeout after its registration.
  p.advance(P.deadTimeoutMs - 1 - p.clock.now());
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
  // move its dead timeout: it dies at the dead timeout after its registration, reported once.
  for (let now = 2600; now < P.deadTimeoutMs; now += 1000) {
    p.advance(now - p.clock.now());
    p.register("svc.r", { restart: now });
  }
  assert.equal(p.states("svc.r").at(-1)!.metadata, { restart: 3600 }, "NodeState carries the latest metadata");
  assert.equal(p.states("svc.r").at(-1)!.state, "suspect");
  p.advance(P.deadTimeoutMs - 1 - p.clock.now());
  assert.not.ok(p.types("svc.r").includes("NodeDead"));
  p.advance(1);
  assert.is(p.types("svc.r").at(-1), "NodeDead");
  assert.equal(p.reports("svc.r").at(-1)!.metadata, { restart: 4600 });
  p.advance(5000);
  assert.equal(
    p.types("svc.r").filter((t) => t !== "NodePresent"),
    ["NodeSuspect", "NodeDead"],
    "suspect once, through every registration; dead once",
  );
  assert.is(p.log.filter((e) => e.command.type === "registration.remove").length, 1);
});

test("client - a client that registers again and replies recovers", () => {
  const p = presence();
  p.load("svc.back");
  p.advance(1600);
  assert.is(p.types("svc.back").at(-1), "NodeSuspect");
  p.register("svc.back", { build: 2 });
  p.reply("svc.back");
  p.advance(P.sweepIntervalMs);
  assert.equal(p.types("svc.back"), ["NodePresent", "NodeSuspect", "NodePresent", "NodeRecovered"]);
  assert.equal(p.reports("svc.back").at(-1)!.metadata, { build: 2 });
  p.advance(2 * P.deadTimeoutMs); // silent again: suspect and dead, a dead timeout after the reply
  assert.equal(p.types("svc.back").slice(4), ["NodeSuspect", "NodeDead"]);
  const dead = p.reports("svc.back").at(-1)!;
  assert.ok(
    dead.at - 1600 >= P.deadTimeoutMs && dead.at - 1600 < P.deadTimeoutMs + P.sweepIntervalMs,
    `dead ${dead.at - 1600} ms after the reply`,
  );
});

test("client - a dead client that replies late stays dead until it registers again", () => {
  const p = presence();
  p.load("svc.late");
  p.advance(P.deadTimeoutMs);
  assert.is(p.types("svc.late").at(-1), "NodeDead");
  const count = p.log.length;
  p.reply("svc.late");
  p.advance(3000);
  assert.equal(
    p.log.slice(count).filter((e) => e.command.type !== "replies.collect"),
    [],
    "nothing after NodeDead: no report, no NodeState, no ping",
  );
  assert.ok(p.delivered("svc.late").length === 1, "the late reply did reach the monitor");
  p.register("svc.late");
  const present = p.reports("svc.late").at(-1)!;
  assert.equal([present.type, present.state, present.missedPings], ["NodePresent", "alive", 0]);
  assert.is(p.clientCount(), 1);
  // Monitored afresh: pinged again, and dead a dead timeout after the new registration.
  const since = p.clock.now();
  p.advance(2 * P.deadTimeoutMs);
  assert.ok(p.pings("svc.late").some((t) => t > since));
  assert.equal(p.types("svc.late").slice(-3), ["NodePresent", "NodeSuspect", "NodeDead"]);
  assert.is(p.reports("svc.late").at(-1)!.at, since + P.deadTimeoutMs);
});

test("client - an unregistering client is reported left, and nothing follows", () => {
  const p = presence();
  p.answer("svc.bye");
  p.load("svc.bye");
  p.advance(2000);
  assert.ok(p.pings("svc.bye").length > 0 && p.states("svc.bye").length > 0);
  p.send({ type: "UNREGISTERED", subject: "svc.bye" });
  assert.equal(p.types("svc.bye"), ["NodePresent", "NodeLeft"]);
  assert.is(p.reports("svc.bye").at(-1)!.state, "left");
  const count = p.log.length;
  p.reply("svc.bye"); // a reply on its way when it left
  p.advance(10_000);
  assert.equal(
    p.log.slice(count).filter((e) => e.command.type !== "replies.collect"),
    [],
    "nothing after NodeLeft: no report, no NodeState, no ping, no removal",
  );
  assert.is(p.clientCount(), 0);
  assert.is(
    p.tables().reduce((n, t) => n + t.size, 0),
    0,
    "its liveness is gone too",
  );
  // An unregistration of an unknown subject changes nothing.
  p.send({ type: "UNREGISTERED", subject: "svc.never" });
  assert.is(p.reports("svc.never").length, 0);
});

test("client - NodePresent on registering again and NodeLeft carry the last reply, as every report does", () => {
  const p = presence();
  p.answer("svc.up", 4);
  p.answer("svc.bye", 6);
  p.load("svc.up", "svc.bye");
  p.advance(5000);
  const lastOf = (s: string) => p.delivered(s).at(-1)!;
  p.register("svc.up", { v: 2 });
  const present = p.reports("svc.up").at(-1)!;
  assert.equal(
    [present.type, present.state, present.lastSeenMs, present.rttMs, present.missedPings],
    ["NodePresent", "alive", lastOf("svc.up").atMs, 4, 0],
  );
  p.send({ type: "UNREGISTERED", subject: "svc.bye" });
  const left = p.reports("svc.bye").at(-1)!;
  assert.equal([left.type, left.state, left.lastSeenMs, left.rttMs, left.missedPings], ["NodeLeft", "left", lastOf("svc.bye").atMs, 6, 0]);
});

for (const stallMs of [2 * P.deadTimeoutMs, 1000]) {
  test(`monitor - a stalled sweep (${stallMs} ms) judges nobody; replies read after it keep every client alive`, () => {
    const run = (flagStalls: boolean) => {
      const p = presence();
      p.edge.flagStalls = flagStalls;
      const subjects = Array.from({ length: 100 }, (_, i) => `svc.busy-${i}`);
      for (const s of subjects) p.answer(s, 2);
      p.load(...subjects);
      p.advance(3000);
      const stalledAt = p.sweeps.length;
      const held = p.stall(stallMs);
      p.advance(6000);
      return { p, held, stalled: p.sweeps[stalledAt]!, next: p.sweeps[stalledAt + 1]! };
    };
    const { p, held, stalled, next } = run(true);
    assert.ok(held > 0, "some replies were on their way when the loop stalled");
    assert.is(stalled.stalledMs, stallMs, "the late sweep says how long the loop stalled");
    assert.equal(stalled.replies, [], "its replies were not read yet");
    assert.is(next.replies.length, held, "they come with the next sweep");
    assert.equal(
      p.types().filter((t) => t !== "NodePresent"),
      [],
      "no NodeSuspect and no NodeDead",
    );
    assert.ok(
      p.states().some((r) => r.at === stalled.at),
      "NodeState goes on in the stalled sweep",
    );
    assert.ok(p.states().every((r) => r.state === "alive"));
    // The same schedule without the stall flag calls live clients suspect or dead.
    const unflagged = run(false).p;
    const verdicts = unflagged.types().filter((t) => t === "NodeSuspect" || t === "NodeDead");
    assert.ok(verdicts.length > 0, "without the flag, the stall is held against the clients");
    if (stallMs > P.deadTimeoutMs) assert.is(unflagged.types().filter((t) => t === "NodeDead").length, 100, "every client dead");
    else assert.ok(unflagged.types().includes("NodeSuspect"));
  });
}

test("monitor - a client that answers right after a stall and then falls silent is dead on time", () => {
  const p = presence();
  const subjects = Array.from({ length: 40 }, (_, i) => `svc.after-${i}`);
  for (const s of subjects) p.answer(s, 2);
  p.load(...subjects);
  p.advance(3000);
  const stalledAt = p.sweeps.length;
  const held = p.stall(2 * P.deadTimeoutMs, "late sweep");
  const stalled = p.sweeps[stalledAt]!;
  assert.ok(held > 0 && stalled.replies.length === held, "replies read after the stall come with the late sweep");
  for (const s of subjects) p.silence(s);
  p.advance(3 * P.deadTimeoutMs);
  for (const r of stalled.replies) {
    const dead = p.reports(r.subject).find((x) => x.type === "NodeDead");
    assert.ok(dead !== undefined, `${r.subject} is dead`);
    const silentFor = T0 + dead!.at - r.atMs;
    assert.ok(
      silentFor >= P.deadTimeoutMs && silentFor < P.deadTimeoutMs + P.sweepIntervalMs,
      `${r.subject}: dead ${silentFor} ms after its reply`,
    );
  }
});

test("monitor - clients are spread over the shards, and spawning 2,000 keeps each one distinct", () => {
  const p = presence({ shardCount: 16 });
  const subjects = Array.from({ length: 2000 }, (_, i) => `fleet.node-${i}`);
  p.load(...subjects);
  assert.is(p.clientCount(), 2000);
  assert.is(p.types().filter((t) => t === "NodePresent").length, 2000);
  // Where the monitor really put them: each shard actor's client actors.
  const shards = p.shards();
  assert.equal(
    Object.keys(shards),
    Array.from({ length: 16 }, (_, i) => `shard-${i}`),
    "16 shard actors",
  );
  const perShard = Object.values(shards).map((children) => children.length);
  assert.ok(Math.min(...perShard) > 60 && Math.max(...perShard) < 200, `an even spread: ${perShard.join(",")}`);
  const placed = Object.values(shards).flat();
  assert.is(placed.length, 2000, "every client has one actor");
  assert.equal(new Set(placed), new Set(subjects), "in exactly one shard each");
  // Each sits in the shard that its ping replies and its unregistration are routed to, and
  // that shard's liveness table holds exactly its clients.
  const tables = p.tables();
  for (const [i, [id, children]] of Object.entries(shards).entries()) {
    const misplaced = children.filter((subject) => `shard-${shardOf(subject, 16)}` !== id);
    assert.equal(misplaced, [], `${id} holds only its own subjects`);
    assert.equal([...tables[i]!.entries()].map((e) => e.subject).sort(), [...children].sort(), `${id}'s table`);
  }
  // Replies are routed to their shards by the keys their pings carried: everyone answering, nobody is suspect.
  for (const s of subjects) p.answer(s);
  p.advance(3000);
  assert.is(p.types().filter((t) => t !== "NodePresent").length, 0);
  // Each client's key, on its pings and its NodeStates: one per client, naming its shard.
  const keyOf = new Map<string, Set<number>>();
  const note = (subject: string, key: number | undefined) =>
    (keyOf.get(subject) ?? keyOf.set(subject, new Set()).get(subject)!).add(key ?? -1);
  for (const { command } of p.log) {
    if (command.type === "clients.ping") for (const [i, s] of command.subjects.entries()) note(s, command.keys[i]);
    if (command.type === "reports.state") for (const [i, r] of command.reports.entries()) note(r.clientSubject, command.keys[i]);
  }
  assert.is(keyOf.size, 2000, "every client pinged and reported");
  const keys = [...keyOf].map(([subject, set]) => {
    assert.is(set.size, 1, `${subject}: one key`);
    const [key] = [...set];
    assert.ok(Number.isInteger(key) && key! % 16 === shardOf(subject, 16), `${subject}: key ${key} names shard ${shardOf(subject, 16)}`);
    return key!;
  });
  assert.is(new Set(keys).size, 2000, "no two clients share a key");
  // Duplicates within one load count once.
  const q = presence({ shardCount: 4 });
  q.load("dup.a", "dup.a", "dup.b");
  assert.is(q.clientCount(), 2);
  assert.is(
    q.tables().reduce((n, t) => n + t.size, 0),
    2,
  );
  // A reply whose key is no key (a log edited by hand) goes by its subject.
  const at = q.wall();
  q.send({
    type: "SWEEP",
    atMs: at,
    stalledMs: 0,
    replies: [-1, 2.5, Number.NaN].map((key, i) => ({ subject: "dup.b", key, atMs: at - 3 + i, rttMs: 1 })),
  });
  const b = q
    .tables()
    .map((t) => t.get("dup.b"))
    .find((e) => e !== undefined);
  assert.is(b?.lastSeenMs, at - 1, "each of them reached dup.b's shard");
});

test.run();
