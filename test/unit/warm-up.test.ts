/**
 * The takeover rehearsal (src/services/warm-up.ts) runs the load path of a new leader for
 * every made-up client, and leaves no timer behind.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rehearseTakeover } from "../../src/services/warm-up.js";

const settings = { pingIntervalMs: 750, deadTimeoutMs: 5000, stateIntervalMs: 1500, sweepIntervalMs: 50, shardCount: 64 };
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

for (const encoding of ["protobuf", "json"] as const) {
  test(`warm-up - a rehearsal spawns, reports and encodes every made-up client, in parts, and stops every timer (${encoding})`, async () => {
    await new Promise((resolve) => setImmediate(resolve)); // the test runner's own timer is done
    const before = timers();
    const result = await rehearseTakeover(settings, encoding, 2500);
    assert.is(result.clients, 2500);
    assert.is(result.reports, 2500, "one NodePresent per made-up client, encoded");
    assert.is(timers(), before, "the rehearsal's sweep timer is stopped with it");
  });
}

test("warm-up - a rehearsal of fewer clients than a part loads them as the last part", async () => {
  const result = await rehearseTakeover(settings, "protobuf", 10);
  assert.is(result.reports, 10);
});

test.run();
