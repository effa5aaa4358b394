/**
 * Startup against a JetStream that is not ready yet: transient answers are retried, real
 * refusals are not. No NATS: the failures are made here.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { JetStreamApiError } from "@nats-io/jetstream";
import { isCreationRace, isTransientJetStreamError, retryWhileNotReady } from "../../src/nats/jetstream-errors.js";

/** JetStream's answer when another process created the stream at the same moment. */
const overlap = () => new JetStreamApiError({ code: 400, err_code: 10065, description: "subjects overlap with an existing stream" });
const timeout = () => Object.assign(new Error("timeout"), { name: "TimeoutError" });

test("jetstream errors - timeouts, missing responders and a forming cluster are transient; refusals are not", () => {
  assert.ok(isTransientJetStreamError(timeout()));
  assert.ok(isTransientJetStreamError(new Error("registration store: cannot prepare stream: x", { cause: timeout() })));
  assert.ok(isTransientJetStreamError(new Error("no suitable peers for placement")));
  assert.ok(isTransientJetStreamError(new Error("JetStream system temporarily unavailable")));
  assert.not.ok(isTransientJetStreamError(new Error('Permissions Violation for Publish to "$JS.API.STREAM.CREATE.x"')));
  assert.not.ok(
    isTransientJetStreamError(new Error("lease store: bucket has a TTL of 3000 ms, but this coordinator's --leader-timeout is 2000 ms")),
  );
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
  await retryWhileNotReady(
    "x",
    async () => {
      calls += 1;
      throw refused;
    },
    { deadlineMs: 10_000, warn: () => undefined },
  ).then(
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
  await retryWhileNotReady(
    "x",
    async () => {
      calls += 1;
      throw calls > 10 ? refused : last;
    },
    { deadlineMs: 600, warn: (_m, fields) => pauses.push(fields.retryInMs as number) },
  ).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, last, "the last transient error, not the refusal"),
  );
  assert.ok(calls >= 1 && calls <= 2, `the tries that fit in the deadline (${calls})`);
  assert.is(pauses.length, calls - 1, "a pause between two tries");
  assert.equal(pauses, [250, 500].slice(0, pauses.length), "growing pauses");
  assert.ok(pauses.reduce((a, b) => a + b, 0) <= 600, `the pauses fit in the deadline (${pauses.join(" + ")} ms)`);
  // A deadline shorter than the first pause: one try, no pause.
  calls = 0;
  await retryWhileNotReady(
    "x",
    async () => {
      calls += 1;
      throw last;
    },
    { deadlineMs: 100, warn: () => assert.unreachable("no retry") },
  ).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, last),
  );
  assert.is(calls, 1);
});

test("jetstream errors - a creation another process won at the same moment is prepared again at once, a few times, then fails with the server's answer", async () => {
  assert.ok(isCreationRace(overlap()));
  assert.ok(isCreationRace(new Error("registration store: cannot prepare stream and KV bucket x: subjects overlap", { cause: overlap() })));
  assert.ok(
    isCreationRace(
      new JetStreamApiError({ code: 400, err_code: 10058, description: "stream name already in use with a different configuration" }),
    ),
  );
  assert.not.ok(isCreationRace(new Error("subjects overlap with an existing stream")), "only JetStream's own answer, by its code");
  assert.not.ok(isCreationRace(timeout()));
  assert.not.ok(isTransientJetStreamError(overlap()), "not a JetStream that is not ready: no retries until the deadline");
  // Two coordinators starting together: the second create is refused once; the next try finds the stream.
  let calls = 0;
  const infos: string[] = [];
  const warnings: string[] = [];
  const pauses: number[] = [];
  const value = await retryWhileNotReady(
    "registration stream and bucket",
    async () => {
      calls += 1;
      if (calls === 1) throw new Error("registration store: cannot prepare", { cause: overlap() });
      return "prepared";
    },
    {
      deadlineMs: 10_000,
      warn: (m) => warnings.push(m),
      info: (m) => infos.push(m),
      pause: async (ms) => {
        pauses.push(ms);
      },
    },
  );
  assert.is(value, "prepared");
  assert.is(calls, 2);
  assert.equal(infos, ["another process was creating the registration stream and bucket at the same moment; preparing it again"]);
  assert.equal(warnings, [], "no warning for a race that resolved itself");
  assert.equal(pauses, [100], "one short pause, not the not-ready backoff (250 ms, doubling)");
  // A stream of those subjects that is not ours: a few tries, then the server's answer.
  calls = 0;
  const refused = overlap();
  await retryWhileNotReady(
    "x",
    async () => {
      calls += 1;
      throw refused;
    },
    { deadlineMs: 60_000, warn: () => undefined, pause: async () => undefined },
  ).then(
    () => assert.unreachable(),
    (err: unknown) => assert.is(err, refused),
  );
  assert.is(calls, 4, "the first try and three more");
});

test.run();
