/**
 * The heartbeat gate alone, with a lease whose every read the test answers, a fake
 * monotonic clock and no election machine: what it delivers, holds, refuses and warns of.
 */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { HeartbeatGate } from "../../src/election/heartbeat-gate.js";
import { LeaseFence } from "../../src/election/lease-fence.js";
import { createLogger } from "../../src/observe/logger.js";
import type { Heartbeat, LeaseHolder } from "../../src/protocol/election.js";

const LEADER_TIMEOUT_MS = 2000;

function setup(own = { epoch: 0, highestEpoch: 0 }) {
  let now = 1000;
  const reads: { resolve: (h: LeaseHolder | null) => void; reject: (e: unknown) => void }[] = [];
  const delivered: Heartbeat[] = [];
  const warnings: Record<string, unknown>[] = [];
  let running = true;
  const gate = new HeartbeatGate({
    coordinatorId: "me",
    leaderTimeoutMs: LEADER_TIMEOUT_MS,
    lease: {
      holder: () =>
        new Promise<LeaseHolder | null>((resolve, reject) => {
          reads.push({ resolve, reject });
        }),
    },
    now: () => now,
    log: createLogger({
      format: "json",
      verbose: false,
      stream: new Writable({
        write(chunk, _enc, cb) {
          const line = JSON.parse(String(chunk)) as Record<string, unknown>;
          if (line.level === "warn") warnings.push(line);
          cb();
        },
      }),
    }),
    epochs: () => own,
    isLeader: () => false,
    isRunning: () => running,
    deliver: (hb) => delivered.push(hb),
  });
  /** Answers the oldest lease read, then lets the gate's promise chain run. */
  const answer = async (holder: LeaseHolder | null | Error) => {
    const read = reads.shift();
    if (read === undefined) throw new Error("no lease read is waiting");
    if (holder instanceof Error) read.reject(holder);
    else read.resolve(holder);
    await new Promise((r) => setImmediate(r));
  };
  const flush = () => new Promise((r) => setImmediate(r));
  return {
    gate,
    reads,
    delivered,
    warnings,
    answer,
    flush,
    advance: (ms: number) => {
      now += ms;
    },
    stopRunning: () => {
      running = false;
    },
  };
}

const hb = (coordinatorId: string, epoch: number, resigning = false): Heartbeat => ({
  coordinatorId,
  epoch,
  ts: 0,
  ...(resigning ? { resigning: true } : {}),
});

test("heartbeat gate - a new leader's heartbeat waits for the lease, and is delivered when the lease names it", async () => {
  const g = setup();
  g.gate.hear(hb("a", 5));
  await g.flush();
  assert.is(g.delivered.length, 0, "held until the lease is read");
  assert.is(g.reads.length, 1, "one read");
  g.gate.hear(hb("a", 5)); // a copy while the read is in flight costs nothing
  await g.answer({ coordinatorId: "a", epoch: 5 });
  assert.equal(
    g.delivered.map((h) => h.coordinatorId),
    ["a"],
  );
  g.gate.hear(hb("a", 5));
  assert.is(g.delivered.length, 2, "a confirmed leader's next heartbeat is delivered at once");
  assert.is(g.reads.length, 0, "and costs no read");
});

test("heartbeat gate - a heartbeat the lease does not confirm is refused, warned of once, and its copies cost no read for a leader timeout", async () => {
  const g = setup();
  g.gate.hear(hb("forger", 9));
  await g.flush();
  await g.answer({ coordinatorId: "a", epoch: 5 });
  assert.is(g.delivered.length, 0);
  assert.is(g.warnings.length, 1);
  assert.is(g.warnings[0]!.heartbeatFrom, "forger");
  assert.is(g.warnings[0]!.leaseHolder, "a (epoch 5)");
  g.gate.hear(hb("forger", 9));
  await g.flush();
  assert.is(g.reads.length, 0, "refused: dropped without a read");
  g.advance(LEADER_TIMEOUT_MS);
  g.gate.hear(hb("forger", 9));
  await g.flush();
  await new Promise((r) => setTimeout(r, 60)); // the reads are spaced 50 ms apart on the real clock
  assert.is(g.reads.length, 1, "read again after a leader timeout");
});

test("heartbeat gate - a stale epoch is dropped; the own id is warned of, not delivered", async () => {
  const g = setup({ epoch: 0, highestEpoch: 7 });
  g.gate.hear(hb("a", 6));
  g.gate.hear(hb("me", 3));
  g.gate.hear(hb("me", 4));
  await g.flush();
  assert.is(g.reads.length, 0);
  assert.is(g.delivered.length, 0);
  assert.is(g.warnings.length, 1, "one warning per leader timeout");
  assert.match(String(g.warnings[0]!.message), /same --coordinator-id/);
});

test("heartbeat gate - its warnings are one per leader timeout on the gate's clock, the rest summed up after it", async () => {
  const g = setup({ epoch: 0, highestEpoch: 0 });
  g.gate.hear(hb("me", 3));
  g.gate.hear(hb("me", 4));
  g.gate.hear(hb("me", 5));
  g.gate.hear(hb("forger", 9));
  await g.flush();
  await g.answer({ coordinatorId: "a", epoch: 5 });
  g.gate.hear(hb("forger", 10));
  await new Promise((r) => setTimeout(r, 60)); // the reads are spaced 50 ms apart on the real clock
  await g.answer({ coordinatorId: "a", epoch: 5 });
  const messages = () => g.warnings.map((w) => String(w.message));
  assert.is(g.warnings.length, 2, `one warning of each kind within the leader timeout: ${messages().join(" | ")}`);
  assert.match(messages()[0]!, /same --coordinator-id/);
  assert.match(messages()[1]!, /^ignored a heartbeat that the lease does not confirm/);
  g.advance(LEADER_TIMEOUT_MS - 1);
  g.gate.hear(hb("me", 6));
  assert.is(g.warnings.length, 2, "still inside the window");
  g.advance(1);
  g.gate.hear(hb("me", 7));
  g.gate.hear(hb("forger", 11));
  await new Promise((r) => setTimeout(r, 60));
  await g.answer({ coordinatorId: "a", epoch: 5 });
  const later = g.warnings.slice(2).map((w) => [String(w.message).split(" ").slice(0, 4).join(" "), w.count ?? w.heartbeatEpoch]);
  assert.equal(later, [
    ["more heartbeats with this", 3], // epochs 4, 5 and 6, counted
    ["heard a heartbeat with", 7],
    ["more heartbeats that the", 1], // epoch 10, counted
    ["ignored a heartbeat that", 11],
  ]);
});

test("heartbeat gate - a resignation is checked even from a confirmed leader, and believed once the lease is gone", async () => {
  const g = setup();
  g.gate.confirm({ coordinatorId: "a", epoch: 5 });
  g.gate.hear(hb("a", 5));
  assert.is(g.delivered.length, 1, "confirmed: delivered without a read");
  g.gate.hear(hb("a", 5, true));
  await g.flush();
  assert.is(g.delivered.length, 1, "the resignation waits for the lease");
  await g.answer(null);
  assert.is(g.delivered.length, 2);
  assert.is(g.delivered[1]!.resigning, true);
});

test("heartbeat gate - a resignation while the lease still names its leader waits out the grace, then is refused", async () => {
  const g = setup();
  g.gate.hear(hb("a", 5, true));
  await g.flush();
  await g.answer({ coordinatorId: "a", epoch: 5 });
  assert.is(g.delivered.length, 0, "the delete may not have landed yet: waits");
  await new Promise((r) => setTimeout(r, 60));
  assert.is(g.reads.length, 1, "read again");
  g.advance(600);
  await g.answer({ coordinatorId: "a", epoch: 5 });
  assert.is(g.delivered.length, 0);
  assert.is(g.warnings.length, 1, "past the grace: refused as a forgery");
  assert.is(g.warnings[0]!.resigning, true);
});

test("heartbeat gate - a failed lease read neither delivers nor refuses; nothing is read once the election stopped", async () => {
  const g = setup();
  g.gate.hear(hb("a", 5));
  await g.flush();
  await g.answer(new Error("timeout"));
  assert.is(g.delivered.length, 0);
  assert.is(g.warnings.length, 1);
  assert.match(String(g.warnings[0]!.message), /could not read the lease/);
  g.stopRunning();
  g.gate.hear(hb("a", 5));
  await new Promise((r) => setTimeout(r, 60));
  assert.is(g.reads.length, 0, "not refused, but no read either: the election has stopped");
  g.gate.stop();
});

test("lease fence - open for the renew deadline from when the write was sent; a release shuts out a renewal in flight", () => {
  let now = 0;
  const fence = new LeaseFence(() => now, 1500);
  assert.is(fence.isValid(), false, "shut until a write succeeds");
  fence.written(100);
  now = 1599;
  assert.is(fence.isValid(), true);
  now = 1600;
  assert.is(fence.isValid(), false, "the deadline counts from when the write was sent");
  const ticket = fence.renewing();
  assert.is(fence.renewed(ticket, 1600), true);
  assert.is(fence.isValid(), true);
  const inFlight = fence.renewing();
  fence.release();
  assert.is(fence.isValid(), false);
  assert.is(fence.renewed(inFlight, 1700), false, "a renewal sent before the release does not open the fence");
  assert.is(fence.isValid(), false);
  fence.written(1700);
  assert.is(fence.isValid(), true, "a new lease opens it");
  fence.close();
  assert.is(fence.isValid(), false);
});

test.run();
