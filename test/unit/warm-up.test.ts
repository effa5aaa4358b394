/**
 * The takeover rehearsal (src/presence/warm-up.ts) runs the load path of a new leader for
 * every made-up client, leaves no timer behind, stops when it is told to, rejects when it
 * did not report every client, and runs once per process.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rehearseTakeover, rehearseTakeoverOnce } from "../../src/presence/warm-up.js";

const settings = { pingIntervalMs: 750, deadTimeoutMs: 5000, stateIntervalMs: 1500, sweepIntervalMs: 50, shardCount: 64 };
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const turn = () => new Promise((resolve) => setImmediate(resolve));

for (const encoding of ["protobuf", "json"] as const) {
  test(`warm-up - a rehearsal spawns, reports and encodes every made-up client, in parts, and stops every timer (${encoding})`, async () => {
    await turn(); // the test runner's own timer is done
    const before = timers();
    const result = await rehearseTakeover(settings, encoding, 2500);
    assert.equal([result.clients, result.reports, result.completed], [2500, 2500, true], "one NodePresent per made-up client, encoded");
    assert.is(timers(), before, "the rehearsal's sweep timer is stopped with it");
  });
}

test("warm-up - a rehearsal of fewer clients than a part loads them as the last part", async () => {
  const result = await rehearseTakeover(settings, "protobuf", 10);
  assert.equal([result.reports, result.completed], [10, true]);
});

test("warm-up - a rehearsal stops between two parts once it may not go on, and leaves no timer", async () => {
  await turn();
  const before = timers();
  let asked = 0;
  const result = await rehearseTakeover(settings, "protobuf", 5000, () => ++asked <= 2);
  assert.equal([result.clients, result.reports, result.completed], [2000, 2000, false]);
  assert.is(timers(), before);
});

test("warm-up - a rehearsal that does not report every made-up client rejects, and nothing reaches the process", async () => {
  const uncaught: unknown[] = [];
  const keep = (err: unknown) => void uncaught.push(err);
  process.on("uncaughtException", keep);
  try {
    // No shard to route a registration to: nobody is spawned or reported.
    const err = await rehearseTakeover({ ...settings, shardCount: 0 }, "protobuf", 100).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error && /loaded 100 clients and reported 0/.test(err.message), `the rehearsal rejects (got ${String(err)})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(uncaught, []);
  } finally {
    process.off("uncaughtException", keep);
  }
});

test("warm-up - a process rehearses once; one that was stopped leaves it to the next", async () => {
  const stopped = await rehearseTakeoverOnce(settings, "protobuf", () => false);
  assert.equal(stopped?.completed, false);
  const [first, concurrent] = await Promise.all([
    rehearseTakeoverOnce(settings, "protobuf", () => true),
    rehearseTakeoverOnce(settings, "protobuf", () => true),
  ]);
  assert.equal([first?.completed, concurrent], [true, null], "a second call while one runs does nothing");
  assert.is(await rehearseTakeoverOnce(settings, "protobuf", () => true), null, "nor after it is done");
});

test.run();
