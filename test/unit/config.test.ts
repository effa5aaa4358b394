import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  ConfigError,
  DEFAULT_MONITOR_TIMINGS,
  DEFAULT_TIMINGS,
  parseNatsUrls,
  validateConfig,
  validateTimings,
  type CoordinatorConfig,
} from "../../src/config/config.js";

const base: CoordinatorConfig = {
  natsUrls: ["nats://127.0.0.1:4222"],
  clusterId: "prod-eu",
  coordinatorId: "coord-1",
  ...DEFAULT_TIMINGS,
  ...DEFAULT_MONITOR_TIMINGS,
  shardCount: 256,
  reportEncoding: "protobuf",
  connectTimeoutMs: 5000,
  kvReplicas: 1,
  maxClients: 100_000,
  logFormat: "pretty",
  verbose: false,
  seed: 1,
};

function refused(change: Partial<CoordinatorConfig>): ConfigError {
  try {
    validateConfig({ ...base, ...change });
  } catch (err) {
    assert.instance(err, ConfigError);
    return err as ConfigError;
  }
  assert.unreachable(`expected ${JSON.stringify(change)} to be refused`);
  throw new Error("unreachable");
}

test("config - the documented defaults are valid", () => {
  validateTimings(DEFAULT_TIMINGS);
  validateConfig(base);
  assert.equal(DEFAULT_TIMINGS, {
    heartbeatIntervalMs: 1000,
    leaderTimeoutMs: 2000,
    electionBackoffMinMs: 150,
    electionBackoffMaxMs: 300,
    renewDeadlineMs: 1500,
  });
  assert.equal(DEFAULT_MONITOR_TIMINGS, { pingIntervalMs: 750, deadTimeoutMs: 5000, stateIntervalMs: 1500, sweepIntervalMs: 50 });
});

test("config - a sweep interval above half the ping interval is refused, naming --sweep-interval", () => {
  const err = refused({ pingIntervalMs: 750, sweepIntervalMs: 376 });
  assert.is(err.flag, "--sweep-interval");
  assert.ok(err.message.startsWith("--sweep-interval: "), err.message);
  assert.match(err.message, /at most half of --ping-interval \(750 ms\)/);
  assert.match(err.message, /got 376 ms/);
  // Exactly half is the limit, and it is allowed.
  validateConfig({ ...base, pingIntervalMs: 750, sweepIntervalMs: 375 });
  // The rule follows the ping interval, not a fixed number.
  assert.is(refused({ pingIntervalMs: 100, sweepIntervalMs: 51 }).flag, "--sweep-interval");
  validateConfig({ ...base, pingIntervalMs: 100, deadTimeoutMs: 1000, sweepIntervalMs: 50 });
});

test("config - bad timing combinations are refused with the flag and the rule", () => {
  const cases: [Partial<CoordinatorConfig>, string, RegExp][] = [
    [{ leaderTimeoutMs: 1900 }, "--leader-timeout", /at least 2 × --heartbeat-interval/],
    [{ electionBackoffMinMs: 400, electionBackoffMaxMs: 300 }, "--election-backoff-min", /must not exceed --election-backoff-max/],
    [{ electionBackoffMaxMs: 2000 }, "--election-backoff-max", /below --leader-timeout/],
    [{ renewDeadlineMs: 2000 }, "--renew-deadline", /below --leader-timeout/],
    [{ renewDeadlineMs: 1000 }, "--renew-deadline", /above --heartbeat-interval/],
    [{ heartbeatIntervalMs: 2.5 }, "--heartbeat-interval", /whole number/],
    [{ electionBackoffMinMs: -1 }, "--election-backoff-min", /at least 0/],
    [{ deadTimeoutMs: 1400 }, "--dead-timeout", /at least 2 × --ping-interval \(750 ms\)/],
    [{ pingIntervalMs: 0 }, "--ping-interval", /at least 10 ms/],
    [{ stateIntervalMs: 10 }, "--state-interval", /at least 50 ms/],
    [{ sweepIntervalMs: 0 }, "--sweep-interval", /at least 5 ms/],
    [{ sweepIntervalMs: 12.5 }, "--sweep-interval", /whole number/],
  ];
  for (const [change, flag, rule] of cases) {
    const err = refused(change);
    assert.is(err.flag, flag, JSON.stringify(change));
    assert.match(err.message, rule);
    assert.ok(err.message.startsWith(`${flag}: `), "the message starts with the flag");
  }
});

test("config - identifiers and URLs are checked", () => {
  assert.is(refused({ clusterId: "a.b" }).flag, "--cluster-id");
  assert.is(refused({ clusterId: "" }).flag, "--cluster-id");
  assert.is(refused({ clusterId: "has space" }).flag, "--cluster-id");
  assert.is(refused({ clusterId: "a".repeat(65) }).flag, "--cluster-id", "at most 64 characters");
  validateConfig({ ...base, clusterId: `${"a".repeat(62)}-_` }); // 64 characters of every kind allowed
  assert.is(refused({ coordinatorId: "x y" }).flag, "--coordinator-id");
  assert.is(refused({ natsUrls: [] }).flag, "--nats-url");
  assert.is(refused({ natsUrls: ["http://x y"] }).flag, "--nats-url");
  assert.is(refused({ kvReplicas: 0 }).flag, "--kv-replicas");
  assert.is(refused({ maxClients: 0 }).flag, "--max-clients");
  assert.is(refused({ connectTimeoutMs: 5 }).flag, "--connect-timeout");
  assert.is(refused({ shardCount: 0 }).flag, "--shards");
  assert.is(refused({ reportEncoding: "xml" as "json" }).flag, "--report-encoding");
  validateConfig({ ...base, natsUrls: ["nats://a:4222", "tls://b.example.com:4222", "localhost:4222"] });
});

test("config - seed URLs are split on commas and blanks are dropped", () => {
  assert.equal(parseNatsUrls(" nats://a:1, nats://b:2,,"), ["nats://a:1", "nats://b:2"]);
});

test.run();
