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
  // Retrying stops at the deadline: it gives up with JetStream's last answer rather than
  // pause past the deadline. How many tries fit depends on the machine's speed; what holds
  // on any machine is that the pauses it took fit in the deadline, and each try but the last
  // was followed by one. (A retry that ignored the deadline would go on until the refusal.)
  calls = 0;
  const pauses: number[] = [];
  const last = timeout();
  await retryWhileNotReady("x", async () => {
    calls += 1;
    throw calls > 10 ? refused : last;
  }, { deadlineMs: 600, warn: (_m, fields) => pauses.push(fields.retryInMs as number) }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, last, "the last transient error, not the refusal"),
  );
  assert.ok(calls >= 1 && calls <= 2, `the tries that fit in the deadline (${calls})`);
  assert.is(pauses.length, calls - 1, "a pause between two tries");
  assert.equal(pauses, [250, 500].slice(0, pauses.length), "growing pauses");
  assert.ok(pauses.reduce((a, b) => a + b, 0) <= 600, `the pauses fit in the deadline (${pauses.join(" + ")} ms)`);
  // A deadline shorter than the first pause: one try, no pause.
  calls = 0;
  await retryWhileNotReady("x", async () => {
    calls += 1;
    throw last;
  }, { deadlineMs: 100, warn: () => assert.unreachable("no retry") }).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, last),
  );
  assert.is(calls, 1);
});

test.run();
