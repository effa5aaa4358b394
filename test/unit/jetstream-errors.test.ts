/**
 * Startup against a JetStream that is not ready yet: transient answers are retried, real
 * refusals are not. No NATS: the failures are made here.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { isTransientJetStreamError, retryWhileNotReady } from "../../src/services/jetstream-errors.js";

const timeout = () => Object.assign(new Error("timeout"), { name: "TimeoutError" });

test("jetstream errors - timeouts, missing responders and a forming cluster are transient; refusals are not", () => {
  assert.ok(isTransientJetStreamError(timeout()));
  assert.ok(isTransientJetStreamError(new Error("registration store: cannot prepare stream: x", { cause: timeout() })));
  assert.ok(isTransientJetStreamError(new Error("no suitable peers for placement")));
  assert.ok(isTransientJetStreamError(new Error("JetStream system temporarily unavailable")));
  assert.not.ok(isTransientJetStreamError(new Error("Permissions Violation for Publish to \"$JS.API.STREAM.CREATE.x\"")));
  assert.not.ok(isTransientJetStreamError(new Error("lease store: bucket has a TTL of 3000 ms, but this coordinator's --leader-timeout is 2000 ms")));
});

test("jetstream errors - a transient failure is retried until the operation succeeds, with a warning each time", async () => {
  let calls = 0;
  const warnings: string[] = [];
  const value = await retryWhileNotReady(
    "lease bucket",
    async () => {
      calls += 1;
      if (calls < 3) throw timeout();
      return "ready";
    },
    { deadlineMs: 10_000, warn: (message) => warnings.push(message) },
  );
  assert.is(value, "ready");
  assert.is(calls, 3);
  assert.equal(warnings, [
    "JetStream is not ready for the lease bucket yet; trying again",
    "JetStream is not ready for the lease bucket yet; trying again",
  ]);
});

test("jetstream errors - a refusal is not retried, and retrying stops at the deadline", async () => {
  let calls = 0;
  const refused = new Error("Permissions Violation");
  await retryWhileNotReady("x", async () => {
    calls += 1;
    throw refused;
  }, { deadlineMs: 10_000, warn: () => undefined }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, refused),
  );
  assert.is(calls, 1);
  calls = 0;
  const started = performance.now();
  await retryWhileNotReady("x", async () => {
    calls += 1;
    throw timeout();
  }, { deadlineMs: 600, warn: () => undefined }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.match(String(err), /timeout/),
  );
  assert.ok(calls >= 2 && calls <= 4, `a few tries within the deadline (${calls})`);
  assert.ok(performance.now() - started < 2000);
});

test.run();
