/** The capacity bench's verdicts: when a level holds, when waiting for registrations stops, percentiles. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  DEFAULT_HOLD_CRITERIA,
  judgeLevel,
  judgeRegistrationWait,
  settledLeader,
  silencedAt,
  type HeardHeartbeat,
  type LevelObservation,
  type ProgressSample,
  type WaitPolicy,
} from "../../harness/capacity-judge.js";
import { percentiles } from "../../harness/client-sim.js";

const C = DEFAULT_HOLD_CRITERIA(750, 1500);
/** 10,000 clients doing exactly what the default timings ask. */
const good: LevelObservation = {
  answering: 10_000,
  registered: 10_000,
  present: 10_000,
  falseDead: 0,
  falseSuspect: 0,
  leaderChanges: 0,
  pingsPerSecond: 13_333,
  nodeStatePerSecond: 6_667,
  pingIntervalP99Ms: 780,
};

test("capacity judge - a level at the configured rates with no false report holds", () => {
  assert.equal(judgeLevel(good, C), { holds: true, reasons: [] });
});

test("capacity judge - rates just at 90 % of the configured ones still hold, and just below do not", () => {
  assert.ok(judgeLevel({ ...good, pingsPerSecond: 12_000, nodeStatePerSecond: 6_000 }, C).holds);
  const v = judgeLevel({ ...good, pingsPerSecond: 11_999 }, C);
  assert.not.ok(v.holds);
  assert.equal(v.reasons, ["11,999 pings/s, below 90 % of the 13,333 configured"]);
});

test("capacity judge - too few NodeState reports fail a level whose pings are fine", () => {
  const v = judgeLevel({ ...good, nodeStatePerSecond: 3000 }, C);
  assert.equal(v.reasons, ["3,000 NodeState/s, below 90 % of the 6,667 configured"]);
});

test("capacity judge - the rates are judged against the answering clients, not the silenced ones", () => {
  assert.ok(judgeLevel({ ...good, answering: 9_000, registered: 10_000, pingsPerSecond: 11_000, nodeStatePerSecond: 5_500 }, C).holds);
});

test("capacity judge - a ping interval p99 above one second fails, and a missing one fails too", () => {
  assert.equal(judgeLevel({ ...good, pingIntervalP99Ms: 1001 }, C).reasons, ["ping interval p99 1,001 ms, above 1,000 ms"]);
  assert.ok(judgeLevel({ ...good, pingIntervalP99Ms: 1000 }, C).holds);
  assert.equal(judgeLevel({ ...good, pingIntervalP99Ms: Number.NaN }, C).reasons, ["no ping interval was measured"]);
});

test("capacity judge - every failed criterion gives its own reason", () => {
  const v = judgeLevel(
    {
      ...good,
      present: 9_990,
      falseDead: 2,
      falseSuspect: 40,
      leaderChanges: 1,
      pingsPerSecond: Number.NaN,
      nodeStatePerSecond: 0,
      pingIntervalP99Ms: 4000,
    },
    C,
  );
  assert.not.ok(v.holds);
  assert.equal(v.reasons, [
    "only 9,990 of 10,000 clients were reported present",
    "2 false NodeDead",
    "40 false NodeSuspect",
    "leadership changed 1 times",
    "NaN pings/s, below 90 % of the 13,333 configured",
    "0 NodeState/s, below 90 % of the 6,667 configured",
    "ping interval p99 4,000 ms, above 1,000 ms",
  ]);
});

const W: WaitPolicy = { wanted: 10_000, maxWaitMs: 60_000, windowMs: 5000, saturatedCores: 0.9 };
/** Samples every second from 0 to `untilS`, with `rate` present/s and `cores` of leader CPU. */
function samples(untilS: number, rate: number, cores: number): ProgressSample[] {
  return Array.from({ length: untilS + 1 }, (_, s) => ({
    atMs: s * 1000,
    present: Math.min(10_000, s * rate),
    leaderCpuSeconds: s * cores,
  }));
}

test("capacity judge - registration wait stops, done, once every client is present", () => {
  const v = judgeRegistrationWait(samples(5, 2000, 1), W);
  assert.equal(v, { wait: false, done: true, reason: "all 10,000 present after 5,000 ms" });
});

test("capacity judge - registration wait goes on before the window is covered, however slow", () => {
  assert.equal(judgeRegistrationWait(samples(4, 0, 1), W), { wait: true });
  assert.equal(judgeRegistrationWait([], W), { wait: true });
});

test("capacity judge - a saturated leader that cannot finish within the wait is given up early, with the reason", () => {
  const v = judgeRegistrationWait(samples(5, 100, 1), W);
  assert.equal(v.wait, false);
  if (v.wait) return;
  assert.not.ok(v.done);
  assert.match(v.reason, "the leader is saturated (1.00 cores over the last 5 s) with 500 of 10,000 present after 5 s");
  assert.match(v.reason, "95 s more at 100 present/s, past the 60 s wait");
});

test("capacity judge - registration wait stops once leadership changed, however the leader's CPU looks", () => {
  const flapping = samples(3, 100, 0.3).map((s, i) => ({ ...s, leaderChanges: i >= 3 ? 2 : 0 }));
  assert.equal(judgeRegistrationWait(flapping.slice(0, 3), W), { wait: true });
  assert.equal(judgeRegistrationWait(flapping, W), {
    wait: false,
    done: false,
    reason: "leadership changed 2 times with 300 of 10,000 present after 3 s",
  });
});

test("capacity judge - the reason names what is counted", () => {
  const v = judgeRegistrationWait(samples(5, 100, 1), { ...W, counted: "reported" });
  assert.ok(
    !v.wait && v.reason.includes("with 500 of 10,000 reported after 5 s") && v.reason.includes("at 100 reported/s"),
    JSON.stringify(v),
  );
});

test("capacity judge - a saturated leader that makes no progress at all is given up", () => {
  const v = judgeRegistrationWait(samples(6, 0, 0.95), W);
  assert.ok(!v.wait && !v.done && v.reason.includes("no progress at all"));
});

test("capacity judge - a saturated leader that will finish in time is waited for", () => {
  assert.equal(judgeRegistrationWait(samples(5, 500, 1), W), { wait: true });
});

test("capacity judge - a leader whose CPU cannot be read is not taken for saturated", () => {
  const unknown = samples(10, 10, 1).map((s) => ({ ...s, leaderCpuSeconds: Number.NaN }));
  assert.equal(judgeRegistrationWait(unknown, W), { wait: true });
});

test("capacity judge - a slow leader that is not saturated gets the whole wait", () => {
  assert.equal(judgeRegistrationWait(samples(30, 10, 0.5), W), { wait: true });
  const v = judgeRegistrationWait(samples(60, 10, 0.5), W);
  assert.equal(v, { wait: false, done: false, reason: "only 600 of 10,000 present after the 60 s wait" });
});

test("capacity judge - detection silences a few hundred of 50,000 clients, and at least 20 of a small level", () => {
  assert.equal(silencedAt(50_000), 300);
  assert.equal(silencedAt(100_000), 300);
  assert.equal(silencedAt(10_000), 100);
  assert.equal(silencedAt(1000), 20);
});

test("percentiles - nearest rank on a sorted copy, rounded to 0.1, NaN for an empty sample", () => {
  const sample = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 .. 1, unsorted
  assert.equal(percentiles(sample, [0, 0.5, 0.99, 1]), [1, 51, 100, 100]);
  assert.equal(percentiles([2.345], [0.5]), [2.3]);
  assert.ok(percentiles([], [0.5]).every(Number.isNaN));
  assert.equal(sample[0], 100, "the sample itself is not reordered");
});

const S = { windowMs: 3000, heartbeatIntervalMs: 1000 };
/** Heartbeats of `id` under `epoch`, one a second from `fromS` to `toS` (seconds). */
const beats = (id: string, epoch: number, fromS: number, toS: number): HeardHeartbeat[] =>
  Array.from({ length: toS - fromS + 1 }, (_, k) => ({ atMs: (fromS + k) * 1000, coordinatorId: id, epoch }));

test("takeover - a leader heard alone for the window is the one to crash", () => {
  assert.equal(settledLeader(beats("cap-a", 1, 0, 10), 10_200, S), { coordinatorId: "cap-a", epoch: 1 });
});

test("takeover - nobody is crashed before any heartbeat, or once the leader fell silent", () => {
  assert.is(settledLeader([], 0, S), null);
  assert.is(settledLeader(beats("cap-a", 1, 0, 10), 12_100, S), null);
});

test("takeover - after leadership changed, the new leader counts only once it has led for the window", () => {
  const heard = [...beats("cap-a", 1, 0, 10), ...beats("cap-b", 2, 12, 14)];
  assert.is(settledLeader(heard, 14_100, S), null, "cap-b leads for only 2 s");
  assert.equal(settledLeader([...heard, ...beats("cap-b", 2, 15, 15)], 15_100, S), { coordinatorId: "cap-b", epoch: 2 });
});

test("takeover - a deposed leader's late heartbeat among the new one's unsettles leadership", () => {
  const heard = [...beats("cap-a", 1, 0, 10), ...beats("cap-b", 2, 11, 20)];
  heard.splice(15, 0, { atMs: 15_500, coordinatorId: "cap-a", epoch: 1 });
  assert.is(settledLeader(heard, 17_100, S), null);
  assert.equal(settledLeader(heard, 20_100, S), { coordinatorId: "cap-b", epoch: 2 });
});

test("takeover - the same coordinator elected again under a new epoch counts from its new epoch", () => {
  const heard = [...beats("cap-a", 1, 0, 10), ...beats("cap-a", 3, 12, 13)];
  assert.is(settledLeader(heard, 13_100, S), null);
  assert.equal(settledLeader([...heard, ...beats("cap-a", 3, 14, 15)], 15_100, S), { coordinatorId: "cap-a", epoch: 3 });
});

test.run();
