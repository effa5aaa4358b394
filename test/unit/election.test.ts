import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, createMachine, fromCallback, SimulatedClock } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS, type ElectionTimings } from "../../src/config/config.js";
import { isMonitorCommand, type Command, type MonitorCommand } from "../../src/machines/commands.js";
import { electionMachine, type ElectionCommand, type ElectionEvent } from "../../src/machines/election.js";
import { handoffRetryMs, leaseRetryMs, maxCreateAttempts } from "../../src/machines/election-setup.js";
import type { ElectionReportBody } from "../../src/protocol/election.js";
import { createRandom, type RandomSource } from "../../src/machines/random.js";

const ME = "coord-me";
const OTHER = "coord-other";
const T = DEFAULT_TIMINGS;

/** Drives the election machine on a simulated clock and records every command it sends. */
function election(options: { timings?: ElectionTimings; random?: RandomSource } = {}) {
  const clock = new SimulatedClock();
  const commands: ElectionCommand[] = [];
  const monitorCommands: MonitorCommand[] = [];
  const machine = electionMachine.provide({
    actors: {
      outbox: fromCallback<Command>(({ receive }) =>
        receive((c) => {
          if (isMonitorCommand(c)) monitorCommands.push(c);
          else commands.push(c);
          // The edge answers the monitor's sweep with the replies since the last one: none here.
          if (c.type === "replies.collect")
            actor.system.get("monitor")?.send({ type: "SWEEP", atMs: clock.now(), stalledMs: 0, replies: [] });
        }),
      ),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: {
      coordinatorId: ME,
      timings: options.timings ?? T,
      random: options.random ?? createRandom(7),
      monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: 4 },
    },
  });
  actor.start();
  const h = {
    actor,
    clock,
    commands,
    monitorCommands,
    send: (event: ElectionEvent) => actor.send(event),
    /**
     * Moves time forward one millisecond at a time: SimulatedClock starts a timer set while
     * it flushes at the already-advanced time, so one large jump would delay chained timers.
     */
    advance: (ms: number) => {
      for (let i = 0; i < ms; i++) clock.increment(1);
    },
    state: () => actor.getSnapshot().value,
    reports: (): ElectionReportBody[] => commands.flatMap((c) => (c.type === "report.publish" ? [c.report] : [])),
    lastReport: (): ElectionReportBody | undefined => h.reports().at(-1),
    count: (type: ElectionCommand["type"]) => commands.filter((c) => c.type === type).length,
    /** Runs follower → candidate → lease create, answering it with `epoch`. */
    becomeLeader(epoch = 10) {
      h.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
      assert.is(commands.at(-1)?.type, "lease.create", "a candidate creates the lease after its backoff");
      h.send({ type: "LEASE_CREATED", epoch, revision: epoch + 1, latencyMs: 2 });
      assert.equal(h.state(), { leader: { renewal: "waiting", lease: "valid" } });
    },
  };
  return h;
}

const heartbeat = (epoch: number, coordinatorId = OTHER, resigning = false, successor?: string): ElectionEvent => ({
  type: "HEARTBEAT",
  coordinatorId,
  epoch,
  resigning,
  ...(successor !== undefined ? { successor } : {}),
});

test("election - starts as follower and reports it", () => {
  const e = election();
  assert.is(e.state(), "follower");
  assert.equal(e.reports(), [{ type: "BecameFollower", epoch: 0, state: "follower", reason: "started" }]);
});

test("election - follower becomes candidate after leader timeout", () => {
  const e = election();
  e.advance(T.leaderTimeoutMs - 1);
  assert.is(e.state(), "follower");
  e.advance(1);
  assert.equal(e.state(), { candidate: "backoff" });
  assert.equal(e.lastReport(), { type: "BecameCandidate", epoch: 0, state: "candidate", reason: "leader-timeout" });
});

test("election - heartbeats of the leader keep a follower from standing", () => {
  const e = election();
  for (let i = 0; i < 10; i++) {
    e.advance(T.heartbeatIntervalMs);
    e.send(heartbeat(5));
  }
  assert.is(e.state(), "follower");
  assert.equal(
    e.reports().map((r) => r.type),
    ["BecameFollower", "FollowingLeader"],
    "one FollowingLeader for the new leader, none for its later heartbeats",
  );
  assert.is(e.lastReport()?.leaderId, OTHER);
  assert.is(e.lastReport()?.epoch, 5);
  e.advance(T.leaderTimeoutMs);
  assert.equal(e.state(), { candidate: "backoff" });
});

test("election - backoff lies within [min, max] for many seeds", () => {
  const timings = { ...T, electionBackoffMinMs: 150, electionBackoffMaxMs: 300 };
  const seen = new Set<number>();
  for (let seed = 0; seed < 200; seed++) {
    const e = election({ timings, random: createRandom(seed) });
    e.advance(timings.leaderTimeoutMs);
    const backoff = e.actor.getSnapshot().context.backoffMs;
    assert.ok(backoff >= 150 && backoff <= 300, `backoff ${backoff} out of range for seed ${seed}`);
    seen.add(backoff);
    // The lease create goes out exactly when the chosen backoff ends, not before.
    e.advance(backoff - 1);
    assert.is(e.count("lease.create"), 0);
    e.advance(1);
    assert.is(e.count("lease.create"), 1);
  }
  assert.ok(seen.size > 50, `backoffs should spread over the range, saw ${seen.size} distinct values`);
});

test("election - the same seed gives the same backoff", () => {
  const backoffOf = (seed: number) => {
    const e = election({ random: createRandom(seed) });
    e.advance(T.leaderTimeoutMs);
    return e.actor.getSnapshot().context.backoffMs;
  };
  assert.is(backoffOf(1234), backoffOf(1234));
});

test("election - winning the lease makes a leader that heartbeats at once and reports its epoch", () => {
  const e = election();
  e.becomeLeader(42);
  const last = e.commands.slice(-2);
  assert.equal(last[0], { type: "heartbeat.publish", epoch: 42, resigning: false });
  assert.equal(last[1], {
    type: "report.publish",
    report: { type: "BecameLeader", epoch: 42, state: "leader", reason: "won-election", leaderId: ME },
  });
});

test("election - a lost create returns to follower", () => {
  const e = election();
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 9 } });
  assert.is(e.state(), "follower");
  assert.equal(e.lastReport(), {
    type: "BecameFollower",
    epoch: 9,
    state: "follower",
    reason: "lost-election",
    leaderId: OTHER,
  });
  // A heartbeat of a lower epoch than the holder's is stale now.
  e.send(heartbeat(8, "coord-stale"));
  assert.is(e.reports().length, 3, "the stale heartbeat makes no report");
});

test("election - a lease error while acquiring returns to follower and retries later", () => {
  const e = election();
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  e.send({ type: "LEASE_ERROR", operation: "create", message: "timeout" });
  assert.is(e.state(), "follower");
  assert.is(e.lastReport()?.reason, "lease-error");
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  assert.is(e.count("lease.create"), 2);
});

test("election - a candidate that hears a live leader during backoff follows it", () => {
  const e = election();
  e.advance(T.leaderTimeoutMs);
  e.send(heartbeat(3));
  assert.is(e.state(), "follower");
  e.advance(T.electionBackoffMaxMs);
  assert.is(e.count("lease.create"), 0, "no create after following a leader");
});

test("election - the leader renews every heartbeat interval and heartbeats after each renewal", () => {
  const e = election();
  e.becomeLeader(10);
  let revision = 11;
  for (let i = 0; i < 5; i++) {
    e.advance(T.heartbeatIntervalMs);
    assert.equal(e.commands.at(-1), { type: "lease.renew", epoch: 10, revision });
    revision += 1;
    e.send({ type: "LEASE_RENEWED", revision, latencyMs: 3 });
    assert.equal(e.commands.at(-1), { type: "heartbeat.publish", epoch: 10, resigning: false });
  }
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
});

test("election - a wrong-revision renewal steps down at once", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  const heartbeatsBefore = e.count("heartbeat.publish");
  e.send({ type: "LEASE_LOST" });
  assert.is(e.state(), "steppingDown");
  assert.equal(e.commands.slice(-2), [
    {
      type: "report.publish",
      report: { type: "SteppedDown", epoch: 0, state: "follower", reason: "lease-lost", formerEpoch: 10 },
    },
    { type: "lease.release", epoch: 10, revision: 11 },
  ]);
  e.send({ type: "LEASE_RELEASED", holder: { coordinatorId: OTHER, epoch: 14 } });
  assert.is(e.state(), "follower");
  assert.equal(e.lastReport(), {
    type: "BecameFollower",
    epoch: 14,
    state: "follower",
    reason: "stepped-down",
    leaderId: OTHER,
  });
  e.advance(10 * T.heartbeatIntervalMs);
  assert.is(e.count("heartbeat.publish"), heartbeatsBefore, "no heartbeat after stepping down");
});

test("election - a missed renew deadline whose check never answers steps down after the lease check timeout", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs); // renewal goes out and never comes back
  assert.is(e.commands.at(-1)?.type, "lease.renew");
  // The deadline runs from when the create was sent: renewDeadline - latency (2 ms) after it.
  e.advance(T.renewDeadlineMs - T.heartbeatIntervalMs - 2 - 1);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "valid" } });
  const commandsBefore = e.commands.length;
  e.advance(1);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } }, "past the deadline the renewal in flight decides");
  e.advance(T.leaderTimeoutMs - 1);
  assert.equal(e.commands.slice(commandsBefore), [], "nothing is published or asked while unsure");
  e.advance(1);
  assert.is(e.state(), "steppingDown");
  // A late success of the lost renewal changes nothing.
  e.send({ type: "LEASE_RENEWED", revision: 12, latencyMs: 900 });
  assert.is(e.state(), "steppingDown");
  assert.equal(e.lastReport(), {
    type: "SteppedDown",
    epoch: 0,
    state: "follower",
    reason: "renew-deadline-missed",
    formerEpoch: 10,
  });
  e.send({ type: "LEASE_RELEASED", holder: null });
  assert.equal(e.lastReport(), { type: "BecameFollower", epoch: 0, state: "follower", reason: "stepped-down" });
  assert.not.ok(
    e
      .reports()
      .slice(-2)
      .some((r) => r.epoch === 10),
    "a coordinator that lost its lease never reports under its old epoch",
  );
});

/**
 * A leader with a monitor of two clients renews once, then its process is paused for
 * `pauseMs`, starting `phaseMs` after that renewal succeeded. The SimulatedClock jumps over
 * the pause in one step and then fires every timer that fell due, in order: what Node does
 * when a stopped process continues.
 */
function pausedLeader(phaseMs: number, pauseMs: number) {
  const e = election();
  e.becomeLeader(10);
  const monitor = e.actor.system.get("monitor")!;
  monitor.send({
    type: "REGISTRATIONS_LOADED",
    records: ["a", "b"].map((subject, i) => ({ registration: { subject, metadata: {} }, revision: i + 1, atMs: 0 })),
  });
  e.advance(T.heartbeatIntervalMs);
  e.send({ type: "LEASE_RENEWED", revision: 12, latencyMs: 3 });
  e.advance(phaseMs);
  const before = { commands: e.commands.length, monitorCommands: e.monitorCommands.length };
  e.clock.increment(pauseMs);
  return { e, monitor, before };
}

test("election - a leader that wakes past its renew deadline checks its lease and leads on under the same epoch", () => {
  // 1.2 s paused, 500 ms after a renewal: 1.7 s without one, past the 1.5 s deadline.
  const { e, monitor, before } = pausedLeader(500, 1200);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } });
  assert.equal(
    e.commands.slice(before.commands),
    [{ type: "lease.renew", epoch: 10, revision: 12 }],
    "one renewal against its own revision; no heartbeat, no report while unsure",
  );
  e.send({ type: "LEASE_RENEWED", revision: 13, latencyMs: 4 });
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
  assert.equal(e.commands.at(-1), { type: "heartbeat.publish", epoch: 10, resigning: false }, "heartbeats again, same epoch");
  assert.is(e.actor.getSnapshot().context.epoch, 10);
  assert.is(e.actor.system.get("monitor"), monitor, "the same monitor runs on");
  const loads = e.monitorCommands.filter((c) => c.type === "registrations.load" || c.type === "monitor.stop");
  assert.equal(loads, [{ type: "registrations.load" }], "the monitor was neither stopped nor loaded again");
  assert.equal(
    e.reports().map((r) => r.type),
    ["BecameFollower", "BecameCandidate", "BecameLeader"],
    "no SteppedDown, no second BecameLeader",
  );
  // It goes on renewing from the new revision, and the deadline runs from the check.
  e.advance(T.heartbeatIntervalMs);
  assert.equal(e.commands.at(-1), { type: "lease.renew", epoch: 10, revision: 13 });
  assert.ok(e.monitorCommands.length > before.monitorCommands, "the monitor kept working");
});

test("election - a check refused after the renew deadline steps down", () => {
  const { e } = pausedLeader(500, 1200);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } });
  e.send({ type: "LEASE_LOST" });
  assert.is(e.state(), "steppingDown");
  assert.equal(e.commands.slice(-2), [
    { type: "report.publish", report: { type: "SteppedDown", epoch: 0, state: "follower", reason: "lease-lost", formerEpoch: 10 } },
    { type: "lease.release", epoch: 10, revision: 12 },
  ]);
  assert.is(e.actor.system.get("monitor"), undefined, "the monitor stopped");
});

test("election - a check that fails without an answer after the renew deadline steps down", () => {
  const { e, before } = pausedLeader(500, 1200);
  e.send({ type: "LEASE_ERROR", operation: "renew", message: "timeout" });
  assert.is(e.state(), "steppingDown", "not retried: the leader cannot tell whether the write landed");
  assert.is(e.lastReport()?.reason, "renew-deadline-missed");
  assert.is(e.commands.slice(before.commands).filter((c) => c.type === "lease.renew").length, 1, "exactly one check");
  assert.is(e.count("heartbeat.publish"), 2, "no heartbeat since the one after the last renewal");
});

test("election - a leader whose last renewal was slow renews at once when its deadline passes", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  // A slow answer leaves 900 ms of the deadline, less than the 1 s until the next renewal.
  e.send({ type: "LEASE_RENEWED", revision: 12, latencyMs: 600 });
  const renewals = e.count("lease.renew");
  e.advance(T.renewDeadlineMs - 600 - 1);
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
  e.advance(1);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } });
  assert.is(e.count("lease.renew"), renewals + 1, "the check goes out at the deadline, not at the next interval");
  assert.equal(e.commands.at(-1), { type: "lease.renew", epoch: 10, revision: 12 });
});

test("election - a check answered too late to count is asked again against the new revision", () => {
  const { e, before } = pausedLeader(500, 1200);
  // The answer waited out another pause: it proves nobody wrote the key, not that the lease is valid now.
  e.send({ type: "LEASE_RENEWED", revision: 13, latencyMs: T.renewDeadlineMs });
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } });
  assert.equal(
    e.commands.slice(before.commands),
    [
      { type: "lease.renew", epoch: 10, revision: 12 },
      { type: "lease.renew", epoch: 10, revision: 13 },
    ],
    "no heartbeat for the late answer; a second check at once",
  );
  e.send({ type: "LEASE_RENEWED", revision: 14, latencyMs: 2 });
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
  assert.equal(e.commands.at(-1), { type: "heartbeat.publish", epoch: 10, resigning: false });
});

test("election - a successful renewal restarts the renew deadline, minus its latency", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  e.send({ type: "LEASE_RENEWED", revision: 12, latencyMs: 400 });
  // Deadline now ends renewDeadline - 400 ms from here; the next renewal is outstanding meanwhile.
  e.advance(T.heartbeatIntervalMs);
  assert.is(e.commands.at(-1)?.type, "lease.renew");
  e.advance(T.renewDeadlineMs - 400 - T.heartbeatIntervalMs - 1);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "valid" } });
  e.advance(1);
  assert.equal(e.state(), { leader: { renewal: "renewing", lease: "unsure" } });
});

test("election - a renewal error is retried soon, within the renew deadline", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  e.send({ type: "LEASE_ERROR", operation: "renew", message: "timeout" });
  assert.equal(e.state(), { leader: { renewal: "retrying", lease: "valid" } });
  e.advance(T.heartbeatIntervalMs / 4);
  assert.is(e.count("lease.renew"), 2);
  e.send({ type: "LEASE_RENEWED", revision: 12, latencyMs: 5 });
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } }, "the retry kept the leadership");
});

test("election - a resigning heartbeat starts an election without waiting for the timeout", () => {
  const e = election();
  e.send(heartbeat(5));
  e.advance(100);
  e.send(heartbeat(5, OTHER, true));
  assert.equal(e.state(), { candidate: "backoff" });
  assert.equal(e.lastReport(), { type: "BecameCandidate", epoch: 0, state: "candidate", reason: "leader-resigned" });
  e.advance(T.electionBackoffMaxMs);
  assert.is(e.count("lease.create"), 1);
});

test("election - a named successor stands at once, without the backoff", () => {
  const e = election();
  e.send(heartbeat(5));
  e.advance(100);
  e.send(heartbeat(5, OTHER, true, ME));
  assert.equal(e.lastReport(), { type: "BecameCandidate", epoch: 0, state: "candidate", reason: "leader-resigned" });
  e.advance(1);
  assert.is(e.count("lease.create"), 1, "no backoff for the successor");
  // Its predecessor is still deleting the key: it tries again soon, first at the short interval.
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
  assert.equal(e.state(), { candidate: "lingering" });
  e.advance(handoffRetryMs(T) - 1);
  assert.is(e.count("lease.create"), 1);
  e.advance(1);
  assert.is(e.count("lease.create"), 2);
  e.send({ type: "LEASE_CREATED", epoch: 20, revision: 21, latencyMs: 1 });
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
  // A resignation naming someone else still backs off, and the next candidacy is not a handoff.
  const other = election();
  other.send(heartbeat(5));
  other.send(heartbeat(5, OTHER, true, "coord-third"));
  other.advance(T.electionBackoffMinMs - 1);
  assert.is(other.count("lease.create"), 0, "backs off when it is not the successor");
  other.advance(T.electionBackoffMaxMs);
  assert.is(other.count("lease.create"), 1);
});

test("election - a lease left by a silent leader is tried again until it expires, not a leader timeout later", () => {
  const e = election();
  e.send(heartbeat(5));
  // The leader dies between its renewal and its heartbeat: silence, then a candidacy.
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  assert.is(e.count("lease.create"), 1);
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
  assert.equal(e.state(), { candidate: "lingering" }, "the holder it heard last, now silent: the lease lingers");
  assert.is(e.lastReport()?.type, "BecameCandidate", "no report while it waits for the lease to expire");
  e.advance(leaseRetryMs(T));
  assert.is(e.count("lease.create"), 2, "tried again after the retry interval");
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
  e.advance(leaseRetryMs(T));
  e.send({ type: "LEASE_CREATED", epoch: 9, revision: 10, latencyMs: 1 });
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } });
});

test("election - the tries on a lingering lease are bounded, and a live leader's heartbeat ends them", () => {
  const e = election();
  e.send(heartbeat(5));
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  for (let i = 1; i < maxCreateAttempts(T); i++) {
    e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
    assert.equal(e.state(), { candidate: "lingering" }, `try ${i}`);
    e.advance(leaseRetryMs(T));
  }
  assert.is(e.count("lease.create"), maxCreateAttempts(T));
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
  assert.is(e.state(), "follower", "out of tries: it waits for the leader timeout, as before");
  assert.is(e.lastReport()?.reason, "lost-election");
  // A newer epoch's holder has just won: it heartbeats at once, so the candidate follows.
  const won = election();
  won.send(heartbeat(5));
  won.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  won.send({ type: "LEASE_TAKEN", holder: { coordinatorId: "coord-third", epoch: 6 } });
  assert.is(won.state(), "follower");
  // While it waits on a lingering lease, the new leader's heartbeat is followed.
  const heard = election();
  heard.send(heartbeat(5));
  heard.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  heard.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 5 } });
  heard.send(heartbeat(8, "coord-third"));
  assert.is(heard.state(), "follower");
  assert.equal(heard.lastReport(), {
    type: "FollowingLeader",
    epoch: 8,
    state: "follower",
    reason: "leader-seen",
    leaderId: "coord-third",
  });
});

test("election - lower-epoch heartbeats are ignored", () => {
  const e = election();
  e.send(heartbeat(7));
  const reports = e.reports().length;
  // A stale leader keeps heartbeating under epoch 6: it must neither reset the timer nor be followed.
  for (let i = 0; i < 3; i++) {
    e.advance(500);
    e.send(heartbeat(6, "coord-stale"));
  }
  e.advance(T.leaderTimeoutMs - 1500 - 1);
  assert.is(e.state(), "follower");
  assert.is(e.reports().length, reports, "no report for stale heartbeats");
  e.advance(1);
  assert.equal(e.state(), { candidate: "backoff" }, "the stale heartbeats did not hold off the election");
  // A stale resigning heartbeat does not start anything either.
  const e2 = election();
  e2.send(heartbeat(7));
  e2.send(heartbeat(6, "coord-stale", true));
  assert.is(e2.state(), "follower");
});

test("election - a leader that hears a newer epoch steps down", () => {
  const e = election();
  e.becomeLeader(10);
  e.send(heartbeat(9, "coord-stale"));
  assert.equal(e.state(), { leader: { renewal: "waiting", lease: "valid" } }, "a lower epoch is ignored");
  e.send(heartbeat(12));
  assert.is(e.state(), "steppingDown");
  assert.equal(e.lastReport(), {
    type: "SteppedDown",
    epoch: 12,
    state: "follower",
    reason: "superseded",
    leaderId: OTHER,
    formerEpoch: 10,
  });
  e.send({ type: "LEASE_RELEASED", holder: { coordinatorId: OTHER, epoch: 12 } });
  assert.equal(e.lastReport(), { type: "BecameFollower", epoch: 12, state: "follower", reason: "stepped-down", leaderId: OTHER });
});

test("election - stepping down gives up after the release timeout when NATS does not answer", () => {
  const e = election();
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  e.send({ type: "LEASE_LOST" });
  e.advance(T.leaderTimeoutMs);
  assert.is(e.state(), "follower");
  assert.equal(e.lastReport(), { type: "BecameFollower", epoch: 0, state: "follower", reason: "stepped-down" });
});

test("election - a stop asked for while stepping down stops once stepping down ends, however it ends", () => {
  const endings: [string, (e: ReturnType<typeof election>) => void][] = [
    ["released", (e) => e.send({ type: "LEASE_RELEASED", holder: { coordinatorId: OTHER, epoch: 14 } })],
    ["release failed", (e) => e.send({ type: "LEASE_ERROR", operation: "release", message: "timeout" })],
    ["release timed out", (e) => e.advance(T.leaderTimeoutMs)],
  ];
  for (const [ending, end] of endings) {
    const e = election();
    e.becomeLeader(10);
    e.advance(T.heartbeatIntervalMs); // a renewal is out
    e.send({ type: "LEASE_LOST" });
    e.send({ type: "RESIGN" });
    assert.is(e.state(), "steppingDown", `${ending}: the release is still out`);
    const reportsBefore = e.reports().length;
    end(e);
    assert.is(e.state(), "stopped", ending);
    assert.is(e.actor.getSnapshot().status, "done", ending);
    const after = e.reports().slice(reportsBefore);
    assert.equal(
      after.map(({ type, state, reason, formerEpoch }) => ({ type, state, reason, formerEpoch })),
      [{ type: "Stopped", state: "stopped", reason: "shutdown", formerEpoch: 10 }],
      `${ending}: one Stopped report, no BecameFollower`,
    );
  }
});

test("election - a resigning leader heartbeats resigning, releases the lease and stops", () => {
  const e = election();
  e.becomeLeader(10);
  e.send({ type: "RESIGN" });
  assert.is(e.state(), "resigning");
  assert.equal(e.monitorCommands.at(-1), { type: "monitor.stop" }, "the monitor is stopped first");
  assert.equal(e.commands.slice(-3), [
    {
      type: "report.publish",
      report: { type: "SteppedDown", epoch: 0, state: "follower", reason: "shutdown", formerEpoch: 10 },
    },
    { type: "heartbeat.publish", epoch: 10, resigning: true },
    { type: "lease.release", epoch: 10, revision: 11 },
  ]);
  e.send({ type: "LEASE_RELEASED", holder: null });
  assert.is(e.state(), "stopped");
  assert.is(e.actor.getSnapshot().status, "done");
  assert.equal(e.lastReport(), {
    type: "Stopped",
    epoch: 0,
    state: "stopped",
    reason: "shutdown",
    formerEpoch: 10,
  });
});

test("election - a follower or waiting candidate stops at once on resign", () => {
  const follower = election();
  follower.send({ type: "RESIGN" });
  assert.is(follower.state(), "stopped");
  const candidate = election();
  candidate.advance(T.leaderTimeoutMs);
  candidate.send({ type: "RESIGN" });
  assert.is(candidate.state(), "stopped");
  assert.is(candidate.count("lease.create"), 0);
  assert.is(candidate.lastReport()?.type, "Stopped");
});

test("election - resigning while the create is in flight releases a lease it then wins", () => {
  const e = election();
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  e.send({ type: "RESIGN" });
  assert.equal(e.state(), { candidate: "acquiring" }, "waits for the create's answer");
  e.send({ type: "LEASE_CREATED", epoch: 20, revision: 21, latencyMs: 1 });
  assert.is(e.state(), "resigning");
  assert.is(e.commands.at(-1)?.type, "lease.release");
  assert.ok(!e.reports().some((r) => r.type === "BecameLeader"), "never reports leadership it will not use");
});

test("election - leaving leadership stops the monitor and every client actor", () => {
  const e = election();
  e.becomeLeader(10);
  assert.equal(e.monitorCommands, [{ type: "registrations.load" }], "a new leader's monitor loads the registrations");
  const monitor = e.actor.system.get("monitor");
  assert.ok(monitor, "the monitor runs while leading");
  monitor!.send({
    type: "REGISTRATIONS_LOADED",
    records: ["a", "b", "c"].map((subject, i) => ({ registration: { subject, metadata: {} }, revision: i + 1, atMs: e.clock.now() })),
  });
  e.advance(T.heartbeatIntervalMs); // pings go out; the renewal is in flight
  const pinged = e.monitorCommands.flatMap((c) => (c.type === "clients.ping" ? c.subjects : []));
  assert.equal(pinged.sort(), ["a", "b", "c"], "each client was pinged once");
  const owners = () => Object.values(e.actor.system.getSnapshot()._scheduledEvents).map((t) => t.source.id);
  assert.ok(owners().includes("monitor"), "the monitor's sweep timer is set while leading");
  e.send({ type: "LEASE_LOST" });
  assert.is(e.actor.system.get("monitor"), undefined, "the monitor is gone");
  assert.is(e.monitorCommands.at(-1)?.type, "monitor.stop", "the edge is told to stop pulling");
  assert.not.ok(owners().includes("monitor"), "its sweep timer is cancelled");
  const after = e.monitorCommands.length;
  e.advance(20_000);
  assert.equal(e.monitorCommands.slice(after), [], "no sweep, ping, report or removal after leadership ended");
});

test("election - every transition emits exactly one report", () => {
  const e = election();
  const top = (value: unknown) => (typeof value === "string" ? value : Object.keys(value as object)[0]);
  /** One row per processed event: the state before and after, and the reports it emitted. */
  const steps: { from: string; to: string; reports: string[] }[] = [];
  let previous = top(e.state());
  let reportsBefore = e.reports().length;
  e.actor.subscribe((snapshot) => {
    const now = top(snapshot.value);
    steps.push({
      from: previous!,
      to: now!,
      reports: e
        .reports()
        .slice(reportsBefore)
        .map((r) => r.type),
    });
    previous = now;
    reportsBefore = e.reports().length;
  });
  e.becomeLeader(10);
  e.advance(T.heartbeatIntervalMs);
  e.send({ type: "LEASE_LOST" });
  e.send({ type: "LEASE_RELEASED", holder: null });
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  e.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 30 } });
  e.send(heartbeat(31, "coord-third"));
  e.send({ type: "RESIGN" });

  const changes = steps.filter((s) => s.from !== s.to);
  assert.equal(
    changes.map((s) => `${s.from}->${s.to}: ${s.reports.join(",")}`),
    [
      "follower->candidate: BecameCandidate",
      "candidate->leader: BecameLeader",
      "leader->steppingDown: SteppedDown",
      "steppingDown->follower: BecameFollower",
      "follower->candidate: BecameCandidate",
      "candidate->follower: BecameFollower",
      "follower->stopped: Stopped",
    ],
  );
  // Within a state, only learning of a new leader is reported.
  const within = steps.filter((s) => s.from === s.to).flatMap((s) => s.reports);
  assert.equal(within, ["FollowingLeader"]);
});

test("election - an action or guard wired to an event it does not handle throws instead of doing nothing", () => {
  const { actions, guards } = electionMachine.implementations;
  // Typed for the election's own context and events: wired here to a bare machine on purpose.
  const implementations = { actions, guards } as unknown as Parameters<typeof createMachine>[1];
  const wirings = [
    ...["followHeartbeatSender", "recordHolder", "recordLeaseCreated", "recordRenewal"].map((name) => ({ name, on: { actions: name } })),
    ...["isLiveLeaderHeartbeat", "isNewLeader", "isLeaderResignation", "isNewerLeaderHeartbeat", "isFreshRenewal"].map((name) => ({
      name,
      on: { guard: name, target: ".done" },
    })),
  ];
  for (const { name, on } of wirings) {
    // RESIGN carries none of the fields these read: a machine that wires them to it is wrong.
    const wired = createMachine({ initial: "waiting", states: { waiting: {}, done: {} }, on: { RESIGN: on } }, implementations);
    const errors: unknown[] = [];
    const actor = createActor(wired);
    actor.subscribe({ error: (err) => errors.push(err) });
    actor.start();
    actor.send({ type: "RESIGN" });
    assert.is(actor.getSnapshot().status, "error", `${name} on RESIGN`);
    assert.match(String(errors[0]), /RESIGN/, `${name}: the error names the event`);
  }
});

test("election - a leader hands over: resigning heartbeat naming the successor, release, then it follows on", () => {
  const e = election();
  e.becomeLeader(10);
  e.send({ type: "HAND_OVER", successor: OTHER });
  assert.is(e.state(), "handingOver");
  assert.equal(e.monitorCommands.at(-1), { type: "monitor.stop" }, "the monitor is stopped first");
  assert.equal(e.commands.slice(-3), [
    {
      type: "report.publish",
      report: { type: "SteppedDown", epoch: 0, state: "follower", reason: "handover", formerEpoch: 10 },
    },
    { type: "heartbeat.publish", epoch: 10, resigning: true, successor: OTHER },
    { type: "lease.release", epoch: 10, revision: 11 },
  ]);
  e.send({ type: "LEASE_RELEASED", holder: null });
  assert.is(e.state(), "follower", "it stays in the election");
  assert.equal(e.lastReport(), { type: "BecameFollower", epoch: 0, state: "follower", reason: "stepped-down" });
  // It follows the successor like any leader, and the next resignation of its own names none.
  e.send(heartbeat(12));
  assert.is(e.lastReport()?.type, "FollowingLeader");
  e.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  e.send({ type: "LEASE_CREATED", epoch: 20, revision: 21, latencyMs: 1 });
  e.send({ type: "RESIGN" });
  assert.equal(e.commands.filter((c) => c.type === "heartbeat.publish" && c.resigning).at(-1), {
    type: "heartbeat.publish",
    epoch: 20,
    resigning: true,
  });
});

test("election - a successor heard before the release's answer is followed, and the answer does not forget it", () => {
  const e = election();
  e.becomeLeader(10);
  e.send({ type: "HAND_OVER", successor: OTHER });
  e.send(heartbeat(12));
  e.send({ type: "LEASE_RELEASED", holder: null }); // read before the successor's create landed
  assert.is(e.state(), "follower");
  assert.equal(e.actor.getSnapshot().context.leader, { coordinatorId: OTHER, epoch: 12 });
  assert.equal(e.lastReport(), { type: "BecameFollower", epoch: 12, state: "follower", reason: "stepped-down", leaderId: OTHER });
});

test("election - a stop asked for while handing over stops once the release ends; others ignore HAND_OVER", () => {
  const e = election();
  e.becomeLeader(10);
  e.send({ type: "HAND_OVER", successor: OTHER });
  e.send({ type: "RESIGN" });
  assert.is(e.state(), "handingOver");
  e.send({ type: "LEASE_ERROR", operation: "release", message: "timeout" });
  assert.is(e.state(), "stopped");
  const follower = election();
  follower.send({ type: "HAND_OVER", successor: OTHER });
  assert.is(follower.state(), "follower");
  assert.is(follower.count("heartbeat.publish"), 0);
});

test("election - the standing delay adds to every backoff but a named successor's", () => {
  const delayed = election({ random: createRandom(7) });
  const plain = election({ random: createRandom(7) });
  delayed.send({ type: "STANDING_DELAY", ms: 400 });
  for (const e of [delayed, plain]) e.advance(T.leaderTimeoutMs);
  const backoff = plain.actor.getSnapshot().context.backoffMs;
  assert.is(delayed.actor.getSnapshot().context.backoffMs, backoff + 400, "the same random backoff, 400 ms later");
  delayed.advance(backoff + 399);
  assert.is(delayed.count("lease.create"), 0);
  delayed.advance(1);
  assert.is(delayed.count("lease.create"), 1);
  // A lingering lease: the heir (no standing delay) tries again every leaseRetryMs, the others that much later.
  delayed.send({ type: "LEASE_TAKEN", holder: { coordinatorId: OTHER, epoch: 0 } });
  assert.equal(delayed.state(), { candidate: "lingering" });
  delayed.advance(leaseRetryMs(T) + 399);
  assert.is(delayed.count("lease.create"), 1);
  delayed.advance(1);
  assert.is(delayed.count("lease.create"), 2);
  // Named successor: no backoff at all, standing delay or not.
  const successor = election();
  successor.send({ type: "STANDING_DELAY", ms: 400 });
  successor.send(heartbeat(5));
  successor.send(heartbeat(5, OTHER, true, ME));
  successor.advance(1);
  assert.is(successor.count("lease.create"), 1);
});

test.run();
