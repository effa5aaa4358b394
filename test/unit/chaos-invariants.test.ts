/**
 * The checks of `npm run chaos` on hand-made records: each passes on a correct run and
 * fails on the sequence it exists to catch. Also the schedule: the same seed gives the
 * same faults, and cluster faults never overlap.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { checkDuplicateDeaths, checkFalseDeaths, checkFalseSuspects, checkMissedDeaths } from "../../harness/chaos-invariants/deaths.js";
import {
  checkHeartbeatEpochs,
  checkLeaderFaultsRan,
  checkMonitoredAfterTakeover,
  checkOverlappingEpochs,
  checkStaleEpochs,
} from "../../harness/chaos-invariants/leadership.js";
import { checkLeavesReported, checkNoReportAfterLeave } from "../../harness/chaos-invariants/leaves.js";
import {
  DEFAULT_CHAOS_TIMINGS,
  REFUSED_KINDS,
  type ChaosRecord,
  type ClientAction,
  type SeenElection,
  type SeenHeartbeat,
  type SeenPresence,
} from "../../harness/chaos-invariants/record.js";
import {
  BALANCE_BOUND_MS,
  checkOneLeaderPerEpoch,
  checkPartitionsBalanced,
  checkReportsFromLeader,
  runPartitionedChecks,
  type CoordinatorEvent,
  type PartitionedRecord,
} from "../../harness/chaos-invariants/partitions.js";
import { checkRefusedIgnored, checkRegistrationsReported, checkUnknownSubjects } from "../../harness/chaos-invariants/registrations.js";
import { runChecks } from "../../harness/chaos-invariants/run-checks.js";
import { blindWindows, ClientTimeline, deadlineFrom, failovers } from "../../harness/chaos-invariants/timeline.js";
import { allPassed, verdictOf } from "../../harness/chaos-invariants/verdict.js";
import {
  fingerprint,
  isClusterFault,
  planSchedule,
  SETTLE_AFTER_MS,
  UNREGISTER_BEFORE_LEADER_FAULT_MS,
} from "../../harness/chaos-schedule.js";
import { partitionOf } from "../../src/protocol/partition.js";

const T = DEFAULT_CHAOS_TIMINGS; // dead 5000, ping 750, travel 250, allowance 2000, takeover bound 5000, answer slack 500, leave bound 3000

const rep = (at: number, type: string, clientSubject: string, epoch = 1, coordinatorId = "c1", seq = 1): SeenPresence => ({
  at,
  type,
  clientSubject,
  coordinatorId,
  epoch,
  seq,
});
const hb = (at: number, epoch: number, coordinatorId: string): SeenHeartbeat => ({ at, epoch, coordinatorId });
const el = (at: number, type: string, epoch: number, coordinatorId: string): SeenElection => ({ at, type, epoch, coordinatorId });
const a = (at: number, subject: string, kind: ClientAction["kind"]): ClientAction => ({ at, subject, kind });

/** Heartbeats of one leader every second over [from, to]. */
const beats = (from: number, to: number, epoch: number, id: string) =>
  Array.from({ length: Math.floor((to - from) / 1000) + 1 }, (_, i) => hb(from + i * 1000, epoch, id));

function record(parts: Partial<ChaosRecord>): ChaosRecord {
  const actions = parts.actions ?? [];
  return {
    ...parts,
    presence: parts.presence ?? [],
    heartbeats: parts.heartbeats ?? [],
    elections: parts.elections ?? [],
    actions,
    subjects: parts.subjects ?? new Set(actions.map((x) => x.subject)),
    endAt: parts.endAt ?? 100_000,
  };
}

test("chaos timeline - registered, silenced and answering-since follow the harness's actions", () => {
  const tl = new ClientTimeline([
    a(0, "x", "register"),
    a(1000, "x", "silence"),
    a(3000, "x", "revive"),
    a(9000, "x", "unregister"),
    a(12_000, "x", "register"),
  ]);
  assert.equal(tl.stateAt("x", 500), { registered: true, silenced: false, answeringSince: 0, lastRegisteredAt: 0 });
  assert.is(tl.stateAt("x", 2000).answeringSince, undefined);
  assert.is(tl.stateAt("x", 2000).silenced, true);
  assert.is(tl.stateAt("x", 4000).answeringSince, 3000);
  assert.is(tl.stateAt("x", 10_000).registered, false);
  assert.is(tl.stateAt("x", 13_000).answeringSince, 12_000);
  assert.is(tl.stateAt("never", 1).registered, false);
});

test("chaos checks - false deaths: a client answering throughout the dead timeout reported dead fails", () => {
  const actions = [a(0, "ok", "register"), a(0, "bad", "register"), a(10_000, "ok", "silence")];
  const good = record({ actions, presence: [rep(15_100, "NodeDead", "ok")] });
  assert.is(checkFalseDeaths(good, T).violations.length, 0);
  assert.is(checkFalseDeaths(good, T).checked, 1);
  const bad = record({ actions, presence: [rep(15_100, "NodeDead", "bad")] });
  const result = checkFalseDeaths(bad, T);
  assert.is(result.violations.length, 1);
  assert.match(result.violations[0]!.message, /bad/);
});

test("chaos checks - false deaths: a NodeDead right after a revive is not a false death (the leader may have decided first)", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence"), a(14_900, "x", "revive")];
  assert.is(checkFalseDeaths(record({ actions, presence: [rep(15_050, "NodeDead", "x")] }), T).violations.length, 0);
  // ... but answering for a whole dead timeout again after the revive, it is.
  assert.is(checkFalseDeaths(record({ actions, presence: [rep(20_200, "NodeDead", "x")] }), T).violations.length, 1);
});

test("chaos checks - missed deaths: a silenced client without NodeDead by its deadline fails; a late one fails too", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence")];
  const heartbeats = beats(0, 30_000, 1, "c1");
  const ok = record({ actions, heartbeats, presence: [rep(15_100, "NodeDead", "x")], endAt: 30_000 });
  assert.equal(checkMissedDeaths(ok, T).violations, []);
  assert.is(checkMissedDeaths(ok, T).checked, 1);
  const missing = record({ actions, heartbeats, presence: [], endAt: 30_000 });
  assert.match(checkMissedDeaths(missing, T).violations[0]!.message, /never got a NodeDead/);
  const late = record({ actions, heartbeats, presence: [rep(19_000, "NodeDead", "x")], endAt: 30_000 });
  assert.match(checkMissedDeaths(late, T).violations[0]!.message, /after its deadline/);
});

test("chaos checks - missed deaths: a takeover restarts the dead timer; a revive before the deadline is not judged", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence")];
  // A new epoch at 14 s: the new leader's dead timer starts then, so 19.2 s is on time.
  const heartbeats = [...beats(0, 13_000, 1, "c1"), ...beats(14_000, 30_000, 2, "c2")];
  const r = record({ actions, heartbeats, presence: [rep(19_200, "NodeDead", "x", 2, "c2")], endAt: 30_000 });
  assert.equal(checkMissedDeaths(r, T).violations, []);
  const revived = record({ actions: [...actions, a(13_000, "x", "revive")], heartbeats, presence: [], endAt: 30_000 });
  assert.equal(checkMissedDeaths(revived, T).violations, []);
  assert.is(checkMissedDeaths(revived, T).skipped, 1);
  // Observation that ends before the deadline cannot judge it.
  assert.equal(checkMissedDeaths(record({ actions, heartbeats, presence: [], endAt: 12_000 }), T).violations, []);
});

test("chaos checks - duplicate NodeDead: a dead client brought back by a reload and reported dead again fails", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence")];
  const dup = record({
    actions,
    presence: [rep(15_000, "NodeDead", "x", 1, "c1"), rep(18_000, "NodePresent", "x", 2, "c2"), rep(23_000, "NodeDead", "x", 2, "c2")],
  });
  const result = checkDuplicateDeaths(dup, T);
  assert.is(result.violations.length, 1);
  assert.match(result.violations[0]!.message, /no registration in between/);
  // Registered again by the harness in between: two lives, two deaths.
  const twoLives = record({
    actions: [...actions, a(16_000, "x", "revive"), a(16_010, "x", "register"), a(20_000, "x", "silence")],
    presence: [rep(15_000, "NodeDead", "x"), rep(16_020, "NodePresent", "x"), rep(25_000, "NodeDead", "x")],
  });
  assert.equal(checkDuplicateDeaths(twoLives, T).violations, []);
  assert.is(checkDuplicateDeaths(twoLives, T).checked, 2);
});

test("chaos checks - stale epochs: a presence report under an epoch older than one already seen fails", () => {
  const ok = record({
    presence: [rep(1, "NodeState", "x", 1), rep(3, "NodeState", "x", 2, "c2")],
    elections: [el(2, "BecameLeader", 2, "c2")],
  });
  assert.equal(checkStaleEpochs(ok).violations, []);
  const afterElection = record({
    presence: [rep(1, "NodeState", "x", 1), rep(3, "NodeState", "x", 1)],
    elections: [el(2, "BecameLeader", 2, "c2")],
  });
  assert.match(checkStaleEpochs(afterElection).violations[0]!.message, /after epoch 2 was seen \(in BecameLeader from c2/);
  const afterPresence = record({ presence: [rep(1, "NodeState", "x", 3, "c3"), rep(2, "NodeState", "y", 2, "c2")] });
  assert.is(checkStaleEpochs(afterPresence).violations.length, 1);
});

test("chaos checks - overlapping epochs: two publishers of one epoch, or publishing under a lower epoch after another's higher, fail", () => {
  const ok = record({
    presence: [rep(1, "NodeState", "x", 1, "c1"), rep(2, "NodeState", "x", 5, "c2"), rep(3, "NodeState", "x", 9, "c1")],
  });
  assert.equal(checkOverlappingEpochs(ok).violations, []);
  assert.is(checkOverlappingEpochs(ok).checked, 3);
  const shared = record({ presence: [rep(1, "NodeState", "x", 4, "c1"), rep(2, "NodeState", "y", 4, "c2")] });
  assert.match(checkOverlappingEpochs(shared).violations[0]!.message, /already c1's/);
  const behind = record({
    presence: [rep(1, "NodeState", "x", 4, "c1"), rep(2, "NodeState", "x", 6, "c2"), rep(3, "NodeState", "y", 4, "c1")],
  });
  assert.match(checkOverlappingEpochs(behind).violations[0]!.message, /higher epoch 6/);
});

test("chaos checks - heartbeat epochs only grow", () => {
  assert.equal(checkHeartbeatEpochs(record({ heartbeats: [hb(1, 1, "c1"), hb(2, 1, "c1"), hb(3, 4, "c2")] })).violations, []);
  const back = checkHeartbeatEpochs(record({ heartbeats: [hb(1, 1, "c1"), hb(2, 4, "c2"), hb(3, 1, "c1")] }));
  assert.is(back.violations.length, 1);
  assert.match(back.violations[0]!.message, /c1 epoch=1/);
});

test("chaos checks - after a takeover every registered client gets a report of the new epoch within the bound", () => {
  const actions = [a(0, "x", "register"), a(0, "y", "register"), a(0, "gone", "register"), a(3000, "gone", "silence")];
  const heartbeats = [...beats(1000, 9000, 1, "c1"), ...beats(11_000, 30_000, 2, "c2")];
  // "gone" was reported dead before the takeover: its registration was removed, nothing is owed.
  const base = [
    rep(1000, "NodePresent", "x"),
    rep(1000, "NodePresent", "y"),
    rep(1000, "NodePresent", "gone"),
    rep(8000, "NodeDead", "gone"),
  ];
  const ok = record({
    actions,
    heartbeats,
    presence: [...base, rep(11_100, "NodePresent", "x", 2, "c2"), rep(11_100, "NodePresent", "y", 2, "c2")],
    endAt: 30_000,
  });
  const result = checkMonitoredAfterTakeover(ok, T);
  assert.equal(result.violations, []);
  assert.is(result.checked, 2);
  const forgotten = record({
    actions,
    heartbeats,
    presence: [...base, rep(11_100, "NodePresent", "x", 2, "c2"), rep(17_000, "NodeState", "y", 2, "c2")],
    endAt: 30_000,
  });
  const bad = checkMonitoredAfterTakeover(forgotten, T);
  assert.is(bad.violations.length, 1);
  assert.match(bad.violations[0]!.message, /epoch 2 .*: 1 registered client\(s\) got no report within 5000 ms: y/);
});

test("chaos checks - a takeover cut short by the next one is skipped, not failed", () => {
  const actions = [a(0, "x", "register")];
  const heartbeats = [...beats(1000, 6000, 1, "c1"), hb(7000, 2, "c2"), ...beats(9000, 30_000, 3, "c3")];
  const r = record({
    actions,
    heartbeats,
    presence: [rep(1000, "NodePresent", "x"), rep(9100, "NodePresent", "x", 3, "c3")],
    endAt: 30_000,
  });
  const result = checkMonitoredAfterTakeover(r, T);
  assert.equal(result.violations, []);
  assert.is(result.skipped, 1);
});

test("chaos checks - reports for subjects nobody registered (refused input) fail", () => {
  const subjects = new Set(["x"]);
  assert.equal(checkUnknownSubjects(record({ subjects, presence: [rep(1, "NodePresent", "x")] })).violations, []);
  assert.is(checkUnknownSubjects(record({ subjects, presence: [rep(1, "NodePresent", "$SYS.bad")] })).violations.length, 1);
});

test("chaos checks - a stored registration never reported NodePresent (or only much later) fails", () => {
  const actions = [a(1000, "x", "register"), a(1000, "y", "register"), a(1000, "z", "register"), a(2000, "z", "unregister")];
  const heartbeats = beats(0, 30_000, 1, "c1");
  const presence = [rep(990, "NodePresent", "x"), rep(12_000, "NodePresent", "y")];
  const result = checkRegistrationsReported(record({ actions, heartbeats, presence, endAt: 30_000 }), T);
  assert.is(result.checked, 2);
  assert.is(result.skipped, 1);
  assert.is(result.violations.length, 1);
  assert.match(result.violations[0]!.message, /y registered .*first NodePresent only at 12\.000 s/);
  // A takeover in between extends the deadline: the new leader pulls it.
  const failover = [...beats(0, 5000, 1, "c1"), ...beats(8000, 30_000, 2, "c2")];
  assert.equal(checkRegistrationsReported(record({ actions, heartbeats: failover, presence, endAt: 30_000 }), T).violations, []);
});

test("chaos checks - failovers are timed from the fault, or from the old leader's last heartbeat", () => {
  const heartbeats = [...beats(0, 10_000, 1, "c1"), ...beats(12_100, 20_000, 2, "c2"), ...beats(23_000, 30_000, 3, "c3")];
  const fo = failovers(heartbeats, [{ at: 10_400, kind: "SIGKILL" }]);
  assert.equal(
    fo.map((f) => [f.from, f.to, f.ms, f.cause]),
    [
      ["c1", "c2", 1700, "SIGKILL"],
      ["c2", "c3", 3900, undefined],
    ],
  );
});

test("chaos checks - a clean run passes every check", () => {
  const actions = [
    a(0, "x", "register"),
    a(0, "y", "register"),
    a(0, "z", "register"),
    a(5000, "y", "silence"),
    a(6000, "z", "unregister"),
  ];
  const heartbeats = [...beats(0, 7000, 1, "c1"), ...beats(9000, 25_000, 2, "c2")];
  const presence = [
    rep(100, "NodePresent", "x"),
    rep(100, "NodePresent", "y"),
    rep(100, "NodePresent", "z"),
    rep(6020, "NodeLeft", "z"),
    rep(6600, "NodeSuspect", "y"),
    rep(9050, "NodePresent", "x", 2, "c2"),
    rep(9050, "NodePresent", "y", 2, "c2"),
    rep(14_100, "NodeDead", "y", 2, "c2"),
  ];
  const refused = REFUSED_KINDS.map((kind, i) => ({ at: 200 + i, kind, subject: `bad.${kind}` }));
  const leadershipFaults = [
    { at: 7100, kind: "SIGKILL" },
    { at: 16_000, kind: "SIGSTOP" },
  ];
  const results = runChecks(
    record({
      actions,
      heartbeats,
      presence,
      elections: [el(8900, "BecameLeader", 2, "c2")],
      endAt: 25_000,
      refused,
      trappedPings: [],
      leadershipFaults,
    }),
    T,
  );
  for (const r of results) assert.is(verdictOf(r), "PASS", `${r.name}: checked ${r.checked}, ${JSON.stringify(r.violations)}`);
  assert.ok(allPassed(results));
});

test("chaos verdicts - a check that judged nothing is NOT JUDGED, and the run does not pass", () => {
  assert.is(verdictOf({ checked: 0, violations: [] }), "NOT JUDGED");
  assert.is(verdictOf({ checked: 3, violations: [] }), "PASS");
  assert.is(verdictOf({ checked: 0, violations: [{ at: 1, message: "x" }] }), "FAIL");
  const judged = { name: "a", checked: 5, unit: "things", violations: [] };
  const idle = { name: "b", checked: 0, unit: "things", violations: [] };
  assert.ok(allPassed([judged]));
  assert.not.ok(allPassed([judged, idle]), "an unjudged check fails the run");
});

test("chaos checks - false deaths: a client revived 2 s into its silence and reported dead 3 s later while it answers fails", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence"), a(12_000, "x", "revive")];
  const heartbeats = beats(0, 30_000, 1, "c1");
  // The dead timer was never restarted by the replies after the revive: dead at 15 s.
  const late = checkFalseDeaths(record({ actions, heartbeats, presence: [rep(15_100, "NodeDead", "x")] }), T);
  assert.is(late.violations.length, 1);
  assert.match(late.violations[0]!.message, /answering since 12\.000 s/);
  // Decided before the first reply after the revive could reach the leader: not false.
  assert.equal(checkFalseDeaths(record({ actions, heartbeats, presence: [rep(13_400, "NodeDead", "x")] }), T).violations, []);
});

test("chaos checks - false deaths and suspects: a blind window (no heartbeat, or the harness stalled) does not count as answering", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "silence"), a(12_000, "x", "revive")];
  // The leader stood still from 11.5 s to 14.5 s (no heartbeat): it could not hear the replies.
  const stalled = [...beats(0, 11_500, 1, "c1"), ...beats(14_500, 30_000, 1, "c1")];
  assert.equal(checkFalseDeaths(record({ actions, heartbeats: stalled, presence: [rep(15_100, "NodeDead", "x")] }), T).violations, []);
  // The harness stood still (its clients answered nothing) from 12.5 s to 14.6 s.
  const harnessStalls = [{ from: 12_500, to: 14_600 }];
  const heartbeats = beats(0, 30_000, 1, "c1");
  assert.equal(
    checkFalseDeaths(record({ actions, heartbeats, harnessStalls, presence: [rep(15_100, "NodeDead", "x")] }), T).violations,
    [],
  );
  assert.equal(
    checkFalseSuspects(record({ actions, heartbeats, harnessStalls, presence: [rep(15_100, "NodeSuspect", "x")] }), T).violations,
    [],
  );
  assert.is(checkFalseSuspects(record({ actions, heartbeats, presence: [rep(15_100, "NodeSuspect", "x")] }), T).violations.length, 1);
});

test("chaos checks - false suspects: a NodeSuspect of a client answering for more than two ping intervals plus travel fails", () => {
  const actions = [
    a(0, "ok", "register"),
    a(0, "silent", "register"),
    a(0, "back", "register"),
    a(9000, "silent", "silence"),
    a(8000, "back", "silence"),
    a(9000, "back", "revive"),
  ];
  const heartbeats = beats(0, 30_000, 1, "c1");
  const honest = record({ actions, heartbeats, presence: [rep(10_600, "NodeSuspect", "silent"), rep(10_000, "NodeSuspect", "back")] });
  const good = checkFalseSuspects(honest, T);
  assert.equal(good.violations, []);
  assert.is(good.checked, 2);
  // A suspect that fires early: "ok" has answered for 10 s.
  const bad = checkFalseSuspects(
    record({ actions, heartbeats, presence: [rep(10_000, "NodeSuspect", "ok"), rep(11_100, "NodeSuspect", "back")] }),
    T,
  );
  assert.is(bad.violations.length, 2);
  assert.match(bad.violations[0]!.message, /NodeSuspect ok/);
  assert.match(bad.violations[1]!.message, /NodeSuspect back .*answering since 9\.000 s/);
});

test("chaos checks - NodeLeft: an acknowledged unregistration without a NodeLeft in time fails; a dead client needs none", () => {
  const actions = [
    a(0, "x", "register"),
    a(10_000, "x", "unregister"),
    a(0, "d", "register"),
    a(2000, "d", "silence"),
    a(10_000, "d", "unregister"),
  ];
  const heartbeats = beats(0, 30_000, 1, "c1");
  const dead = rep(7100, "NodeDead", "d");
  const ok = checkLeavesReported(record({ actions, heartbeats, presence: [dead, rep(10_050, "NodeLeft", "x")], endAt: 30_000 }), T);
  assert.equal(ok.violations, []);
  assert.is(ok.checked, 1);
  assert.is(ok.skipped, 1, "the dead client owes no NodeLeft");
  const never = checkLeavesReported(record({ actions, heartbeats, presence: [dead], endAt: 30_000 }), T);
  assert.match(never.violations[0]!.message, /x unregistered .*never reported NodeLeft/);
  const late = checkLeavesReported(record({ actions, heartbeats, presence: [dead, rep(14_000, "NodeLeft", "x")], endAt: 30_000 }), T);
  assert.match(late.violations[0]!.message, /NodeLeft only at 14\.000 s/);
  // A takeover in between: the new leader has the whole bound from its first heartbeat.
  const failover = [...beats(0, 10_000, 1, "c1"), ...beats(12_000, 30_000, 2, "c2")];
  assert.equal(
    checkLeavesReported(
      record({ actions, heartbeats: failover, presence: [dead, rep(14_000, "NodeLeft", "x", 2, "c2")], endAt: 30_000 }),
      T,
    ).violations,
    [],
  );
});

test("chaos checks - no report after leave: a coordinator that ignores a leave, or a new leader that resurrects it, fails", () => {
  const actions = [a(0, "x", "register"), a(10_000, "x", "unregister")];
  const heartbeats = beats(0, 30_000, 1, "c1");
  const ok = checkNoReportAfterLeave(
    record({ actions, heartbeats, presence: [rep(9900, "NodeState", "x"), rep(10_020, "NodeLeft", "x")], endAt: 30_000 }),
    T,
  );
  assert.equal(ok.violations, []);
  assert.is(ok.checked, 1);
  // Ignored: reported on, then dead, never left.
  const ignored = [
    rep(11_500, "NodeState", "x"),
    rep(11_600, "NodeSuspect", "x"),
    rep(13_100, "NodeState", "x"),
    rep(15_200, "NodeDead", "x"),
  ];
  const bad = checkNoReportAfterLeave(record({ actions, heartbeats, presence: ignored, endAt: 30_000 }), T);
  assert.is(bad.violations.length, 1);
  assert.match(bad.violations[0]!.message, /x unregistered .*: 2 report\(s\) after it, first NodeState x .* at 13\.100 s/);
  // Reported after its own NodeLeft: the leave was read and the client kept.
  const kept = checkNoReportAfterLeave(
    record({ actions, heartbeats, presence: [rep(10_020, "NodeLeft", "x"), rep(11_000, "NodeState", "x")], endAt: 30_000 }),
    T,
  );
  assert.is(kept.violations.length, 1);
  // The leader died before reading the leave: the new one loads x, then reads the leave.
  const failover = [...beats(0, 10_000, 1, "c1"), ...beats(12_000, 30_000, 2, "c2")];
  const handed = [rep(12_100, "NodePresent", "x", 2, "c2"), rep(12_200, "NodeLeft", "x", 2, "c2")];
  assert.equal(checkNoReportAfterLeave(record({ actions, heartbeats: failover, presence: handed, endAt: 30_000 }), T).violations, []);
  assert.equal(checkLeavesReported(record({ actions, heartbeats: failover, presence: handed, endAt: 30_000 }), T).violations, []);
  // ... or loads x and reads the leave only later: reported on, then left, within the takeover bound.
  const slow = [rep(12_100, "NodePresent", "x", 2, "c2"), rep(15_500, "NodeState", "x", 2, "c2"), rep(16_500, "NodeLeft", "x", 2, "c2")];
  assert.equal(checkNoReportAfterLeave(record({ actions, heartbeats: failover, presence: slow, endAt: 30_000 }), T).violations, []);
  assert.equal(checkLeavesReported(record({ actions, heartbeats: failover, presence: slow, endAt: 30_000 }), T).violations, []);
  const tooSlow = [rep(12_100, "NodePresent", "x", 2, "c2"), rep(17_500, "NodeLeft", "x", 2, "c2")];
  assert.match(
    checkLeavesReported(record({ actions, heartbeats: failover, presence: tooSlow, endAt: 30_000 }), T).violations[0]!.message,
    /NodeLeft only at 17\.500 s/,
  );
  // A new leader that resurrects x from the bucket: present, reported on, dead; never left.
  const resurrected = [
    rep(12_100, "NodePresent", "x", 2, "c2"),
    rep(13_600, "NodeState", "x", 2, "c2"),
    rep(15_100, "NodeSuspect", "x", 2, "c2"),
    rep(17_100, "NodeDead", "x", 2, "c2"),
  ];
  assert.is(
    checkNoReportAfterLeave(record({ actions, heartbeats: failover, presence: resurrected, endAt: 30_000 }), T).violations.length,
    1,
  );
  assert.is(checkLeavesReported(record({ actions, heartbeats: failover, presence: resurrected, endAt: 30_000 }), T).violations.length, 1);
  // Registered again: reports after that are the new registration's.
  const back = record({
    actions: [...actions, a(12_000, "x", "register")],
    heartbeats,
    presence: [rep(10_020, "NodeLeft", "x"), rep(12_010, "NodePresent", "x")],
    endAt: 30_000,
  });
  assert.equal(checkNoReportAfterLeave(back, T).violations, []);
});

test("chaos checks - refused input: every kind sent, none pinged, none reported", () => {
  const refused = REFUSED_KINDS.map((kind, i) => ({ at: i, kind, subject: `bad.${kind}` }));
  const ok = checkRefusedIgnored(record({ refused, trappedPings: [] }));
  assert.equal(ok.violations, []);
  assert.is(ok.checked, REFUSED_KINDS.length);
  const missing = checkRefusedIgnored(record({ refused: refused.filter((r) => r.kind !== "dollar"), trappedPings: [] }));
  assert.match(missing.violations[0]!.message, /kind dollar was sent/);
  const pinged = checkRefusedIgnored(record({ refused, trappedPings: [{ at: 5, subject: "bad.inbox" }] }));
  assert.match(pinged.violations[0]!.message, /a ping on bad\.inbox \(refused registration, inbox\)/);
  const reported = checkRefusedIgnored(record({ refused, presence: [rep(9, "NodePresent", "bad.over-64-kib")] }));
  assert.match(reported.violations[0]!.message, /over-64-kib/);
  assert.is(verdictOf(checkRefusedIgnored(record({}))), "FAIL", "nothing sent: the kinds are missing");
});

test("chaos checks - leader faults ran: a run without a SIGSTOP and a SIGKILL or SIGTERM of the leader fails", () => {
  assert.is(checkLeaderFaultsRan(record({ leadershipFaults: [] })).violations.length, 2);
  const serverOnly = checkLeaderFaultsRan(
    record({
      leadershipFaults: [
        { at: 1, kind: "SIGSTOP" },
        { at: 2, kind: "server stop" },
      ],
    }),
  );
  assert.match(serverOnly.violations[0]!.message, /no SIGKILL or SIGTERM/);
  assert.equal(
    checkLeaderFaultsRan(
      record({
        leadershipFaults: [
          { at: 1, kind: "SIGSTOP" },
          { at: 2, kind: "SIGTERM" },
        ],
      }),
    ).violations,
    [],
  );
});

test("chaos checks - blind windows move deadlines by their length, and a takeover gives the whole bound again", () => {
  const heartbeats = [...beats(0, 10_000, 1, "c1"), ...beats(12_000, 30_000, 1, "c1")];
  assert.equal(blindWindows({ heartbeats, harnessStalls: [{ from: 20_000, to: 20_400 }] }, T), [
    { from: 10_000, to: 12_000 },
    { from: 20_000, to: 20_400 },
  ]);
  assert.is(deadlineFrom(9000, 3000, [], [{ from: 10_000, to: 12_000 }]), 14_000);
  assert.is(deadlineFrom(9000, 3000, [11_000], []), 14_000);
  assert.is(deadlineFrom(9000, 3000, [11_000], [], 5000), 16_000, "a longer bound after a takeover");
  assert.is(deadlineFrom(9000, 3000, [], []), 12_000);
  // A failover: the gap before the new leader's first heartbeat counts once, not twice.
  assert.is(deadlineFrom(9000, 3000, [12_000], [{ from: 10_000, to: 12_000 }]), 15_000);
});

test("chaos schedule - the same seed gives the same schedule; another seed another one", () => {
  assert.equal(planSchedule(42, 300_000), planSchedule(42, 300_000));
  assert.not.equal(planSchedule(42, 300_000), planSchedule(43, 300_000));
});

test("chaos schedule - cluster faults never overlap and end, settled, within the run", () => {
  for (const seed of [1, 2, 3, 42, 1234, 99_999]) {
    const faults = planSchedule(seed, 300_000);
    let freeAt = 0;
    const kinds = new Set(faults.map((f) => f.kind));
    for (const f of faults) {
      if (!isClusterFault(f.kind)) continue;
      assert.ok(f.at >= freeAt, `seed ${seed}: ${f.kind} at ${f.at} before the previous settled (${freeAt})`);
      freeAt = f.at + f.durationMs + SETTLE_AFTER_MS[f.kind];
      assert.ok(freeAt <= 300_000, `seed ${seed}: ${f.kind} settles within the run`);
      if (f.kind === "stop-leader") assert.ok(f.durationMs > 2000, "stopped past the leader timeout");
    }
    assert.ok(kinds.size >= 8, `seed ${seed}: a 5-minute run has nearly every kind (${[...kinds].join(",")})`);
  }
});

test("chaos schedule - every run unregisters clients, also shortly before every fault that takes the leader away", () => {
  for (const seed of [1, 2, 3, 42, 4022727017]) {
    const faults = planSchedule(seed, 60_000);
    assert.ok(
      faults.some((f) => f.kind === "unregister"),
      `seed ${seed}: unregisters`,
    );
    for (const [i, f] of faults.entries()) {
      if (f.kind !== "kill-coordinator" && f.kind !== "term-leader" && f.kind !== "stop-leader") continue;
      const before = faults[i - 1];
      assert.ok(
        before?.kind === "unregister" && before.at === f.at - UNREGISTER_BEFORE_LEADER_FAULT_MS,
        `seed ${seed}: an unregistration before ${f.kind} at ${f.at}`,
      );
    }
    assert.equal(
      faults.map((f) => f.at),
      [...faults.map((f) => f.at)].sort((x, y) => x - y),
      `seed ${seed}: in time order`,
    );
  }
});

test("chaos schedule - every seed's minute stops the leader past its lease and terminates it", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const kinds = planSchedule(seed, 60_000).map((f) => f.kind);
    assert.ok(kinds.includes("stop-leader") && kinds.includes("term-leader"), `seed ${seed}: ${kinds.join(",")}`);
  }
});

test("chaos schedule - the CI seed's minute stops the leader and kills or terminates it", () => {
  const kinds = planSchedule(4022727017, 60_000).map((f) => f.kind);
  assert.ok(kinds.includes("stop-leader"), kinds.join(","));
  assert.ok(kinds.includes("term-leader") || kinds.includes("kill-coordinator"), kinds.join(","));
});

/** A subject of partition `p` of `partitions`, the `i`th found. */
function subjectIn(p: number, partitions: number, i = 0): string {
  let found = 0;
  for (let n = 0; ; n++) if (partitionOf(`client.${n}`, partitions) === p && found++ === i) return `client.${n}`;
}

/** Heartbeats of one partition's leader every second over [from, to]. */
const pbeats = (from: number, to: number, partition: number, epoch: number, id: string, resigning = false): SeenHeartbeat[] =>
  beats(from, to, epoch, id).map((h) => ({ ...h, partition, ...(resigning ? { resigning } : {}) }));
const prep = (at: number, type: string, subject: string, partition: number, epoch: number, id: string): SeenPresence => ({
  ...rep(at, type, subject, epoch, id),
  partition,
});
const up = (at: number, coordinatorId: string): CoordinatorEvent => ({ at, coordinatorId, kind: "up" });
const down = (at: number, coordinatorId: string): CoordinatorEvent => ({ at, coordinatorId, kind: "down" });

function precord(partitions: number, parts: Partial<PartitionedRecord>): PartitionedRecord {
  return { ...record(parts), partitions, coordinatorEvents: parts.coordinatorEvents ?? [] };
}

test("chaos partitions - one leader per epoch: an epoch claimed by a second coordinator or for a second partition fails", () => {
  const ok = record({
    heartbeats: [...pbeats(0, 3000, 0, 10, "c1"), ...pbeats(0, 3000, 1, 11, "c2")],
    elections: [{ ...el(0, "BecameLeader", 10, "c1"), partition: 0 }],
    presence: [prep(500, "NodeState", "x", 0, 10, "c1")],
  });
  assert.equal(checkOneLeaderPerEpoch(ok).violations, []);
  assert.is(checkOneLeaderPerEpoch(ok).checked, 2);
  const twoLeaders = record({ heartbeats: [...pbeats(0, 3000, 0, 10, "c1"), ...pbeats(2500, 3000, 0, 10, "c2")] });
  const v = checkOneLeaderPerEpoch(twoLeaders).violations;
  assert.is(v.length, 1, "reported once per claimant");
  assert.match(v[0]!.message, /epoch 10 claimed by c2 for partition 0 .*but it was c1's for partition 0/);
  const twoPartitions = record({ heartbeats: pbeats(0, 1000, 0, 10, "c1"), presence: [prep(1500, "NodeState", "x", 3, 10, "c1")] });
  assert.match(checkOneLeaderPerEpoch(twoPartitions).violations[0]!.message, /for partition 3 .*c1's for partition 0/);
  const becameLeader = record({
    heartbeats: pbeats(0, 1000, 2, 7, "c1"),
    elections: [{ ...el(2000, "BecameLeader", 7, "c3"), partition: 2 }],
  });
  assert.is(checkOneLeaderPerEpoch(becameLeader).violations.length, 1);
});

test("chaos partitions - reports from the leader: a client of another partition, a publisher that does not lead, or a report after a takeover fails", () => {
  const x0 = subjectIn(0, 2);
  const x1 = subjectIn(1, 2);
  const heartbeats = [...pbeats(0, 10_000, 0, 10, "c1"), ...pbeats(0, 5000, 1, 11, "c2"), ...pbeats(6000, 10_000, 1, 20, "c1")];
  const good = [prep(500, "NodeState", x0, 0, 10, "c1"), prep(900, "NodeState", x1, 1, 11, "c2"), prep(7000, "NodeState", x1, 1, 20, "c1")];
  const ok = checkReportsFromLeader(precord(2, { heartbeats, presence: good }));
  assert.equal(ok.violations, []);
  assert.is(ok.checked, 3);
  const wrongPartition = checkReportsFromLeader(precord(2, { heartbeats, presence: [prep(500, "NodeState", x1, 0, 10, "c1")] }));
  assert.match(wrongPartition.violations[0]!.message, /its client is in partition 1/);
  const notLeader = checkReportsFromLeader(precord(2, { heartbeats, presence: [prep(500, "NodeState", x1, 1, 11, "c3")] }));
  assert.match(notLeader.violations[0]!.message, /c2 leads partition 1 at epoch 11/);
  const noHeartbeat = checkReportsFromLeader(precord(2, { heartbeats, presence: [prep(500, "NodeState", x0, 0, 12, "c1")] }));
  assert.match(noHeartbeat.violations[0]!.message, /no heartbeat of partition 0 at epoch 12/);
  // c2 still reporting on partition 1 a second after c1 took it over at epoch 20.
  const afterTakeover = checkReportsFromLeader(precord(2, { heartbeats, presence: [prep(7000, "NodeState", x1, 1, 11, "c2")] }));
  assert.match(afterTakeover.violations[0]!.message, /c1 took partition 1 over at epoch 20 at 6\.000 s/);
  // ... but within the travel allowance of the takeover, the report was already on its way.
  assert.equal(checkReportsFromLeader(precord(2, { heartbeats, presence: [prep(6100, "NodeState", x1, 1, 11, "c2")] })).violations, []);
});

test("chaos partitions - balanced within the bound of the last membership change; unbalanced, leaderless or a dead leader's count fails", () => {
  const P = 4;
  const three = [up(0, "c1"), up(0, "c2"), up(0, "c3")];
  // c1 leads 0,1; c2 leads 2; c3 leads 3 from 2 s on: 2/1/1, balanced.
  const spread = [
    ...pbeats(2000, 30_000, 0, 10, "c1"),
    ...pbeats(2000, 30_000, 1, 11, "c1"),
    ...pbeats(2000, 30_000, 2, 12, "c2"),
    ...pbeats(2000, 30_000, 3, 13, "c3"),
  ];
  const ok = checkPartitionsBalanced(precord(P, { heartbeats: spread, coordinatorEvents: three, endAt: 30_000 }));
  assert.equal(ok.violations, []);
  assert.is(ok.checked, 1);
  assert.is(ok.skipped, 0);
  // c1 leads three, c3 none: max - min = 3.
  const lopsided = [
    ...pbeats(2000, 30_000, 0, 10, "c1"),
    ...pbeats(2000, 30_000, 1, 11, "c1"),
    ...pbeats(2000, 30_000, 2, 12, "c1"),
    ...pbeats(2000, 30_000, 3, 13, "c2"),
  ];
  const bad = checkPartitionsBalanced(precord(P, { heartbeats: lopsided, coordinatorEvents: three, endAt: 30_000 }));
  assert.is(bad.violations.length, 1);
  assert.match(bad.violations[0]!.message, /c1 3, c2 1, c3 0; not balanced before the next change or the end/);
  // Balanced, but only 12 s after the change.
  const late = [...lopsided.filter((h) => h.partition !== 2 || h.at < 11_000), ...pbeats(12_000, 30_000, 2, 14, "c3")];
  assert.match(
    checkPartitionsBalanced(precord(P, { heartbeats: late, coordinatorEvents: three, endAt: 30_000 })).violations[0]!.message,
    /balanced only at 12\.000 s/,
  );
  // A partition whose leader stopped heartbeating (or resigned) has no leader.
  const silent = spread.filter((h) => h.partition !== 3 || h.at < 5000);
  assert.match(
    checkPartitionsBalanced(precord(P, { heartbeats: silent, coordinatorEvents: three, endAt: 30_000 })).violations[0]!.message,
    /no live leader for partition\(s\) 3/,
  );
  // c3 went down at 1 s: the change to judge is then, and its heartbeats do not count.
  const c3down = checkPartitionsBalanced(
    precord(P, { heartbeats: spread, coordinatorEvents: [...three, down(1000, "c3")], endAt: 30_000 }),
  );
  assert.is(c3down.checked, 1);
  assert.match(c3down.violations[0]!.message, /change at 1\.000 s \(c3 down\): c1 2, c2 1; no live leader for partition\(s\) 3/);
  // A change followed by another within the bound is not the last: only the later is judged.
  const twice = checkPartitionsBalanced(
    precord(P, { heartbeats: spread, coordinatorEvents: [...three, down(5000, "c3"), up(8000, "c3")], endAt: 30_000 }),
  );
  assert.is(twice.skipped, 2);
  assert.is(twice.checked, 1);
  assert.equal(twice.violations, []);
  // A change too close to the end of the observation is not judged.
  assert.is(checkPartitionsBalanced(precord(P, { heartbeats: spread, coordinatorEvents: three, endAt: 9000 })).checked, 0);
  assert.is(BALANCE_BOUND_MS, 10_000);
});

test("chaos partitions - every check is judged per partition: interleaved epochs are not stale, a stale one within a partition is", () => {
  const x0 = subjectIn(0, 2);
  const x1 = subjectIn(1, 2);
  const actions = [a(0, x0, "register"), a(0, x1, "register")];
  const heartbeats = [...pbeats(0, 20_000, 0, 10, "c1"), ...pbeats(0, 20_000, 1, 11, "c2")];
  const presence = [
    prep(1000, "NodePresent", x0, 0, 10, "c1"),
    prep(1000, "NodePresent", x1, 1, 11, "c2"),
    prep(3000, "NodeState", x0, 0, 10, "c1"),
    prep(3100, "NodeState", x1, 1, 11, "c2"),
    prep(4000, "NodeState", x0, 0, 10, "c1"),
  ];
  const base = { actions, heartbeats, presence, endAt: 20_000, coordinatorEvents: [up(0, "c1"), up(0, "c2")] };
  const checks = runPartitionedChecks(precord(2, base));
  const byName = new Map(checks.map((c) => [c.name, c]));
  assert.equal(byName.get("stale epochs")!.violations, [], "epoch 10 after 11 in another partition is not stale");
  assert.equal(byName.get("overlapping epochs")!.violations, []);
  assert.is(byName.get("overlapping epochs")!.checked, 2, "one epoch with reports in each partition");
  assert.is(byName.get("registrations reported")!.checked, 2, "each partition judges its own client");
  assert.ok(byName.has("partitions balanced") && byName.has("one leader per epoch") && byName.has("reports from the leader"));
  // Unpartitioned, the same reports are stale: the checks see one sequence of epochs.
  assert.is(runChecks(record(base)).find((c) => c.name === "stale epochs")!.violations.length, 2);
  // Within partition 1, a report under epoch 11 after epoch 21 took over is stale, and named by its partition.
  const stale = precord(2, {
    ...base,
    heartbeats: [...heartbeats, ...pbeats(5000, 20_000, 1, 21, "c1")],
    presence: [...presence, prep(6000, "NodeState", x1, 1, 21, "c1"), prep(6500, "NodeState", x1, 1, 11, "c2")],
  });
  const staleCheck = runPartitionedChecks(stale).find((c) => c.name === "stale epochs")!;
  assert.is(staleCheck.violations.length, 1);
  assert.match(staleCheck.violations[0]!.message, /^partition 1: NodeState/);
});

test("chaos schedule - partitioned: coordinators are started and stopped, 3 or 4 between faults, each change settled past the balance bound", () => {
  // One partition: the schedules of before partitions, fault for fault (their fingerprints then).
  const before: [number, string][] = [
    [1, "d873f6e7"],
    [42, "3a39d1de"],
    [4022727017, "e01b61aa"],
  ];
  for (const [seed, print] of before) assert.is(fingerprint(planSchedule(seed, 60_000, { partitions: 1 })), print, `seed ${seed}`);
  for (const seed of [1, 2, 3, 42, 4022727017]) {
    assert.not.ok(
      planSchedule(seed, 300_000).some((f) => f.kind === "start-coordinator" || f.kind === "stop-coordinator"),
      "no membership fault without partitions",
    );
    const faults = planSchedule(seed, 60_000, { partitions: 8 });
    const kinds = faults.map((f) => f.kind);
    for (const k of ["start-coordinator", "stop-coordinator", "stop-leader", "term-leader"] as const)
      assert.ok(kinds.includes(k), `seed ${seed}: ${k} in ${kinds.join(",")}`);
    let running = 3;
    let freeAt = 0;
    for (const f of faults) {
      if (!isClusterFault(f.kind)) continue;
      assert.ok(f.at >= freeAt, `seed ${seed}: ${f.kind} at ${f.at} before the previous settled`);
      freeAt = f.at + f.durationMs + SETTLE_AFTER_MS[f.kind];
      assert.ok(freeAt <= 60_000, `seed ${seed}: ${f.kind} settles within the run`);
      if (f.kind === "start-coordinator") running += 1;
      if (f.kind === "stop-coordinator") running -= 1;
      assert.ok(running === 3 || running === 4, `seed ${seed}: ${running} coordinators after ${f.kind}`);
      if (f.kind === "start-coordinator" || f.kind === "stop-coordinator")
        assert.ok(SETTLE_AFTER_MS[f.kind] > BALANCE_BOUND_MS, "a membership change is judged before the next fault");
    }
  }
});

test.run();
