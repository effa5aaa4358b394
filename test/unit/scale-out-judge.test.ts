/** The scale-out bench's readings: partition leaders from heartbeats, balance, failover per partition, CPU shares. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { balanceOf, failoverTimes, judgeShares, ledBy, PartitionLeaders, type PartitionHeartbeat } from "../../harness/scale-out-judge.js";

const hb = (atMs: number, coordinatorId: string, partition: number, epoch = 1, resigning = false): PartitionHeartbeat => ({
  atMs,
  coordinatorId,
  epoch,
  partition,
  resigning,
});

test("scale-out judge - a partition's leader is the sender of its latest heartbeat", () => {
  const l = new PartitionLeaders(3, 2500);
  l.hear(hb(0, "a", 0, 5));
  l.hear(hb(0, "a", 1, 6));
  l.hear(hb(100, "b", 1, 9));
  assert.equal(l.leaders(200), ["a", "b", null]);
  assert.is(l.highestEpoch(), 9);
});

test("scale-out judge - a resigning heartbeat, or none for longer than staleMs, leaves a partition without a leader", () => {
  const l = new PartitionLeaders(2, 2500);
  l.hear(hb(0, "a", 0));
  l.hear(hb(0, "a", 1));
  l.hear(hb(50, "a", 1, 1, true));
  assert.equal(l.leaders(2500), ["a", null]);
  assert.equal(l.leaders(2501), [null, null]);
});

test("scale-out judge - a heartbeat heard out of order does not replace a later one, nor one past the partitions", () => {
  const l = new PartitionLeaders(1, 2500);
  l.hear(hb(100, "b", 0));
  l.hear(hb(50, "a", 0));
  l.hear(hb(200, "c", 1));
  assert.equal(l.leaders(200), ["b"]);
});

test("scale-out judge - balanced when every partition is led by a live coordinator and max - min led is at most 1", () => {
  assert.equal(balanceOf(["a", "b", "c", "a", "b"], ["a", "b", "c"]), { balanced: true, led: { a: 2, b: 2, c: 1 }, free: 0, byOthers: 0 });
  // A joiner that leads nothing yet counts.
  const joining = balanceOf(["a", "a", "b", "b"], ["a", "b", "c"]);
  assert.not.ok(joining.balanced);
  assert.equal(joining.led, { a: 2, b: 2, c: 0 });
  assert.not.ok(balanceOf(["a", null], ["a", "b"]).balanced);
  const gone = balanceOf(["a", "x"], ["a", "b"]);
  assert.equal([gone.balanced, gone.byOthers], [false, 1]);
  assert.not.ok(balanceOf(["a"], []).balanced);
});

test("scale-out judge - ledBy lists the partitions a coordinator leads", () => {
  assert.equal(ledBy(["a", "b", null, "a"], "a"), [0, 3]);
  assert.equal(ledBy(["a"], "b"), []);
});

test("scale-out judge - failover of a partition: the crash to its first heartbeat from another coordinator, not resigning", () => {
  const heard = [
    hb(900, "v", 0), // before the crash
    hb(1100, "v", 0), // the victim's, already sent
    hb(1500, "b", 0, 2, true), // resigning: not a leader
    hb(2800, "b", 1, 3), // another partition
    hb(3000, "b", 0, 4),
    hb(3200, "c", 0, 5),
  ];
  assert.equal(failoverTimes(1000, "v", [0, 2], heard), [
    { partition: 0, newLeader: "b", ms: 2000 },
    { partition: 2, newLeader: null, ms: null },
  ]);
});

test("scale-out judge - shares of one leader's CPU: about 1/n each, up to the tolerance", () => {
  const ok = judgeShares(0.8, [0.4, 0.5]);
  assert.equal(ok.shares, [0.5, 0.625]);
  assert.is(ok.target, 0.5);
  assert.is(ok.total, 1.125);
  assert.ok(ok.ok);
  const over = judgeShares(0.8, [0.4, 0.52]);
  assert.not.ok(over.ok);
  assert.equal(over.reasons, ["coordinator 2 of 2 spent 0.65 of one leader's CPU, above 0.63"]);
  // The bound itself: (1 + 0.25) / 2 holds, a hair above does not.
  assert.ok(judgeShares(1, [0.5, 0.625]).ok);
  assert.not.ok(judgeShares(1, [0.5, 0.63]).ok);
  assert.ok(judgeShares(0.9, [0.3, 0.3, 0.3], 0).ok);
  assert.not.ok(judgeShares(0.9, [0.3, 0.3, 0.31], 0).ok);
});

test("scale-out judge - no single leader's CPU, no verdict of shares", () => {
  const v = judgeShares(Number.NaN, [0.1, 0.1]);
  assert.not.ok(v.ok);
  assert.equal(v.reasons, ["the single leader's CPU was not measured"]);
  assert.not.ok(judgeShares(0.5, [Number.NaN, 0.1]).ok);
});

test.run();
