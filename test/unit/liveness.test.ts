/**
 * The LivenessTable alone: one shard's clients as plain data, and the sweep that judges
 * them. Every time is a wall-clock ms handed in, so no clock at all is needed here.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { LivenessTable, type ReplyFact, type SweepResult } from "../../src/machines/liveness.js";

const T = { pingIntervalMs: 750, deadTimeoutMs: 5000, stateIntervalMs: 1500 };
/** Wall-clock ms of the first registration in each test (any value: the table reads no clock). */
const T0 = 1_700_000_000_000;

interface Seen {
  at: number;
  result: SweepResult;
}

/**
 * Sweeps `table` every `step` ms over (from, to], handing each sweep the replies that were
 * read since the previous one. `answer(subject, pingAt)` gives the delay of a client's reply
 * to a ping, or null when it does not answer.
 */
function run(
  table: LivenessTable,
  from: number,
  to: number,
  step: number,
  answer: (subject: string, pingAt: number) => number | null = () => null,
): Seen[] {
  const seen: Seen[] = [];
  let inFlight: ReplyFact[] = [];
  for (let at = from + step; at <= to; at += step) {
    const ready = inFlight.filter((r) => r.atMs <= at);
    inFlight = inFlight.filter((r) => r.atMs > at);
    const result = table.sweep(at, 0, ready);
    seen.push({ at, result });
    for (const subject of result.ping) {
      const delay = answer(subject, at);
      if (delay !== null) inFlight.push({ subject, atMs: at + delay, rttMs: delay });
    }
  }
  return seen;
}

const pingsOf = (seen: Seen[], subject: string) => seen.filter((s) => s.result.ping.includes(subject)).map((s) => s.at);
const missesOf = (seen: Seen[], subject: string) =>
  seen.flatMap((s) => s.result.missed.filter((f) => f.subject === subject).map((f) => ({ at: s.at, ...f })));
const deathsOf = (seen: Seen[], subject: string) => seen.filter((s) => s.result.dead.some((f) => f.subject === subject)).map((s) => s.at);
const statesOf = (seen: Seen[], subject: string) =>
  seen.flatMap((s) => s.result.states.filter((r) => r.clientSubject === subject).map((r) => ({ at: s.at, ...r })));

test("liveness - a new client's first ping and NodeState are spread over their intervals by its subject's hash", () => {
  const subjects = Array.from({ length: 1000 }, (_, i) => `fleet.node-${i}`);
  const firsts = (order: string[]) => {
    const table = new LivenessTable(T);
    for (const s of order) assert.ok(table.register(s, { s }, T0), "a new subject gets a slot");
    const seen = run(table, T0, T0 + T.stateIntervalMs, 10, () => 1);
    return new Map(order.map((s) => [s, { ping: pingsOf(seen, s)[0]!, state: statesOf(seen, s)[0]!.at }]));
  };
  const first = firsts(subjects);
  for (const [s, { ping, state }] of first) {
    // Within the second half of each interval, at the first 10 ms sweep at or after its phase.
    assert.ok(ping >= T0 + T.pingIntervalMs / 2 && ping <= T0 + T.pingIntervalMs, `${s}: first ping at +${ping - T0}`);
    assert.ok(state >= T0 + T.stateIntervalMs / 2 && state <= T0 + T.stateIntervalMs, `${s}: first NodeState at +${state - T0}`);
  }
  // Spread: 1,000 clients registered at the same instant are not pinged nor reported at once,
  // but over (nearly) every sweep of half an interval, none with much more than its share.
  const histogram = (times: number[]) => {
    const counts = new Map<number, number>();
    for (const t of times) counts.set(t, (counts.get(t) ?? 0) + 1);
    return counts;
  };
  const pings = histogram([...first.values()].map((f) => f.ping));
  const states = histogram([...first.values()].map((f) => f.state));
  const share = (sweeps: number) => subjects.length / sweeps;
  assert.ok(pings.size >= 35, `first pings over ${pings.size} of the 38 sweeps in half a ping interval`);
  assert.ok(Math.max(...pings.values()) <= 2.5 * share(38), `at most ${Math.max(...pings.values())} first pings in one sweep`);
  assert.ok(states.size >= 70, `first NodeStates over ${states.size} of the 75 sweeps in half a state interval`);
  assert.ok(Math.max(...states.values()) <= 3 * share(75), `at most ${Math.max(...states.values())} first NodeStates in one sweep`);
  // The phase is the subject's own (its hash), not the order of registration.
  const reversed = firsts([...subjects].reverse());
  for (const s of subjects) assert.equal(reversed.get(s), first.get(s), s);
});

test("liveness - held clients are not swept, not even by a stall, until they start; then their first pings fill the whole interval", () => {
  const table = new LivenessTable({ ...T, sweepIntervalMs: 50 });
  const subjects = Array.from({ length: 200 }, (_, i) => `svc.held-${i}`);
  for (const s of subjects) table.register(s, {}, T0, true);
  table.register("svc.free", {}, T0);
  let at = T0;
  const swept: SweepResult[] = [];
  for (; at < T0 + 2 * T.deadTimeoutMs; at += 50) swept.push(table.sweep(at, at === T0 + 1000 ? 400 : 0, []));
  const touched = swept.flatMap((r) => [
    ...r.ping,
    ...r.missed.map((f) => f.subject),
    ...r.dead.map((f) => f.subject),
    ...r.states.map((x) => x.clientSubject),
  ]);
  assert.equal(
    touched.filter((s) => s !== "svc.free"),
    [],
    "no ping, miss, death or NodeState for a held client, stall or not",
  );
  assert.ok(touched.includes("svc.free"), "a client registered without hold is swept as ever");
  assert.is(table.startHeld(at), 200);
  assert.is(table.startHeld(at), 0, "each starts once");
  const seen = run(table, at, at + T.deadTimeoutMs + 500, 50, () => 2);
  const firsts = subjects.map((s) => pingsOf(seen, s)[0]! - at);
  assert.ok(Math.max(...firsts) <= T.pingIntervalMs + 50, `every first ping within an interval: ${Math.max(...firsts)}`);
  assert.ok(firsts.filter((d) => d < T.pingIntervalMs / 2).length > 50, "the first pings fill the first half of the interval too");
  assert.equal(
    subjects.flatMap((s) => deathsOf(seen, s)),
    [],
    "all answer: nobody dead",
  );
});

test("liveness - a small fleet whose subjects differ only in their last characters is spread too", () => {
  for (const prefix of ["fleet.node-", "svc.steady-", "presence.client."]) {
    const table = new LivenessTable(T);
    for (let i = 0; i < 60; i++) table.register(`${prefix}${i}`, {}, T0);
    const pings = new Map<number, number>();
    const states = new Map<number, number>();
    for (let at = T0 + 50; at <= T0 + T.stateIntervalMs; at += 50) {
      const r = table.sweep(at, 0, []);
      if (r.ping.length > 0 && at <= T0 + T.pingIntervalMs) pings.set(at, r.ping.length);
      if (r.states.length > 0) states.set(at, r.states.length);
    }
    // Half a ping interval is 8 sweeps of 50 ms (7.5 first pings each), half a state interval 15 (4 each).
    assert.ok(pings.size >= 7 && Math.max(...pings.values()) <= 18, `${prefix}: first pings ${JSON.stringify([...pings.values()])}`);
    assert.ok(
      states.size >= 12 && Math.max(...states.values()) <= 12,
      `${prefix}: first NodeStates ${JSON.stringify([...states.values()])}`,
    );
  }
});

test("liveness - a client's key names its slot and shard; a reply's key is a shortcut that never overrules its subject", () => {
  const table = new LivenessTable(T, { shard: 2, shards: 5 });
  for (const s of ["a", "b", "c"]) table.register(s, {}, T0);
  const seen = run(table, T0, T0 + T.pingIntervalMs, 10);
  const keyOf = new Map<string, number>();
  for (const { result } of seen) for (const [i, s] of result.ping.entries()) keyOf.set(s, result.pingKeys[i]!);
  assert.equal([...keyOf.keys()].sort(), ["a", "b", "c"], "every client pinged once, with its key");
  assert.equal(new Set(keyOf.values()).size, 3, "one key per client");
  assert.ok(
    [...keyOf.values()].every((k) => Number.isInteger(k) && k % 5 === 2),
    `each key names shard 2 of 5: ${[...keyOf.values()]}`,
  );
  const at = T0 + 1000;
  const lastSeen = (s: string) => table.get(s)!.lastSeenMs;
  table.reply({ subject: "a", key: keyOf.get("a")!, atMs: at, rttMs: 1 });
  assert.is(lastSeen("a"), at, "a reply found by its key");
  // A key that names another client, or no slot at all: the subject decides.
  table.reply({ subject: "b", key: keyOf.get("a")!, atMs: at + 1, rttMs: 1 });
  assert.equal([lastSeen("a"), lastSeen("b")], [at, at + 1], "b's reply with a's key is b's");
  for (const [i, key] of [-3, 2.5, 1_000_002, Number.NaN].entries()) {
    table.reply({ subject: "c", key, atMs: at + 10 + i, rttMs: 1 });
    assert.is(lastSeen("c"), at + 10 + i, `a reply with key ${key}`);
  }
  // a leaves and d takes its slot, and so its key: a's late reply with that key is no reply of d's.
  const aKey = keyOf.get("a")!;
  table.remove("a");
  table.register("d", {}, at + 20);
  const d = run(table, at + 20, at + 20 + T.pingIntervalMs, 10).flatMap(({ result }) =>
    result.pingKeys.filter((_, i) => result.ping[i] === "d"),
  );
  assert.equal(d, [aKey], "d has a's former key");
  assert.is(table.reply({ subject: "a", key: aKey, atMs: at + 30, rttMs: 1 }), null, "a is not in the table");
  assert.is(lastSeen("d"), at + 20, "d's liveness is untouched by a's reply");
  assert.not.ok(table.has("a"));
});

test("liveness - a reply resets the client's deadlines, and a reply after missed pings is reported", () => {
  const table = new LivenessTable(T);
  table.register("a", { zone: "eu" }, T0);
  let seen = run(table, T0, T0 + 3000, 50, () => 3);
  const pings = pingsOf(seen, "a");
  assert.ok(pings.length >= 3, `pinged ${pings.length} times in 3 s`);
  for (let i = 1; i < pings.length; i++) {
    // A client that answers is pinged every ping interval: at the first sweep a ping interval
    // after the last ping (when that one would have been missed).
    const sincePing = pings[i]! - pings[i - 1]!;
    assert.ok(sincePing >= T.pingIntervalMs && sincePing < T.pingIntervalMs + 50, `ping ${i}: ${sincePing} ms after the last ping`);
  }
  assert.equal(
    seen.flatMap((s) => [...s.result.missed, ...s.result.replied, ...s.result.dead]),
    [],
    "a client that answers produces no fact at all",
  );
  const last = pings.at(-1)! + 3;
  assert.equal(table.get("a"), { subject: "a", lastSeenMs: last, rttMs: 3, missedPings: 0, metadata: { zone: "eu" } });
  // Silent from here: the next ping is missed one ping interval after it went out.
  seen = run(table, T0 + 3000, T0 + 4500, 50);
  const nextPing = pingsOf(seen, "a")[0]!;
  const miss = missesOf(seen, "a");
  assert.is(miss[0]!.at, nextPing + T.pingIntervalMs, "missed a ping interval after the ping");
  assert.equal([miss[0]!.missedPings, miss[0]!.lastSeenMs], [1, last], "the fact counts the miss and keeps the last reply");
  // A late reply (however late) brings it back, and the table says it had been missing.
  const replyAt = T0 + 4510;
  const r = table.reply({ subject: "a", atMs: replyAt, rttMs: 900 });
  assert.equal(r, { subject: "a", lastSeenMs: replyAt, rttMs: 900, missedPings: 0 }, "REPLIED fact");
  assert.is(table.reply({ subject: "a", atMs: replyAt + 1, rttMs: 1 }), null, "a reply while not missing is no fact");
  // The dead timeout now runs from the last reply: silent, it dies at the first sweep at or after it.
  seen = run(table, T0 + 4500, T0 + 12_000, 50);
  assert.equal(deathsOf(seen, "a"), [Math.ceil((replyAt + 1 + T.deadTimeoutMs) / 50) * 50]);
  assert.not.ok(table.has("a"), "a dead client leaves the table");
  // A reply from a subject the table does not know changes nothing.
  assert.is(table.reply({ subject: "a", atMs: T0 + 12_001, rttMs: 1 }), null);
  assert.is(table.reply({ subject: "never", atMs: T0 + 12_001, rttMs: 1 }), null);
  assert.is(table.size, 0);
});

test("liveness - sweeps that come late keep the ping cadence: a ping is due an interval after the last was due", () => {
  // A busy leader's 50 ms sweep comes every 200 ms. Pinging an interval after each send
  // would stretch every interval by the lateness (about 850 ms on average, 88 % of the rate).
  const table = new LivenessTable({ ...T, sweepIntervalMs: 50 });
  const subjects = Array.from({ length: 200 }, (_, i) => `late.node-${i}`);
  for (const s of subjects) table.register(s, {}, T0);
  const seconds = 60;
  const seen = run(table, T0, T0 + seconds * 1000, 200, () => 2);
  const pings = seen.reduce((n, s) => n + s.result.ping.length, 0);
  const wanted = (subjects.length * seconds * 1000) / T.pingIntervalMs;
  assert.ok(pings >= wanted * 0.97 && pings <= wanted * 1.01, `${pings} pings in ${seconds} s, ${wanted} wanted`);
  for (const subject of subjects) {
    const at = pingsOf(seen, subject);
    for (let i = 1; i < at.length; i++) {
      const gap = at[i]! - at[i - 1]!;
      assert.ok(gap >= T.pingIntervalMs - 200 && gap <= T.pingIntervalMs + 200, `${subject} ping ${i}: ${gap} ms after the last`);
    }
  }
  assert.equal(
    seen.flatMap((s) => [...s.result.missed, ...s.result.dead]),
    [],
    "every client answers: no miss and no death",
  );
});

test("liveness - a sweep finds dead before missed before a ping", () => {
  const table = new LivenessTable(T);
  for (const s of ["both", "missed", "fresh"]) table.register(s, {}, T0);
  // One sweep at +750 pings everyone (every first ping is due by then).
  const first = table.sweep(T0 + T.pingIntervalMs, 0, []);
  assert.equal(first.ping.sort(), ["both", "fresh", "missed"]);
  // "fresh" answers; the others are judged a ping interval later: missed, and pinged again at once.
  const second = table.sweep(T0 + 2 * T.pingIntervalMs, 0, [{ subject: "fresh", atMs: T0 + 760, rttMs: 10 }]);
  assert.equal(second.missed.map((f) => [f.subject, f.missedPings]).sort(), [
    ["both", 1],
    ["missed", 1],
  ]);
  assert.equal(
    second.ping.sort(),
    ["both", "fresh", "missed"],
    "missed: pinged again at once; answered: a ping interval after its last ping",
  );
  assert.equal([second.dead, second.replied], [[], []], "a reply from a client that missed nothing is no fact");
  // Long after: "missed" answers its second ping; "both" is past its second ping's deadline
  // and past the dead timeout, and dead wins: no miss, no ping, no NodeState for it. "fresh"
  // was due a ping long ago and is past the dead timeout too: dead, without a miss first.
  table.register("newer", {}, T0 + 4000);
  const late = table.sweep(T0 + 8000, 0, [{ subject: "missed", atMs: T0 + 7990, rttMs: 5 }]);
  assert.equal(
    late.dead.map((f) => [f.subject, f.missedPings]),
    [
      ["both", 1],
      ["fresh", 0],
    ],
    "dead, with the misses each had",
  );
  assert.equal(late.missed, [], "nobody is also missed");
  assert.equal(
    late.ping.sort(),
    ["missed", "newer"],
    "the newer client's first ping and the next of the one whose answered ping was long due; the dead are not pinged",
  );
  assert.not.ok(
    late.states.some((r) => r.clientSubject === "both" || r.clientSubject === "fresh"),
    "no NodeState for a dead client",
  );
  assert.equal(
    late.replied.map((f) => [f.subject, f.lastSeenMs, f.missedPings]),
    [["missed", T0 + 7990, 0]],
  );
  assert.equal([table.has("both"), table.has("fresh"), table.has("missed"), table.has("newer")], [false, false, true, true]);
});

test("liveness - a stalled sweep judges nobody and moves every deadline by the stall", () => {
  const STALL = 2 * T.deadTimeoutMs;
  const setUp = () => {
    const table = new LivenessTable(T);
    table.register("quiet", { q: 1 }, T0);
    table.register("talks", {}, T0);
    // Both pinged; "talks" answers, "quiet" never does. Then the loop stalls at +1000.
    run(table, T0, T0 + 1000, 50, (s) => (s === "talks" ? 2 : null));
    return table;
  };
  const table = setUp();
  const before = table.get("quiet")!;
  const stalled = table.sweep(T0 + 1000 + STALL, STALL, []);
  assert.equal([stalled.dead, stalled.missed, stalled.ping], [[], [], []], "no verdict and no ping in a stalled sweep");
  assert.equal(
    stalled.states.map((r) => r.clientSubject).sort(),
    ["quiet", "talks"],
    "NodeState goes on: one each, not one per state interval of the stall",
  );
  assert.equal(table.get("quiet"), before, "what was seen of a client does not change");
  // After the stall, "talks" answers again and is never judged; "quiet" is judged as if the
  // stall had not happened: missed and dead at its old deadlines plus the stall.
  const seen = run(table, T0 + 1000 + STALL, T0 + 1000 + STALL + 8000, 50, (s) => (s === "talks" ? 2 : null));
  const quietPing = run(setUp(), T0 + 1000, T0 + 2000, 50).find((s) => s.result.missed.length > 0)!;
  assert.ok(quietPing !== undefined, "without a stall, quiet misses its ping before +2000");
  assert.is(missesOf(seen, "quiet")[0]!.at, quietPing.at + STALL, "the miss comes a stall later");
  assert.equal(deathsOf(seen, "quiet"), [Math.ceil((before.lastSeenMs + T.deadTimeoutMs) / 50) * 50 + STALL], "so does death");
  assert.equal([missesOf(seen, "talks"), deathsOf(seen, "talks")], [[], []]);
  // NodeState picks up a state interval after the stalled sweep's report: no catching up.
  const talksStates = statesOf(seen, "talks").map((r) => r.at - (T0 + 1000 + STALL));
  assert.equal(talksStates.slice(0, 5), [1500, 3000, 4500, 6000, 7500]);
  // The same sweep without the stall flag finds both dead at once.
  const unflagged = setUp().sweep(T0 + 1000 + STALL, 0, []);
  assert.equal(unflagged.dead.map((f) => f.subject).sort(), ["quiet", "talks"]);
});

test("liveness - a reply read after a stall counts from when it was read; one read before it keeps the stall", () => {
  const STALL = 2 * T.deadTimeoutMs;
  const table = new LivenessTable(T);
  table.register("after", {}, T0);
  table.register("before", {}, T0);
  run(table, T0, T0 + 1000, 50); // both pinged, neither has answered yet
  const now = T0 + 1050 + STALL; // the sweep due at +1050 comes a stall late
  // The stalled sweep brings one reply read just before the stall and one read right after it.
  const stalled = table.sweep(now, STALL, [
    { subject: "before", atMs: T0 + 1001, rttMs: 2 },
    { subject: "after", atMs: now - 1, rttMs: STALL },
  ]);
  assert.equal([stalled.dead, stalled.missed, stalled.ping], [[], [], []]);
  const seen = run(table, now, now + 3 * T.deadTimeoutMs, 50);
  // Read after the stall: pinged again when its ping would have been missed (its deadline
  // moved by the stall), and dead a dead timeout after the reply, within a sweep, as for any
  // reply (the stall was over before it was read).
  const firstPing = pingsOf(seen, "after")[0]!;
  assert.ok(firstPing > now && firstPing - now <= T.pingIntervalMs + 50, `pinged ${firstPing - now} ms after the stalled sweep`);
  const [dead] = deathsOf(seen, "after");
  assert.ok(
    dead! - (now - 1) >= T.deadTimeoutMs && dead! - (now - 1) <= T.deadTimeoutMs + 50,
    `dead ${dead! - (now - 1)} ms after its reply`,
  );
  // Read before the stall: the stall does not count against it.
  const [deadBefore] = deathsOf(seen, "before");
  assert.ok(deadBefore! - (T0 + 1001) >= T.deadTimeoutMs + STALL, `dead ${deadBefore! - (T0 + 1001)} ms after its reply`);
});

test("liveness - a ping that was not sent is asked for again, not judged, even in a stalled sweep", () => {
  for (const stall of [0, 2 * T.deadTimeoutMs]) {
    const table = new LivenessTable(T);
    table.register("a", {}, T0);
    const seen = run(table, T0, T0 + T.pingIntervalMs, 50);
    const asked = pingsOf(seen, "a")[0]!;
    // The edge could not send it (lease unsure, disconnected) and says so with the next sweep.
    const at = T0 + T.pingIntervalMs + 50 + stall;
    const next = table.sweep(at, stall, [], ["a"]);
    assert.equal(next.missed, [], `stall=${stall}`);
    const after = [{ at, result: next }, ...run(table, at, at + 2 * T.pingIntervalMs, 50)];
    const again = pingsOf(after, "a")[0]!;
    assert.is(again, stall === 0 ? at : at + 50, `stall=${stall}: asked again at once (after the stalled sweep, at the next)`);
    assert.is(
      missesOf(after, "a")[0]!.at,
      again + T.pingIntervalMs,
      `stall=${stall}: missed a ping interval after the ping that went out, not ${asked}'s`,
    );
  }
});

test("liveness - a removed client's slot is reused by the next one, which starts fresh", () => {
  const table = new LivenessTable(T);
  table.register("old", { v: "old" }, T0);
  table.register("stays", { v: "stays" }, T0);
  const seen = run(table, T0, T0 + 3000, 50, (s) => (s === "stays" ? 1 : null));
  assert.ok(table.get("old")!.missedPings >= 2, "old had missed pings");
  assert.ok(table.remove("old"));
  assert.not.ok(table.remove("old"), "removing twice does nothing");
  assert.not.ok(table.has("old"));
  assert.is(table.reply({ subject: "old", atMs: T0 + 3001, rttMs: 1 }), null, "a reply of a removed client is ignored");
  assert.ok(table.register("new", { v: "new" }, T0 + 3000));
  assert.equal(
    [...table.entries()].map((e) => e.subject),
    ["new", "stays"],
    "the new client takes the freed first slot",
  );
  assert.equal(table.get("new"), { subject: "new", lastSeenMs: T0 + 3000, rttMs: 0, missedPings: 0, metadata: { v: "new" } });
  // It is judged on its own times: old would have died at +5000; new answers nothing either,
  // and dies at its own dead timeout, after its own first ping and miss.
  const after = run(table, T0 + 3000, T0 + 9000, 50, (s) => (s === "stays" ? 1 : null));
  assert.equal(deathsOf(after, "new"), [T0 + 3000 + T.deadTimeoutMs]);
  const firstPing = pingsOf(after, "new")[0]!;
  assert.ok(firstPing >= T0 + 3000 + T.pingIntervalMs / 2, "its first ping is spread like any new client's");
  assert.is(missesOf(after, "new")[0]!.missedPings, 1, "its misses count from zero");
  const all = [...seen, ...after];
  const old = all.filter(
    (s) => s.at > T0 + 3000 && (s.result.ping.includes("old") || s.result.states.some((r) => r.clientSubject === "old")),
  );
  assert.equal(old, [], "nothing of old after its removal");
  assert.is(table.size, 1);
});

test("liveness - growing beyond 16 clients keeps every client's data", () => {
  const table = new LivenessTable(T);
  const early = Array.from({ length: 16 }, (_, i) => `early-${i}`);
  for (const s of early) table.register(s, { s }, T0);
  // Each early client answers with its own round trip; the odd ones stop answering at +1000.
  run(table, T0, T0 + 1000, 50, (s) => Number(s.split("-")[1]) + 1);
  run(table, T0 + 1000, T0 + 3000, 50, (s) => (Number(s.split("-")[1]) % 2 === 0 ? Number(s.split("-")[1]) + 1 : null));
  const snapshot = new Map(early.map((s) => [s, table.get(s)!]));
  for (const s of early.filter((_, i) => i % 2 === 1)) assert.ok(snapshot.get(s)!.missedPings > 0, `${s} is missing`);
  // 100 more clients: the table grows to 128 slots.
  for (let i = 0; i < 100; i++) assert.ok(table.register(`late-${i}`, { i }, T0 + 3000));
  assert.is(table.size, 116);
  for (const s of early) assert.equal(table.get(s), snapshot.get(s), `${s} kept its data`);
  assert.equal(table.get("late-99"), { subject: "late-99", lastSeenMs: T0 + 3000, rttMs: 0, missedPings: 0, metadata: { i: 99 } });
  // And its deadlines: each silent early client dies at its last reply + the dead timeout.
  const seen = run(table, T0 + 3000, T0 + 9000, 50, (s) => (s.startsWith("late-") ? 1 : null));
  for (const s of early) {
    const expected = Math.ceil((snapshot.get(s)!.lastSeenMs + T.deadTimeoutMs) / 50) * 50;
    assert.equal(deathsOf(seen, s), [expected], s);
  }
  assert.is(table.size, 100, "the 100 late clients answer and stay");
  for (let i = 0; i < 100; i++) assert.ok(pingsOf(seen, `late-${i}`).length >= 6, `late-${i} is pinged`);
});

test.run();
