/**
 * The election driver with strict fakes (no NATS): a fake lease store that fails on any
 * call nobody expected, a fake monotonic clock for the driver, and a SimulatedClock for
 * the machine.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SimulatedClock } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS } from "../../src/config/config.js";
import type { ElectionReport, Heartbeat, LeaseHolder } from "../../src/protocol/election.js";
import { createRandom } from "../../src/machines/random.js";
import { ElectionDriver } from "../../src/election/election-driver.js";
import { LeaseLostError, LeaseTakenError, type LeaseStore } from "../../src/election/lease-store.js";
import { createLogger } from "../../src/observe/logger.js";
import { Writable } from "node:stream";

const T = DEFAULT_TIMINGS;

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

/**
 * A lease store whose every call must be expected; calls wait until the test answers them.
 * The driver catches what a store throws, so an unexpected call is also recorded, and
 * `verify()` (called at the end of every test) fails on it.
 */
class StrictLeaseStore implements LeaseStore {
  readonly calls: { op: string; args: unknown[]; answer: Pending<unknown> }[] = [];
  readonly unexpected: string[] = [];
  /** Lease reads (holder calls) made so far, expected or not. */
  reads = 0;
  private expected: string[] = [];

  expect(...ops: string[]) {
    this.expected.push(...ops);
  }

  verify() {
    assert.equal(this.unexpected, [], "no unexpected lease store call");
    assert.equal(this.expected, [], "every expected lease store call was made");
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    const next = this.expected.shift();
    if (next !== op) {
      this.unexpected.push(`${op} (expected ${next ?? "none"})`);
      throw new Error(`unexpected lease store call: ${op} (expected ${next ?? "none"})`);
    }
    return new Promise<T>((resolve, reject) => {
      this.calls.push({ op, args, answer: { resolve: resolve as (v: unknown) => void, reject } });
    });
  }

  /** Answers the oldest unanswered call, which must be `op`. */
  answer(op: string, value: unknown, fail = false) {
    const i = this.calls.findIndex((c) => c.op === op);
    if (i < 0) throw new Error(`no pending ${op} call`);
    const [c] = this.calls.splice(i, 1);
    if (fail) c!.answer.reject(value);
    else c!.answer.resolve(value);
  }

  acquire(): Promise<{ epoch: number; revision: number }> {
    return this.call("acquire");
  }
  renew(holder: LeaseHolder, revision: number): Promise<number> {
    return this.call("renew", holder, revision);
  }
  release(holder: LeaseHolder, revision: number): Promise<void> {
    return this.call("release", holder, revision);
  }
  holder(): Promise<LeaseHolder | null> {
    this.reads += 1;
    return this.call("holder");
  }
}

const flush = () => new Promise((r) => setImmediate(r));

const stores: StrictLeaseStore[] = [];
/**
 * A test that ends by checking the lease store saw exactly the calls it expected. Not an
 * after.each hook: uvu runs that hook again when a test fails, and a throw from it there
 * hides the failure and ends the suite.
 */
function driverTest(name: string, fn: () => void | Promise<void>): void {
  test(name, async () => {
    stores.length = 0;
    await fn();
    for (const s of stores.splice(0)) s.verify();
  });
}

function setup(options: { partition?: { index: number; count: number } } = {}) {
  const clock = new SimulatedClock();
  let now = 0;
  let connected = true;
  const lease = new StrictLeaseStore();
  stores.push(lease);
  const heartbeats: Heartbeat[] = [];
  const reports: ElectionReport[] = [];
  let hear: ((hb: Heartbeat) => void) | undefined;
  const logLines: string[] = [];
  const driver = new ElectionDriver({
    coordinatorId: "me",
    clusterId: "c",
    timings: T,
    random: createRandom(3),
    monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: 4 },
    lease,
    heartbeats: {
      publish: (hb) => heartbeats.push(hb),
      subscribe: (h) => {
        hear = h;
        return () => (hear = undefined);
      },
    },
    reports: { publish: (r) => reports.push(r) },
    logger: createLogger({
      format: "json",
      verbose: true,
      stream: new Writable({
        write(chunk, _enc, cb) {
          logLines.push(String(chunk));
          cb();
        },
      }),
    }),
    isConnected: () => connected,
    now: () => now,
    clock,
    ...options,
  });
  const advance = (ms: number) => {
    for (let i = 0; i < ms; i++) {
      clock.increment(1);
      now += 1;
    }
  };
  return {
    driver,
    lease,
    heartbeats,
    reports,
    logLines,
    advance,
    /** Time passes for the process's monotonic clock only: the process was paused. */
    pause: (ms: number) => (now += ms),
    /**
     * The process was paused and continues: both clocks jump at once, then every timer of
     * the machine that fell due fires, in order, as Node fires them on waking.
     */
    stall: (ms: number) => {
      now += ms;
      clock.increment(ms);
    },
    setConnected: (c: boolean) => (connected = c),
    hear: (hb: Heartbeat) => hear?.(hb),
    async becomeLeader(epoch: number) {
      lease.expect("acquire");
      advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
      lease.answer("acquire", { epoch, revision: epoch + 1 });
      await flush();
      assert.ok(driver.isLeader, "the driver's machine leads");
    },
  };
}

driverTest("driver - a leader heartbeats and reports with its epoch, cluster and a rising seq", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  assert.is(s.heartbeats.length, 1);
  assert.is(s.heartbeats[0]!.epoch, 7);
  assert.is(s.heartbeats[0]!.coordinatorId, "me");
  const types = s.reports.map((r) => r.type);
  assert.equal(types, ["BecameFollower", "BecameCandidate", "BecameLeader"]);
  assert.equal(
    s.reports.map((r) => r.seq),
    [1, 2, 3],
  );
  for (const r of s.reports) {
    assert.is(r.clusterId, "c");
    assert.is(r.coordinatorId, "me");
  }
});

driverTest("driver - the election of one partition of several names it, and hears only its own heartbeats", async () => {
  const s = setup({ partition: { index: 2, count: 4 } });
  s.driver.start();
  // A leader of partition 1 is not this election's business: no lease read, no report.
  s.hear({ coordinatorId: "other", epoch: 5, ts: 0, partition: 1 });
  s.hear({ coordinatorId: "other", epoch: 5, ts: 0 });
  await flush();
  assert.is(s.lease.reads, 0, "heartbeats of other partitions are not even checked");
  await s.becomeLeader(7);
  assert.equal(s.heartbeats[0], { coordinatorId: "me", epoch: 7, ts: s.heartbeats[0]!.ts, partition: 2 });
  assert.equal(
    s.reports.map((r) => r.partition),
    [2, 2, 2],
  );
  // With one partition, neither heartbeats nor reports carry the field: today's wire.
  const one = setup({ partition: { index: 0, count: 1 } });
  one.driver.start();
  await one.becomeLeader(3);
  assert.not.ok("partition" in one.heartbeats[0]!);
  assert.ok(one.reports.every((r) => !("partition" in r)));
});

driverTest("driver - a renewal answered after the renew deadline publishes no heartbeat until a fresh one confirms the lease", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  s.lease.expect("renew", "renew");
  s.advance(T.heartbeatIntervalMs); // the renewal goes out...
  s.pause(2000); // ...and the process is paused before its answer is handled
  s.lease.answer("renew", 9);
  await flush();
  assert.is(s.heartbeats.length, 1, "no heartbeat for a renewal that came back too late");
  assert.ok(!s.driver.leaseIsValid());
  // The late answer proves the lease was still this leader's: it is checked again at once.
  assert.equal(
    s.lease.calls.map((c) => c.args),
    [[{ coordinatorId: "me", epoch: 7 }, 9]],
    "a second renewal against the new revision",
  );
  s.lease.answer("renew", 10);
  await flush();
  assert.ok(s.driver.leaseIsValid());
  assert.equal(
    s.heartbeats.map((h) => h.epoch),
    [7, 7],
    "a heartbeat once a fresh renewal succeeded, same epoch",
  );
  assert.not.ok(s.reports.some((r) => r.type === "SteppedDown"));
});

/** A leader at epoch 7 renews once (revision 9), then is paused 1.2 s from 500 ms after that. */
async function pausedLeader(s: ReturnType<typeof setup>): Promise<{ reports: number; heartbeats: number }> {
  s.driver.start();
  await s.becomeLeader(7);
  s.lease.expect("renew");
  s.advance(T.heartbeatIntervalMs);
  s.lease.answer("renew", 9);
  await flush();
  s.advance(500);
  const before = { reports: s.reports.length, heartbeats: s.heartbeats.length };
  s.lease.expect("renew");
  s.stall(1200);
  return before;
}

driverTest("driver - a leader that wakes past its renew deadline publishes nothing until its check succeeds, then leads on", async () => {
  const s = setup();
  const before = await pausedLeader(s);
  assert.equal(s.driver.actor.getSnapshot().value, { leader: { renewal: "renewing", lease: "unsure" } });
  assert.not.ok(s.driver.leaseIsValid(), "the edge's fence is shut while the check is out");
  assert.equal(
    s.lease.calls.map((c) => c.args),
    [[{ coordinatorId: "me", epoch: 7 }, 9]],
    "one renewal against its own revision",
  );
  assert.is(s.heartbeats.length, before.heartbeats, "no heartbeat while unsure");
  assert.is(s.reports.length, before.reports, "no report while unsure");
  assert.ok(
    s.logLines.some((l) => l.includes('"level":"warn"') && l.includes("renew deadline passed: publishing nothing")),
    "the operator is warned",
  );
  s.lease.answer("renew", 10);
  await flush();
  assert.ok(s.driver.leaseIsValid());
  assert.ok(s.driver.isLeader);
  assert.is(s.driver.actor.getSnapshot().context.epoch, 7, "the same epoch");
  assert.equal(
    s.heartbeats.slice(before.heartbeats).map((h) => h.epoch),
    [7],
  );
  assert.is(s.reports.length, before.reports, "no SteppedDown, no BecameLeader");
  assert.ok(s.logLines.some((l) => l.includes("lease confirmed after the renew deadline had passed")));
  // It renews on from the new revision.
  s.lease.expect("renew");
  s.advance(T.heartbeatIntervalMs);
  assert.equal(
    s.lease.calls.map((c) => c.args),
    [[{ coordinatorId: "me", epoch: 7 }, 10]],
  );
  s.lease.answer("renew", 11);
  await flush();
});

driverTest("driver - a leader that wakes past its renew deadline steps down when its check is refused", async () => {
  const s = setup();
  const before = await pausedLeader(s);
  s.lease.expect("release", "holder");
  s.lease.answer("renew", new LeaseLostError(9, "wrong last sequence"), true);
  await flush();
  assert.is(state(s), "steppingDown");
  assert.not.ok(s.driver.leaseIsValid());
  assert.is(s.heartbeats.length, before.heartbeats, "not a single heartbeat after waking");
  assert.equal(
    s.reports.slice(before.reports).map((r) => `${r.type} ${r.reason} ${r.formerEpoch}`),
    ["SteppedDown lease-lost 7"],
  );
  assert.ok(s.logLines.some((l) => l.includes("could not confirm the lease after the renew deadline had passed")));
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", { coordinatorId: "other", epoch: 12 });
  await flush();
  assert.is(state(s), "follower");
});

driverTest("driver - a leader whose check times out after a pause steps down and releases against its last revision", async () => {
  const s = setup();
  const before = await pausedLeader(s);
  const check = s.lease.calls[0]!;
  s.lease.calls.length = 0; // its answer is lost: the store times the request out
  s.lease.expect("release", "holder");
  check.answer.reject(new Error("lease store: renew failed: TIMEOUT"));
  await flush();
  assert.is(state(s), "steppingDown");
  assert.equal(
    s.reports.slice(before.reports).map((r) => `${r.type} ${r.reason}`),
    ["SteppedDown renew-deadline-missed"],
  );
  // The release goes against the last revision this leader knows; the store deletes a write of its that landed since.
  assert.equal(s.lease.calls.find((c) => c.op === "release")?.args, [{ coordinatorId: "me", epoch: 7 }, 9]);
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", null);
  await flush();
  assert.is(state(s), "follower");
  assert.not.ok(s.driver.leaseIsValid());
  assert.is(s.heartbeats.length, before.heartbeats, "not a single heartbeat after waking");
});

driverTest("driver - nothing is published as leader once the lease is released", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  s.lease.expect("release", "holder");
  const resigned = s.driver.resign(5000);
  assert.is(s.heartbeats.at(-1)?.resigning, true, "the resigning heartbeat goes out first");
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", null);
  await resigned;
  assert.ok(!s.driver.leaseIsValid());
  assert.is(s.reports.at(-1)?.type, "Stopped");
  assert.is(s.reports.at(-1)?.formerEpoch, 7);
});

driverTest("driver - heartbeats and reports are not queued while NATS is disconnected", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  const reportsBefore = s.reports.length;
  s.setConnected(false);
  s.lease.expect("renew");
  s.advance(T.heartbeatIntervalMs);
  s.lease.answer("renew", 9);
  await flush();
  assert.is(s.heartbeats.length, 1, "the heartbeat after the renewal was not queued");
  // A transition while disconnected: the renewal is refused, the leader steps down.
  s.lease.expect("renew", "release", "holder");
  s.advance(T.heartbeatIntervalMs);
  s.lease.answer("renew", new LeaseLostError(9, "wrong revision"), true);
  await flush();
  assert.is(s.driver.actor.getSnapshot().value, "steppingDown");
  assert.is(s.reports.length, reportsBefore, "the SteppedDown report was not queued");
  assert.ok(s.logLines.some((l) => l.includes("not connected to NATS: report not published")));
  s.setConnected(true);
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", null);
  await flush();
  assert.is(s.reports.at(-1)?.type, "BecameFollower", "reports resume once connected");
  assert.is(s.reports.at(-1)?.reason, "stepped-down");
});

driverTest("driver - a renewal that succeeds after the release does not make the lease valid again", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  s.lease.expect("renew", "release", "holder");
  s.advance(T.heartbeatIntervalMs); // a renewal is in flight...
  const heartbeats = s.heartbeats.length;
  const resigned = s.driver.resign(5000); // ...when the leader resigns
  assert.is(s.heartbeats.length, heartbeats + 1, "the resigning heartbeat went out");
  const release = s.lease.calls.find((c) => c.op === "release")!;
  assert.equal(release.args, [{ coordinatorId: "me", epoch: 7 }, 8], "released as this holder, against its last revision");
  s.lease.answer("renew", 9); // the renewal lands after all
  await flush();
  assert.not.ok(s.driver.leaseIsValid(), "a released lease stays invalid");
  assert.is(s.heartbeats.length, heartbeats + 1, "no heartbeat for the late renewal");
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", null);
  await resigned;
});

driverTest("driver - a lost create reads the holder and follows it", async () => {
  const s = setup();
  s.driver.start();
  s.lease.expect("acquire", "holder");
  s.advance(T.leaderTimeoutMs + T.electionBackoffMaxMs);
  s.lease.answer("acquire", new LeaseTakenError("exists"), true);
  await flush();
  s.lease.answer("holder", { coordinatorId: "other", epoch: 12 });
  await flush();
  assert.is(s.driver.actor.getSnapshot().value, "follower");
  assert.equal(
    { type: s.reports.at(-1)?.type, leaderId: s.reports.at(-1)?.leaderId, epoch: s.reports.at(-1)?.epoch },
    { type: "BecameFollower", leaderId: "other", epoch: 12 },
  );
  // Heartbeats of that leader are now followed silently.
  s.hear({ coordinatorId: "other", epoch: 12, ts: 0 });
  assert.is(s.reports.at(-1)?.type, "BecameFollower");
  assert.is(s.lease.calls.length, 0, "no lease call left unanswered");
});

const state = (s: ReturnType<typeof setup>) => s.driver.actor.getSnapshot().value;
const warned = (s: ReturnType<typeof setup>, text: string) => s.logLines.filter((l) => l.includes(text)).length;

driverTest("driver - a follower checks a leader it has not seen against the lease, and ignores a forged higher epoch", async () => {
  const s = setup();
  s.driver.start();
  s.lease.expect("holder");
  s.hear({ coordinatorId: "mallory", epoch: 1_000_000, ts: 0 });
  assert.is(s.lease.calls.length, 1, "the unseen leader waits for a lease read");
  s.lease.answer("holder", { coordinatorId: "real", epoch: 5 });
  await flush();
  assert.is(state(s), "follower");
  assert.is(s.driver.actor.getSnapshot().context.highestEpoch, 0, "the forged epoch never reached the machine");
  assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 1);
  assert.not.ok(
    s.reports.some((r) => r.leaderId === "mallory"),
    "nobody follows the forger",
  );
  // The real leader's heartbeats, at an epoch far below the forged one, are followed:
  // the read that refused the forgery named it, so they need no read of their own.
  s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
  assert.equal(
    { type: s.reports.at(-1)?.type, leaderId: s.reports.at(-1)?.leaderId, epoch: s.reports.at(-1)?.epoch },
    { type: "FollowingLeader", leaderId: "real", epoch: 5 },
  );
  assert.is(s.driver.actor.getSnapshot().context.highestEpoch, 5);
  for (let i = 0; i < 3; i++) {
    s.advance(T.leaderTimeoutMs / 4);
    s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
    s.hear({ coordinatorId: "mallory", epoch: 1_000_000, ts: 0 }); // refused: no read for a leader timeout
  }
  for (let i = 0; i < 5; i++) {
    s.advance(T.heartbeatIntervalMs);
    s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
  }
  assert.is(state(s), "follower", "heartbeats of the real leader keep it following; it never stood for election");
  assert.is(s.lease.calls.length, 0);
});

driverTest(
  "driver - a forged heartbeat in the followed leader's name at a far higher epoch costs one lease read and is refused",
  async () => {
    const s = setup();
    s.driver.start();
    await followReal(s);
    const readsBefore = s.lease.reads;
    const reportsBefore = s.reports.length;
    // The impersonator uses the real leader's id: only the epoch tells it apart.
    s.lease.expect("holder");
    s.hear({ coordinatorId: "real", epoch: 1_000_000, ts: 0 });
    await waitForCall(s.lease, "holder"); // after the spacing between two reads
    // A burst of copies arrives while the read is out; the answer comes past the spacing
    // between two reads, so a second read would go out at once.
    for (let i = 0; i < 4; i++) s.hear({ coordinatorId: "real", epoch: 1_000_000, ts: 0 });
    s.advance(100);
    s.lease.answer("holder", { coordinatorId: "real", epoch: 5 });
    await flush();
    assert.is(s.lease.reads - readsBefore, 1, "one lease read");
    assert.is(s.driver.actor.getSnapshot().context.highestEpoch, 5, "the highest epoch is still the real one");
    assert.is(s.driver.actor.getSnapshot().context.leader?.epoch, 5, "it still follows the real leader's epoch");
    assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 1);
    assert.ok(
      s.logLines.some((l) => l.includes('"heartbeatFrom":"real"') && l.includes('"heartbeatEpoch":1000000')),
      "the warning names the forged epoch",
    );
    assert.is(s.reports.length, reportsBefore, "no election report: nothing changed");
    // More of the same forgery cost no read while it is remembered as refused (a leader
    // timeout), and the real leader's heartbeats keep it following. Each comes well past the
    // spacing between two reads, so a read would be made at once.
    for (let i = 0; i < 4; i++) {
      s.advance(T.leaderTimeoutMs / 5);
      s.hear({ coordinatorId: "real", epoch: 1_000_000, ts: 0 });
      s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
    }
    await flush();
    assert.is(s.lease.reads - readsBefore, 1, "still one lease read");
    assert.is(state(s), "follower");
    assert.is(s.driver.actor.getSnapshot().context.highestEpoch, 5);
  },
);

driverTest("driver - a leader does not step down for a forged higher epoch, and does for a real one", async () => {
  const s = setup();
  s.driver.start();
  await s.becomeLeader(7);
  s.lease.expect("holder");
  s.hear({ coordinatorId: "mallory", epoch: 50, ts: 0 });
  s.lease.answer("holder", { coordinatorId: "me", epoch: 7 });
  await flush();
  assert.ok(s.driver.isLeader, "the lease is still this leader's: the forgery changes nothing");
  assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 1);
  // Another coordinator really holds the lease now (this one's lapsed): it steps down.
  s.lease.expect("holder", "release", "holder");
  s.hear({ coordinatorId: "other", epoch: 9, ts: 0 });
  await waitForCall(s.lease, "holder"); // after the spacing between two reads
  s.lease.answer("holder", { coordinatorId: "other", epoch: 9 });
  await flush();
  assert.is(state(s), "steppingDown");
  assert.ok(s.reports.some((r) => r.type === "SteppedDown" && r.reason === "superseded"));
  s.lease.answer("release", undefined);
  await flush();
  s.lease.answer("holder", { coordinatorId: "other", epoch: 9 });
  await flush();
  assert.is(state(s), "follower");
});

driverTest("driver - a flood of forged heartbeats costs a bounded number of lease reads", async () => {
  const s = setup();
  s.driver.start();
  s.lease.expect("holder", "holder");
  for (let i = 0; i < 500; i++) s.hear({ coordinatorId: `forger-${i}`, epoch: 100 + i, ts: 0 });
  assert.is(s.lease.calls.length, 1, "one read at a time");
  s.lease.answer("holder", null);
  // The next read waits for the spacing between reads, then takes every heartbeat that waited (at most 16).
  await waitForCall(s.lease, "holder");
  s.lease.answer("holder", null);
  await flush();
  assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 1, "17 refused, one warning");
  // Refused leaders cost no read while they are remembered.
  for (let i = 0; i < 17; i++) s.hear({ coordinatorId: `forger-${i}`, epoch: 100 + i, ts: 0 });
  await flush();
  assert.is(s.lease.calls.length, 0);
  assert.is(state(s), "follower");
  assert.is(s.driver.actor.getSnapshot().context.highestEpoch, 0);
});

driverTest("driver - a resignation of a leader not seen yet is believed once the lease is gone", async () => {
  const s = setup();
  s.driver.start();
  s.lease.expect("holder");
  s.hear({ coordinatorId: "old", epoch: 4, ts: 0, resigning: true });
  s.lease.answer("holder", null);
  await flush();
  assert.equal(state(s), { candidate: "backoff" });
  assert.is(s.reports.at(-1)?.reason, "leader-resigned");
});

driverTest("driver - a forged resignation of the confirmed leader is checked against the lease and ignored", async () => {
  const s = setup();
  s.driver.start();
  await followReal(s);
  // The lease still names the leader: its delete may not have landed, so it is read again
  // until the grace has passed, then refused.
  s.lease.expect("holder", "holder");
  s.hear({ coordinatorId: "real", epoch: 5, ts: 0, resigning: true });
  s.hear({ coordinatorId: "real", epoch: 5, ts: 0, resigning: true }); // already waiting: no second read
  await waitForCall(s.lease, "holder"); // after the spacing between two reads
  assert.is(s.lease.calls.length, 1);
  s.lease.answer("holder", { coordinatorId: "real", epoch: 5 });
  await flush();
  assert.is(state(s), "follower", "not believed while the lease names the leader");
  s.pause(600); // past the grace (the machine's clock stands still: no leader timeout)
  await waitForCall(s.lease, "holder");
  s.lease.answer("holder", { coordinatorId: "real", epoch: 5 });
  await flush();
  assert.is(state(s), "follower");
  assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 1);
  assert.not.ok(
    s.reports.some((r) => r.type === "BecameCandidate"),
    "nobody stood for election",
  );
  // Refused: more forged resignations cost no read for a leader timeout, and the leader's
  // ordinary heartbeats are still followed.
  for (let i = 0; i < 50; i++) s.hear({ coordinatorId: "real", epoch: 5, ts: 0, resigning: true });
  for (let i = 0; i < 5; i++) {
    s.advance(T.heartbeatIntervalMs);
    s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
  }
  await flush();
  assert.is(s.lease.calls.length, 0);
  assert.is(state(s), "follower");
});

driverTest("driver - a real resignation is believed as soon as the lease is gone", async () => {
  const s = setup();
  s.driver.start();
  await followReal(s);
  s.lease.expect("holder", "holder");
  s.hear({ coordinatorId: "real", epoch: 5, ts: 0, resigning: true });
  await waitForCall(s.lease, "holder");
  s.lease.answer("holder", { coordinatorId: "real", epoch: 5 }); // the delete has not landed yet
  await flush();
  assert.is(state(s), "follower");
  await waitForCall(s.lease, "holder");
  s.lease.answer("holder", null);
  await flush();
  assert.equal(state(s), { candidate: "backoff" });
  assert.is(s.reports.at(-1)?.reason, "leader-resigned");
  assert.is(warned(s, "ignored a heartbeat that the lease does not confirm"), 0);
});

driverTest(
  "driver - a heartbeat with this coordinator's own id from elsewhere is ignored and warned of once per leader timeout",
  async () => {
    const s = setup();
    s.driver.start();
    for (let i = 0; i < 3; i++) s.hear({ coordinatorId: "me", epoch: 40 + i, ts: 0 }); // a forger cycling epochs
    assert.is(warned(s, "another coordinator running with the same --coordinator-id"), 1);
    s.pause(T.leaderTimeoutMs);
    s.hear({ coordinatorId: "me", epoch: 50, ts: 0 });
    assert.is(warned(s, "another coordinator running with the same --coordinator-id"), 2);
    const summary = s.logLines.filter((l) => l.includes("more heartbeats with this coordinator's own id were heard"));
    assert.equal(summary.length, 1, "the ones not logged are summed up when the next warning comes");
    assert.ok(summary[0]!.includes('"count":2'), "the summary counts the ones not logged");
    assert.is(state(s), "follower");
    assert.is(s.lease.calls.length, 0);
  },
);

/** Confirms the leader real@5 against the lease and follows it. */
async function followReal(s: ReturnType<typeof setup>): Promise<void> {
  s.lease.expect("holder");
  s.hear({ coordinatorId: "real", epoch: 5, ts: 0 });
  s.lease.answer("holder", { coordinatorId: "real", epoch: 5 });
  await flush();
  assert.is(s.reports.at(-1)?.type, "FollowingLeader");
}

async function waitForCall(lease: StrictLeaseStore, op: string): Promise<void> {
  for (let i = 0; i < 100 && !lease.calls.some((c) => c.op === op); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(
    lease.calls.some((c) => c.op === op),
    `a ${op} call was made`,
  );
}

test.run();
