/** The balancing plan: targets, handovers and the standing delay, as pure functions. */
import fc from "fast-check";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { heirs, planBalance, standingDelays, targets, type BalanceView } from "../../src/election/balance-plan.js";

const view = (self: string, live: string[], leaders: (string | null)[], maxMovesPerRound = 2): BalanceView => ({
  self,
  partitions: leaders.length,
  live,
  leaders,
  maxMovesPerRound,
});

test("balance - three coordinators with two partitions each: nothing moves", () => {
  const leaders = ["a", "a", "b", "b", "c", "c"];
  for (const self of ["a", "b", "c"]) {
    const plan = planBalance(view(self, ["a", "b", "c"], leaders));
    assert.equal(plan, { share: 2, target: 2, led: 2, handovers: [] }, self);
  }
});

test("balance - a fourth coordinator joins: exactly one partition moves to it, and then it is stable", () => {
  const leaders = ["a", "a", "b", "b", "c", "c"];
  const live = ["a", "b", "c", "d"];
  const moves = ["a", "b", "c", "d"].flatMap((self) => planBalance(view(self, live, leaders)).handovers.map((h) => ({ from: self, ...h })));
  assert.equal(moves, [{ from: "c", partition: 5, successor: "d" }], "the last of the most-loaded hands one over");
  const after = ["a", "a", "b", "b", "c", "d"];
  for (const self of live) assert.equal(planBalance(view(self, live, after)).handovers, [], `${self} after the move`);
});

test("balance - a coordinator that took over a crashed one's partitions hands the surplus to the other survivor", () => {
  // c crashed; a won both of its partitions.
  const leaders = ["a", "a", "b", "b", "a", "a"];
  const plan = planBalance(view("a", ["a", "b"], leaders));
  assert.equal(plan.share, 3);
  assert.equal(plan.target, 3);
  assert.equal(plan.handovers, [{ partition: 5, successor: "b" }]);
  assert.equal(planBalance(view("b", ["a", "b"], leaders)).handovers, []);
});

test("balance - at most maxMovesPerRound partitions move per round", () => {
  const leaders = Array.from({ length: 12 }, () => "a");
  const plan = planBalance(view("a", ["a", "b", "c"], leaders, 2));
  assert.is(plan.target, 4);
  assert.is(plan.handovers.length, 2, "two this round, not eight");
  assert.equal(
    plan.handovers.map((h) => h.successor),
    ["b", "c"],
    "each to the one furthest below its target",
  );
});

test("balance - free partitions and leaders that are not live do not confuse the plan", () => {
  // Free partitions are stood for, not handed over: at its target, a keeps what it leads.
  const atTarget = planBalance(view("a", ["a", "b"], [null, "gone", "a", "a", "a", null]));
  assert.equal(atTarget, { share: 3, target: 3, led: 3, handovers: [] });
  const plan = planBalance(view("a", ["a", "b"], [null, "gone", "a", "a", "a", "a"]));
  assert.is(plan.led, 4);
  assert.equal(plan.handovers, [{ partition: 5, successor: "b" }]);
  assert.equal(planBalance(view("solo", ["solo"], [null, null])), { share: 2, target: 2, led: 0, handovers: [] });
});

test("balance - repeated rounds from any start end balanced (max - min <= 1) and then move nothing", () => {
  const ids = ["a", "b", "c", "d", "e"];
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 5 }),
      fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 40, maxLength: 40 }),
      (partitions, n, owners) => {
        const live = ids.slice(0, n);
        const leaders = Array.from({ length: partitions }, (_, p) => live[owners[p]! % n]!);
        for (let round = 0; round < 100; round++) {
          const moves = live.flatMap((self) => planBalance(view(self, live, leaders)).handovers);
          if (moves.length === 0) break;
          for (const m of moves) leaders[m.partition] = m.successor;
        }
        const counts = live.map((id) => leaders.filter((l) => l === id).length);
        assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `counts ${counts}`);
        assert.equal(
          live.flatMap((self) => planBalance(view(self, live, leaders)).handovers),
          [],
          "stable",
        );
      },
    ),
    { numRuns: 500 },
  );
});

test("balance - nothing is handed to a coordinator that is not ready yet; its share still counts", () => {
  const leaders = ["a", "a", "a", "b", "b", "b"];
  const live = ["a", "b", "c"];
  assert.equal(planBalance({ ...view("a", live, leaders), ready: ["a", "b"] }).handovers, [], "c has just joined");
  assert.equal(planBalance({ ...view("a", live, leaders), ready: ["a", "b", "c"] }).handovers, [{ partition: 2, successor: "c" }]);
});

test("balance - targets sum to the partitions", () => {
  const t = targets(
    7,
    new Map([
      ["a", 0],
      ["b", 5],
      ["c", 2],
    ]),
  );
  assert.equal(
    [...t.entries()],
    [
      ["b", 3],
      ["c", 2],
      ["a", 2],
    ],
  );
});

test("balance - a crashed leader's partitions have heirs spread over the survivors, the least loaded first", () => {
  const leaders = ["a", "a", "b", "b", "c", "c"];
  const order = heirs(["a", "b", "c"], leaders);
  // a's partitions: b first for partition 0 (ties to the lowest id), then c, who now leads fewer counting it.
  assert.equal(order[0], ["b", "c"]);
  assert.equal(order[1], ["c", "b"]);
  assert.equal(order[2], ["a", "c"]);
  assert.equal(order[3], ["c", "a"]);
  assert.equal(order[4], ["a", "b"]);
  assert.equal(order[5], ["b", "a"]);
  assert.equal(standingDelays("c", order, 150, 2), [150, 0, 150, 0, 300, 300], "c leads 4 and 5 itself: it never stands for them");
});

test("balance - free partitions at a cold start are spread over everyone; the least loaded are heirs first", () => {
  const order = heirs(["c", "a", "b"], [null, null, null, null]);
  assert.equal(
    order.map((o) => o[0]),
    ["a", "b", "c", "a"],
  );
  const loaded = heirs(["a", "b"], ["a", "a", null]);
  assert.equal(loaded[2], ["b", "a"], "b leads none: it is the free partition's heir");
  // A leader that is not live: its partitions are as free.
  assert.equal(
    heirs(["a", "b"], ["gone", "gone"]).map((o) => o[0]),
    ["a", "b"],
  );
  assert.equal(standingDelays("z", [["a", "b"]], 100, 2), [200], "one not in the order waits the most");
});

test("balance - property: a leader's partitions fill up the least loaded of the others first (water-filling)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 6 }), fc.array(fc.integer({ min: -1, max: 6 }), { minLength: 1, maxLength: 40 }), (n, picks) => {
      const live = Array.from({ length: n }, (_, i) => `c${i}`);
      const leaders = picks.map((i) => (i < 0 ? null : `c${i % (n + 1)}`)); // c{n} is not live
      const order = heirs(live, leaders);
      const led = (id: string) => leaders.filter((l) => l === id).length;
      for (const owner of [...live, null]) {
        const candidates = live.filter((id) => id !== owner);
        const load = new Map(candidates.map((id) => [id, led(id)]));
        const received = new Set<string>();
        leaders.forEach((l, p) => {
          if ((live.includes(l ?? "") ? l : null) !== owner) return;
          const o = order[p]!;
          assert.equal([...o].sort(), [...candidates].sort(), "every other live coordinator, once");
          load.set(o[0]!, load.get(o[0]!)! + 1);
          received.add(o[0]!);
        });
        if (received.size === 0) continue;
        const most = Math.max(...[...received].map((id) => load.get(id)!));
        const least = Math.min(...load.values());
        assert.ok(most - least <= 1, `an heir ends at ${most} while another candidate has ${least}`);
      }
    }),
  );
});

test.run();
