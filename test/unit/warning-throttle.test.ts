/** WarningThrottle: a flood of one warning logs a few lines that still account for every one. */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createLogger, WarningThrottle } from "../../src/observe/logger.js";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    format: "json",
    verbose: false,
    stream: new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        cb();
      },
    }),
  });
  return { logger, lines };
}

test("throttle - the first of each kind per window is logged in full, the rest summed up when the window ends", () => {
  const { logger, lines } = capture();
  const t = new WarningThrottle(logger, "more refused", 60_000);
  for (let i = 0; i < 10_000; i++) t.warn("not-json", "refused", { reason: "not-json", i });
  t.warn("wildcard", "refused", { reason: "wildcard" });
  t.warn("wildcard", "refused", { reason: "wildcard" });
  assert.equal(
    lines.map((l) => [l.message, l.reason, l.i]),
    [
      ["refused", "not-json", 0],
      ["refused", "wildcard", undefined],
    ],
  );
  t.flush();
  assert.is(lines.length, 3);
  assert.equal([lines[2]!.message, lines[2]!.count, lines[2]!.byKind], ["more refused", 10_000, { "not-json": 9_999, wildcard: 1 }]);
  // A new window logs the first of a kind in full again; an empty window sums up nothing.
  t.warn("not-json", "refused", { reason: "not-json", i: -1 });
  t.flush();
  t.flush();
  assert.is(lines.length, 4);
  assert.is(lines[3]!.i, -1);
});

/** Polls `done` on each turn of the event loop until it holds, or fails after `timeoutMs`. */
async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) assert.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test("throttle - the window ends by itself", async () => {
  const { logger, lines } = capture();
  const t = new WarningThrottle(logger, "more refused", 30);
  t.warn("k", "refused", {});
  t.warn("k", "refused", {});
  assert.is(lines.length, 1, "only the first is logged while the window lasts");
  // Nobody calls flush: the window's own timer writes the summary.
  await until("the summary line", () => lines.length >= 2);
  assert.equal(
    lines.map((l) => [l.message, l.count]),
    [
      ["refused", undefined],
      ["more refused", 1],
    ],
  );
});

test("throttle - on a given clock, the window ends at the first warning a window later, with no timer", () => {
  const { logger, lines } = capture();
  let now = 1000;
  const t = new WarningThrottle(logger, "more refused", 2000, "warn", () => now);
  t.warn("k", "refused", { i: 0 });
  t.warn("k", "refused", { i: 1 });
  t.warn("k", "refused", { i: 2 });
  now += 1999;
  t.warn("k", "refused", { i: 3 });
  assert.equal(
    lines.map((l) => [l.message, l.i]),
    [["refused", 0]],
    "within the window only the first is logged",
  );
  now += 1;
  t.warn("k", "refused", { i: 4 });
  assert.equal(
    lines.map((l) => [l.message, l.i ?? l.count]),
    [
      ["refused", 0],
      ["more refused", 3],
      ["refused", 4],
    ],
  );
});

test.run();
