/**
 * Model-based paths: `xstate/graph` walks the client and the election machines (the client
 * hears only the facts its shard's sweep finds; the election's `xstate.after.*` timer events
 * are listed explicitly, since a traversal has no clock) and gives the shortest event
 * sequence to every state; each is extended by every sequence of
 * up to two more events (for the election, three events that each take a transition). Every path then runs on a real actor with a SimulatedClock and a
 * recording outbox (timer events are delivered as the scheduler would deliver them), time
 * runs on afterwards, and the invariants of design section 5 are checked on the commands.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef, type EventObject } from "xstate";
import { getShortestPaths } from "xstate/graph";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS } from "../../src/config/config.js";
import { clientMachine, type ClientEvent } from "../../src/machines/client.js";
import type { Command, RegistrationRecord } from "../../src/machines/commands.js";
import { electionMachine, type ElectionContext, type ElectionEvent } from "../../src/machines/election.js";
import type { ElectionReportBody } from "../../src/protocol/election.js";
import type { ClientReport } from "../../src/protocol/presence.js";
import { createRandom } from "../../src/machines/random.js";

/** Every path is one of the shortest paths, followed by every sequence of up to this many events. */
const EXTRA_STEPS = 2;
/** The election's extensions only use events that take a transition, so they can be longer. */
const ELECTION_EXTRA_STEPS = 3;

const after = (delay: string, stateId: string): EventObject => ({ type: `xstate.after.${delay}.${stateId}` });

/** Shortest paths to every state, each extended by every sequence of up to `extra` more events. */
function extend<E>(shortest: E[][], eventsAt: (prefix: E[]) => E[], extra: number): E[][] {
  const out: E[][] = [];
  const grow = (path: E[], left: number) => {
    out.push(path);
    if (left === 0) return;
    for (const e of eventsAt(path)) grow([...path, e], left - 1);
  };
  for (const p of shortest) grow(p, extra);
  return out;
}

// ---------------------------------------------------------------- client

const SUBJECT = "svc.model";
const record: RegistrationRecord = { registration: { subject: SUBJECT, metadata: { m: 1 } }, revision: 5, atMs: 1000 };
/**
 * The facts a shard's sweep can give a client actor (the client keeps no timer: every wait
 * is in its shard's liveness table), plus the registration events.
 */
const CLIENT_EVENTS: ClientEvent[] = [
  { type: "PING_MISSED", lastSeenMs: 1000, rttMs: 0, missedPings: 1 },
  { type: "PING_MISSED", lastSeenMs: 1000, rttMs: 0, missedPings: 2 },
  { type: "REPLIED", lastSeenMs: 4000, rttMs: 3, missedPings: 0 },
  { type: "DEAD_TIMEOUT", lastSeenMs: 1000, rttMs: 0, missedPings: 6 },
  {
    type: "RESET",
    record: { ...record, registration: { subject: SUBJECT, metadata: { m: 2 } }, revision: 6 },
    lastSeenMs: 5000,
    rttMs: 4,
    missedPings: 0,
  },
  { type: "LEAVE", lastSeenMs: 6000, rttMs: 6, missedPings: 0 },
];
/** What the shard says of a client that never replies again, once the path is done. */
const NEVER_AGAIN: ClientEvent = { type: "DEAD_TIMEOUT", lastSeenMs: 4000, rttMs: 3, missedPings: 7 };

/** The client machine without its effects, for the traversal (the graph runs no actor system). */
const clientModel = clientMachine.provide({
  actions: { report: () => undefined, removeRegistration: () => undefined, notifyFinished: () => undefined },
});

/**
 * Runs a client actor under a root that provides the outbox and takes CLIENT_FINISHED, as a
 * shard would; time runs on after the path, then the shard's sweep finds it dead.
 */
function runClient(events: ClientEvent[]) {
  const clock = new SimulatedClock();
  const log: { step: number; command: Command }[] = [];
  const finished: number[] = [];
  const timers: string[] = [];
  let step = 0;
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) => receive((command) => log.push({ step, command }))),
      client: clientMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      { src: "client", id: "client", input: { record } },
    ],
    on: { CLIENT_FINISHED: { actions: () => finished.push(step) } },
  });
  const actor = createActor(root, { clock });
  const scheduler = actor.system.scheduler;
  const schedule = scheduler.schedule.bind(scheduler);
  scheduler.schedule = (source, target, event, delay, id) => {
    timers.push(`${source.id}: ${event.type}`);
    schedule(source, target, event, delay, id);
  };
  actor.start();
  const client = () => actor.getSnapshot().children.client as AnyActorRef | undefined;
  for (const e of [...events, null]) {
    step += 1;
    if (e === null) {
      for (let ms = 0; ms < 2 * DEFAULT_MONITOR_TIMINGS.deadTimeoutMs; ms += 10) clock.increment(10);
      if (client()?.getSnapshot().status === "active") client()!.send(NEVER_AGAIN);
    } else if (client()?.getSnapshot().status === "active") client()!.send(e);
  }
  actor.stop();
  return { log, finished, timers };
}

const STATE_OF: Record<ClientReport["type"], ClientReport["state"][]> = {
  NodePresent: ["alive", "suspect"],
  NodeRecovered: ["alive"],
  NodeSuspect: ["suspect"],
  NodeDead: ["dead"],
  NodeLeft: ["left"],
  NodeState: ["alive", "suspect"],
};

function checkClientInvariants(events: ClientEvent[], { log, finished, timers }: ReturnType<typeof runClient>): void {
  let text: string | undefined; // built once per path: every assertion message uses it
  const where = () =>
    (text ??= `path: ${events.map((e) => `${e.type}(${e.missedPings})`).join(" > ")}\ncommands: ${log.map((l) => (l.command.type === "report.presence" ? l.command.report.type : l.command.type)).join(", ")}`);
  const reports = log.flatMap((l) => (l.command.type === "report.presence" ? [{ step: l.step, ...l.command.report }] : []));
  assert.is(reports[0]?.type, "NodePresent", `the first report is NodePresent\n${where()}`);
  for (const r of reports) assert.ok(STATE_OF[r.type].includes(r.state), `${r.type} carries state ${r.state}\n${where()}`);
  const dead = log.findIndex((l) => l.command.type === "report.presence" && l.command.report.type === "NodeDead");
  const left = log.findIndex((l) => l.command.type === "report.presence" && l.command.report.type === "NodeLeft");
  assert.ok(dead < 0 || left < 0, `never both dead and left\n${where()}`);
  if (dead >= 0) {
    const rest = log.slice(dead + 1).map((l) => l.command);
    const revision = lastRevision(events, log[dead]!.step);
    assert.equal(
      rest,
      [{ type: "registration.remove", subject: SUBJECT, revision }],
      `after NodeDead only its registration is removed, once, against its revision\n${where()}`,
    );
  }
  if (dead >= 0) {
    // NodeDead carries what the sweep found: the last reply and every missed ping.
    const fact = (log[dead]!.step <= events.length ? events[log[dead]!.step - 1] : NEVER_AGAIN) as Extract<
      ClientEvent,
      { type: "DEAD_TIMEOUT" }
    >;
    const r = reports.find((r) => r.type === "NodeDead")!;
    assert.equal(
      [r.lastSeenMs, r.rttMs, r.missedPings],
      [fact.lastSeenMs, fact.rttMs, fact.missedPings],
      `NodeDead carries its fact\n${where()}`,
    );
  }
  if (left >= 0) assert.is(log.length, left + 1, `nothing after NodeLeft\n${where()}`);
  // Every report carries what its shard knew when it was made: NodePresent again and NodeLeft too.
  for (const r of reports.slice(1)) {
    if (r.type !== "NodePresent" && r.type !== "NodeLeft") continue;
    const e = events[r.step - 1]!;
    assert.equal([r.lastSeenMs, r.rttMs, r.missedPings], [e.lastSeenMs, e.rttMs, e.missedPings], `${r.type} carries its fact\n${where()}`);
  }
  if (left < 0) assert.ok(dead >= 0, `a client that never replies again gets a NodeDead\n${where()}`);
  assert.is(finished.length, 1, `its shard hears once that it finished\n${where()}`);
  assert.is(finished[0], reports.find((r) => r.type === "NodeDead" || r.type === "NodeLeft")!.step, `when it finished\n${where()}`);
  // Liveness reports alternate: suspect only when alive, recovered only when suspect.
  // A registration again (NodePresent after the first) says who the client is, not that it
  // is alive: it carries the liveness the client had, and changes nothing of it.
  let state: "alive" | "suspect" = "alive";
  for (const r of reports) {
    if (r.type === "NodePresent") assert.is(r.state, state, `NodePresent keeps the liveness it found\n${where()}`);
    else if (r.type === "NodeSuspect") {
      assert.is(state, "alive", `NodeSuspect only after alive\n${where()}`);
      assert.ok(r.missedPings >= 1, `NodeSuspect counts the missed ping\n${where()}`);
      state = "suspect";
    } else if (r.type === "NodeRecovered") {
      assert.is(state, "suspect", `NodeRecovered only after NodeSuspect\n${where()}`);
      assert.equal([r.missedPings, r.lastSeenMs, r.rttMs], [0, 4000, 3], `NodeRecovered carries the reply\n${where()}`);
      state = "alive";
    }
  }
  // The client actor only reports and removes its registration (its shard pings and sends
  // NodeState), and it never sets a timer: every wait is in its shard's liveness table.
  for (const l of log)
    assert.ok(l.command.type === "report.presence" || l.command.type === "registration.remove", `${l.command.type}\n${where()}`);
  assert.equal(timers, [], `no timer\n${where()}`);
}

/** The revision of the registration a client had at `step`: the last RESET's before it, or the first. */
function lastRevision(events: ClientEvent[], step: number): number {
  let revision = record.revision;
  for (const [i, e] of events.entries()) if (i + 1 < step && e.type === "RESET") revision = e.record.revision;
  return revision;
}

test("model - client: every generated path keeps the presence invariants", () => {
  const shortest = getShortestPaths(clientModel, {
    input: { record },
    events: CLIENT_EVENTS,
    // Context reduced to what changes behaviour, so that the state space stays finite.
    serializeState: (s) => JSON.stringify([s.value, s.status, Math.min(s.context.missedPings, 2), s.context.revision]),
  });
  assert.ok(shortest.length >= 8, `the traversal reaches every client state (got ${shortest.length})`);
  const reached = new Set(shortest.map((p) => JSON.stringify(p.state.value)));
  for (const s of ['"alive"', '"suspect"', '"dead"', '"left"']) assert.ok(reached.has(s), `reaches ${s}`);
  const paths = extend(
    shortest.map((p) => p.steps.slice(1).map((s) => s.event as ClientEvent)),
    () => CLIENT_EVENTS,
    EXTRA_STEPS,
  );
  for (const events of paths) checkClientInvariants(events, runClient(events));
  assert.ok(paths.length > 100, `${paths.length} paths`);
});

// ---------------------------------------------------------------- election

const ME = "me";
const OTHER = "other";
const ET = DEFAULT_TIMINGS;
const ELECTION_TIMERS: EventObject[] = [
  after("leaderTimeout", "election.follower"),
  after("electionBackoff", "election.candidate.backoff"),
  after("heartbeatInterval", "election.leader.renewal.waiting"),
  after("renewRetry", "election.leader.renewal.retrying"),
  after("renewDeadline", "election.leader.lease.valid"),
  after("leaseCheckTimeout", "election.leader.lease.unsure"),
  after("releaseTimeout", "election.steppingDown"),
  after("releaseTimeout", "election.resigning"),
];

/**
 * The events possible in a state, with values a real cluster can produce there: epochs only
 * grow (a new lease or a newer leader is always above every epoch seen), and only the
 * leader this coordinator follows heartbeats under its own epoch.
 */
function electionEvents(c: ElectionContext): EventObject[] {
  const h = c.highestEpoch;
  const events: ElectionEvent[] = [
    { type: "HEARTBEAT", coordinatorId: OTHER, epoch: h + 1, resigning: false },
    { type: "LEASE_CREATED", epoch: h + 1, revision: h + 1, latencyMs: 3 },
    { type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: h + 1 } },
    { type: "LEASE_TAKEN", holder: null },
    { type: "LEASE_RENEWED", revision: c.revision + 1, latencyMs: 2 },
    // An answer that waited out a pause: too late to make the lease valid.
    { type: "LEASE_RENEWED", revision: c.revision + 1, latencyMs: ET.renewDeadlineMs },
    { type: "LEASE_LOST" },
    { type: "LEASE_RELEASED", holder: null },
    { type: "LEASE_ERROR", operation: "renew", message: "timeout" },
    { type: "RESIGN" },
  ];
  if (h > 0) events.push({ type: "HEARTBEAT", coordinatorId: OTHER, epoch: h - 1, resigning: false });
  if (c.leader !== null && c.leader.coordinatorId === OTHER) {
    events.push({ type: "HEARTBEAT", coordinatorId: OTHER, epoch: c.leader.epoch, resigning: false });
    events.push({ type: "HEARTBEAT", coordinatorId: OTHER, epoch: c.leader.epoch, resigning: true });
  }
  if (c.epoch > 0) events.push({ type: "HEARTBEAT", coordinatorId: ME, epoch: c.epoch, resigning: false });
  return [...events, ...ELECTION_TIMERS];
}

const noop = () => undefined;
const electionModel = electionMachine.provide({
  actions: {
    requestLeaseCreate: noop,
    requestRenewal: noop,
    requestRelease: noop,
    stopMonitoring: noop,
    publishHeartbeat: noop,
    publishResigningHeartbeat: noop,
    report: noop,
  },
});

function runElection(events: EventObject[]) {
  const clock = new SimulatedClock();
  const log: { step: number; event: EventObject | null; command: Command }[] = [];
  let step = 0;
  let current: EventObject | null = null;
  const machine = electionMachine.provide({
    actors: { outbox: fromCallback<Command>(({ receive }) => receive((command) => log.push({ step, event: current, command }))) },
  });
  const actor = createActor(machine, {
    clock,
    input: { coordinatorId: ME, timings: ET, random: createRandom(5), monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: 2 } },
  }).start();
  for (const e of events) {
    step += 1;
    current = e;
    if (actor.getSnapshot().status === "active") actor.send(e as ElectionEvent);
  }
  step += 1;
  current = null;
  for (let ms = 0; ms < 2 * ET.leaderTimeoutMs; ms += 100) clock.increment(100);
  actor.stop();
  return log;
}

function checkElectionInvariants(events: EventObject[], log: ReturnType<typeof runElection>): void {
  let text: string | undefined;
  const where = () =>
    (text ??= `path: ${events.map((e) => e.type.replace(/^xstate\.after\./, "after:")).join(" > ")}\ncommands: ${log
      .map((l) => (l.command.type === "report.publish" ? l.command.report.type : l.command.type))
      .join(", ")}`);
  const first = log[0]?.command;
  assert.ok(first?.type === "report.publish" && first.report.reason === "started", `starts with BecameFollower(started)\n${where()}`);
  let leading: number | null = null; // the epoch led now
  let lastNonZeroEpoch = 0;
  let stopped = false;
  const wonIn = new Set(
    log.filter((l) => l.command.type === "report.publish" && l.command.report.type === "BecameLeader").map((l) => l.step),
  );
  for (const { command, event, step } of log) {
    assert.not.ok(stopped, `nothing after Stopped\n${where()}`);
    // The first heartbeat of a leadership goes out with BecameLeader, in the same step.
    if (wonIn.has(step) && event?.type === "LEASE_CREATED") leading = (event as Extract<ElectionEvent, { type: "LEASE_CREATED" }>).epoch;
    if (command.type === "report.publish") {
      const r: ElectionReportBody = command.report;
      if (r.epoch > 0) {
        assert.ok(r.epoch >= lastNonZeroEpoch, `report epochs never decrease (${r.epoch} after ${lastNonZeroEpoch})\n${where()}`);
        lastNonZeroEpoch = r.epoch;
      }
      if (r.type === "BecameLeader") {
        assert.is(event?.type, "LEASE_CREATED", `BecameLeader only on LEASE_CREATED\n${where()}`);
        assert.is(r.epoch, leading, "under the created epoch");
      } else if (r.type === "SteppedDown") {
        assert.ok(leading !== null, `SteppedDown only from leadership\n${where()}`);
        assert.is(r.formerEpoch, leading, `SteppedDown names the epoch it gave up\n${where()}`);
        assert.is.not(r.epoch, leading, `a coordinator that gave up its lease never reports its old epoch as current\n${where()}`);
        leading = null;
      } else if (r.type === "Stopped") {
        stopped = true;
        if (leading !== null) assert.unreachable(`Stopped while leading, without SteppedDown\n${where()}`);
      }
    } else if (command.type === "heartbeat.publish" && !command.resigning) {
      assert.is(command.epoch, leading, `heartbeats only while leading, under the led epoch\n${where()}`);
    } else if (command.type === "lease.renew") {
      assert.is(command.epoch, leading, `renewals only while leading\n${where()}`);
    } else if (command.type === "registrations.load" || command.type === "registrations.pull") {
      assert.ok(leading !== null, `monitoring only while leading\n${where()}`);
    }
  }
  // Leaving leadership stops the monitor.
  const leaders = log.filter((l) => l.command.type === "report.publish" && l.command.report.type === "BecameLeader").length;
  const exits = log.filter((l) => l.command.type === "monitor.stop").length;
  assert.ok(exits === leaders || exits === leaders - 1, `every way out of leadership stops the monitor\n${where()}`);
}

test("model - election: every generated path keeps the election invariants", () => {
  const shortest = getShortestPaths(electionModel, {
    input: { coordinatorId: ME, timings: ET, random: createRandom(5), monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: 2 } },
    events: (s) => electionEvents(s.context) as ElectionEvent[],
    // Epoch values abstracted away: only who is known to lead matters for the shape of the machine.
    serializeState: (s) =>
      JSON.stringify([
        s.value,
        s.status,
        s.context.stopRequested,
        s.context.leader === null ? "none" : s.context.leader.coordinatorId === ME ? "me" : "other",
      ]),
  });
  const reached = new Set(shortest.map((p) => JSON.stringify(p.state.value)));
  for (const s of ['"follower"', '"steppingDown"', '"resigning"', '"stopped"']) assert.ok(reached.has(s), `reaches ${s}`);
  assert.ok(
    [...reached].some((s) => s.includes("retrying")),
    "reaches a renewal retry",
  );
  assert.ok(
    [...reached].some((s) => s.includes("unsure")),
    "reaches a leader unsure of its lease",
  );
  // Follow the context along each path, so that the extensions use values a cluster can produce.
  const paths = extend(
    shortest.map((p) => p.steps.slice(1).map((s) => s.event as EventObject)),
    (prefix) => {
      const actor = createActor(electionModel, {
        clock: new SimulatedClock(),
        input: { coordinatorId: ME, timings: ET, random: createRandom(5), monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: 2 } },
      }).start();
      for (const e of prefix) if (actor.getSnapshot().status === "active") actor.send(e as ElectionEvent);
      const snapshot = actor.getSnapshot();
      actor.stop();
      // Only events that take a transition there: an ignored event adds a path but nothing to check.
      return electionEvents(snapshot.context).filter((e) => snapshot.can(e as ElectionEvent));
    },
    ELECTION_EXTRA_STEPS,
  );
  for (const events of paths) checkElectionInvariants(events, runElection(events));
  assert.ok(paths.length > 500, `${paths.length} paths`);
});

test.run();
