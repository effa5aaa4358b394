/**
 * The coordinator's configuration: every timing knob with its unit, default and trade-off,
 * and `validateConfig()`, which refuses bad values and bad combinations before anything
 * connects to NATS.
 */
import { MAX_PARTITIONS } from "../protocol/partition.js";
import type { ClientTimings } from "../machines/liveness.js";
import { isValidClusterId } from "../protocol/cluster-id.js";
import { REPORT_ENCODINGS, type ReportEncoding } from "../protocol/presence.js";
import { redactNatsUrl } from "../nats/url.js";

/**
 * Heartbeat interval, in ms (default 1000). The leader renews its lease (a KV update
 * against its last revision) and, once the renewal succeeded, publishes a heartbeat this
 * often. Shorter: followers notice a dead leader sooner, at the cost of more KV writes.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000;

/**
 * Leader timeout, in ms (default 2000). A follower that hears no heartbeat for this long
 * becomes a candidate. It is also the TTL of the lease bucket, so a crashed leader's lease
 * disappears after it. Crash failover takes about leader timeout + election backoff.
 * Must be at least 2 × heartbeat interval, so one lost heartbeat never causes an election.
 */
export const DEFAULT_LEADER_TIMEOUT_MS = 2000;

/**
 * Election backoff bounds, in ms (default 150–300). A candidate waits a uniformly random
 * time in [min, max] before it tries to create the lease, so that candidates that timed out
 * together do not all race. A wider range means fewer contested elections and a slower
 * takeover; it bounds the graceful handoff time from below.
 */
export const DEFAULT_ELECTION_BACKOFF_MIN_MS = 150;
export const DEFAULT_ELECTION_BACKOFF_MAX_MS = 300;

/**
 * Renew deadline as a fraction of the leader timeout (default 0.75, so 1500 ms). A leader
 * that has not renewed its lease successfully within this time, measured on its own
 * monotonic clock from when it sent the last successful write, stops acting as leader.
 * Because it is shorter than the lease TTL, a paused or cut-off leader stops before anyone
 * else can take the lease. Must be above the heartbeat interval (a healthy leader renews
 * in time) and below the leader timeout.
 */
export const DEFAULT_RENEW_DEADLINE_RATIO = 0.75;

/**
 * How long a coordinator waits for NATS when it starts, in ms (default 5000). An
 * unreachable server gives a clear error and a non-zero exit after at most this long.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/**
 * Ping interval, in ms (default 750). Every client is pinged this often (its first ping
 * within one interval of its registration), and a ping that gets no reply within this long
 * makes the client suspect. Shorter: faster suspicion, more ping traffic (N clients cost
 * N / interval pings per second, and one leader's capacity falls in proportion).
 */
export const DEFAULT_PING_INTERVAL_MS = 750;

/**
 * Dead timeout, in ms (default 5000). A client with no reply for this long is reported
 * dead (NodeDead) and its registration is removed. Detection takes between the dead
 * timeout and the dead timeout + one ping interval. Shorter: faster detection, more false
 * deaths for clients that pause (GC, network hiccups). Must be at least 2 × the ping
 * interval, so that a client is suspect before it is dead.
 */
export const DEFAULT_DEAD_TIMEOUT_MS = 5000;

/**
 * State interval, in ms (default 1500). Every live client gets a NodeState report this
 * often. Shorter: fresher views for consumers, more report traffic (N / interval per second).
 */
export const DEFAULT_STATE_INTERVAL_MS = 1500;

/**
 * Sweep interval, in ms (default 50). Each shard keeps its clients' liveness as plain data
 * and sweeps it this often: it applies the ping replies that came since the last sweep,
 * sends the pings that are due, finds missed pings and dead clients, and sends the NodeState
 * reports that are due. Every verdict may be late by up to one sweep interval (NodeDead comes
 * within dead timeout + sweep interval of the last reply). Shorter: more precise timing, more
 * sweeps (each visits every client); longer: less CPU, coarser detection. Must be at most half
 * the ping interval.
 */
export const DEFAULT_SWEEP_INTERVAL_MS = 50;

/**
 * Number of shard actors the clients are spread over (default 64). Each shard keeps its
 * clients' liveness and their actors in maps of its own and is swept as one event, so the
 * count trades events per sweep (one per shard with clients, every sweep interval) against
 * the clients each sweep visits; 64 puts about 800 clients in a shard at 50,000.
 */
export const DEFAULT_SHARD_COUNT = 64;

/**
 * Clients one leader accepts (default 20,000). A registration of a new subject past it is
 * refused (reason `max-clients`, logged and counted) instead of being monitored; registering
 * again, by a subject already monitored, is always accepted. It is set from the measured
 * capacity with a margin: on a 2-core machine at the default timings one leader held 50,000
 * clients (every client present, no false suspect or dead, no leader change, pings and
 * NodeState at >= 90 % of their rates); 75,000 held in one full run of two and 100,000 in
 * none (docs/benchmarks.md). The margin is for a machine shared with other work: with a busy process on
 * one of two cores, a leader has about half of that. A leader's work is per ping and per
 * NodeState, so a longer ping interval (with a longer dead timeout) and state interval let
 * it hold more.
 */
export const DEFAULT_MAX_CLIENTS = 20_000;

/** Replicas of the coordinator's KV buckets (default 1; use 3 on a 3-node JetStream cluster). */
export const DEFAULT_KV_REPLICAS = 1;

export type LogFormat = "json" | "pretty";
export const LOG_FORMATS: readonly LogFormat[] = ["json", "pretty"];

/** The election timings, all in ms. This is what the election machine needs. */
export interface ElectionTimings {
  heartbeatIntervalMs: number;
  leaderTimeoutMs: number;
  electionBackoffMinMs: number;
  electionBackoffMaxMs: number;
  renewDeadlineMs: number;
}

/** The monitoring timings, all in ms: what the client actors need (ClientTimings), each one set. */
export type MonitorTimings = Required<ClientTimings>;

export interface CoordinatorConfig extends ElectionTimings, MonitorTimings {
  /**
   * The seed URLs, as shown: credentials redacted (`nats://alice:***@host:4222`). Their
   * credentials are in NatsSecurity (see natsConnectionFrom), and the userinfo is dropped
   * when connecting.
   */
  natsUrls: string[];
  clusterId: string;
  coordinatorId: string;
  connectTimeoutMs: number;
  kvReplicas: number;
  shardCount: number;
  /**
   * New subjects past this many monitored clients are refused (see DEFAULT_MAX_CLIENTS); with
   * several partitions, past this many per live coordinator in the cluster.
   */
  maxClients: number;
  /**
   * How many partitions the clients are split into, each with its own leader (`--partitions`,
   * 1 to MAX_PARTITIONS); absent, 1. Every coordinator of a cluster uses the same number.
   */
  partitions?: number;
  reportEncoding: ReportEncoding;
  logFormat: LogFormat;
  verbose: boolean;
  /** Seed of the coordinator's random source (election backoff). */
  seed: number;
}

export function defaultRenewDeadline(leaderTimeoutMs: number): number {
  return Math.floor(leaderTimeoutMs * DEFAULT_RENEW_DEADLINE_RATIO);
}

export const DEFAULT_TIMINGS: ElectionTimings = {
  heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
  leaderTimeoutMs: DEFAULT_LEADER_TIMEOUT_MS,
  electionBackoffMinMs: DEFAULT_ELECTION_BACKOFF_MIN_MS,
  electionBackoffMaxMs: DEFAULT_ELECTION_BACKOFF_MAX_MS,
  renewDeadlineMs: defaultRenewDeadline(DEFAULT_LEADER_TIMEOUT_MS),
};

export const DEFAULT_MONITOR_TIMINGS: MonitorTimings = {
  pingIntervalMs: DEFAULT_PING_INTERVAL_MS,
  deadTimeoutMs: DEFAULT_DEAD_TIMEOUT_MS,
  stateIntervalMs: DEFAULT_STATE_INTERVAL_MS,
  sweepIntervalMs: DEFAULT_SWEEP_INTERVAL_MS,
};

/** A configuration value or combination that the coordinator refuses to start with. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    /** The flag the problem is about, e.g. `--leader-timeout`. */
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
  }
}

/** Coordinator ids travel in heartbeats, reports and the lease value. */
const COORDINATOR_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
/** A scheme URL, or `host[:port]`, either with an optional `userinfo@` in front of the host. */
const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s,]+$|^([^\s,/@]+@)?[^\s,:/@]+(:\d+)?$/;

/** Splits a comma-separated list of seed URLs, dropping blanks. */
export function parseNatsUrls(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Longest duration accepted for any knob: one day (timers cannot go past 2^31 - 1 ms). */
export const MAX_DURATION_MS = 86_400_000;

function requireWholeMs(flag: string, value: number, min: number): void {
  if (!Number.isInteger(value)) {
    throw new ConfigError(flag, `must be a whole number of milliseconds, got ${value}`);
  }
  if (value < min) {
    throw new ConfigError(flag, `must be at least ${min} ms, got ${value}`);
  }
  if (value > MAX_DURATION_MS) {
    throw new ConfigError(flag, `must be at most ${MAX_DURATION_MS} ms (one day), got ${value}`);
  }
}

/** Checks the election timings alone and the rules between them. */
export function validateTimings(t: ElectionTimings): void {
  requireWholeMs("--heartbeat-interval", t.heartbeatIntervalMs, 10);
  requireWholeMs("--leader-timeout", t.leaderTimeoutMs, 10);
  requireWholeMs("--election-backoff-min", t.electionBackoffMinMs, 0);
  requireWholeMs("--election-backoff-max", t.electionBackoffMaxMs, 0);
  requireWholeMs("--renew-deadline", t.renewDeadlineMs, 1);

  if (t.leaderTimeoutMs < 2 * t.heartbeatIntervalMs) {
    throw new ConfigError(
      "--leader-timeout",
      `must be at least 2 × --heartbeat-interval (${t.heartbeatIntervalMs} ms), so that one lost heartbeat does not start an election; got ${t.leaderTimeoutMs} ms`,
    );
  }
  if (t.electionBackoffMinMs > t.electionBackoffMaxMs) {
    throw new ConfigError(
      "--election-backoff-min",
      `must not exceed --election-backoff-max (${t.electionBackoffMaxMs} ms); got ${t.electionBackoffMinMs} ms`,
    );
  }
  if (t.electionBackoffMaxMs >= t.leaderTimeoutMs) {
    throw new ConfigError(
      "--election-backoff-max",
      `must be below --leader-timeout (${t.leaderTimeoutMs} ms), or a candidate could wait longer than a whole lease; got ${t.electionBackoffMaxMs} ms`,
    );
  }
  if (t.renewDeadlineMs >= t.leaderTimeoutMs) {
    throw new ConfigError(
      "--renew-deadline",
      `must be below --leader-timeout (${t.leaderTimeoutMs} ms), so that a cut-off leader stops before its lease expires; got ${t.renewDeadlineMs} ms`,
    );
  }
  if (t.renewDeadlineMs <= t.heartbeatIntervalMs) {
    throw new ConfigError(
      "--renew-deadline",
      `must be above --heartbeat-interval (${t.heartbeatIntervalMs} ms), or a healthy leader would miss it between two renewals; got ${t.renewDeadlineMs} ms`,
    );
  }
}

/** Checks the monitoring timings alone and the rules between them. */
export function validateMonitorTimings(t: MonitorTimings): void {
  requireWholeMs("--ping-interval", t.pingIntervalMs, 10);
  requireWholeMs("--dead-timeout", t.deadTimeoutMs, 20);
  requireWholeMs("--state-interval", t.stateIntervalMs, 50);
  requireWholeMs("--sweep-interval", t.sweepIntervalMs, 5);
  if (t.sweepIntervalMs * 2 > t.pingIntervalMs) {
    throw new ConfigError(
      "--sweep-interval",
      `must be at most half of --ping-interval (${t.pingIntervalMs} ms), or pings and their verdicts would be late by most of an interval; got ${t.sweepIntervalMs} ms`,
    );
  }
  if (t.deadTimeoutMs < 2 * t.pingIntervalMs) {
    throw new ConfigError(
      "--dead-timeout",
      `must be at least 2 × --ping-interval (${t.pingIntervalMs} ms), so that a client misses a ping and is suspect before it is dead; got ${t.deadTimeoutMs} ms`,
    );
  }
}

/** Checks a whole coordinator configuration; throws a ConfigError naming the flag. */
export function validateConfig(c: CoordinatorConfig): void {
  if (c.natsUrls.length === 0) {
    throw new ConfigError("--nats-url", "is required (one URL, or several separated by commas)");
  }
  for (const url of c.natsUrls) {
    if (!NATS_URL.test(url)) {
      throw new ConfigError("--nats-url", `"${redactNatsUrl(url)}" is not a NATS URL (expected e.g. nats://127.0.0.1:4222)`);
    }
  }
  if (!isValidClusterId(c.clusterId)) {
    throw new ConfigError(
      "--cluster-id",
      `must be 1–64 characters of letters, digits, "-" or "_" (it names NATS subjects and KV buckets); got "${c.clusterId}"`,
    );
  }
  if (!COORDINATOR_ID.test(c.coordinatorId)) {
    throw new ConfigError(
      "--coordinator-id",
      `must be 1–128 characters of letters, digits, ".", ":", "-" or "_"; got "${c.coordinatorId}"`,
    );
  }
  validateTimings(c);
  validateMonitorTimings(c);
  if (!Number.isInteger(c.shardCount) || c.shardCount < 1 || c.shardCount > 65_536) {
    throw new ConfigError("--shards", `must be a whole number from 1 to 65536; got ${c.shardCount}`);
  }
  if (!REPORT_ENCODINGS.includes(c.reportEncoding)) {
    throw new ConfigError("--report-encoding", `must be one of ${REPORT_ENCODINGS.join(", ")}; got "${c.reportEncoding}"`);
  }
  requireWholeMs("--connect-timeout", c.connectTimeoutMs, 100);
  const partitions = c.partitions ?? 1;
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new ConfigError("--partitions", `must be a whole number from 1 to ${MAX_PARTITIONS}; got ${c.partitions}`);
  }
  if (!Number.isInteger(c.maxClients) || c.maxClients < 1) {
    throw new ConfigError("--max-clients", `must be a whole number of at least 1; got ${c.maxClients}`);
  }
  if (!Number.isInteger(c.kvReplicas) || c.kvReplicas < 1 || c.kvReplicas > 5) {
    throw new ConfigError("--kv-replicas", `must be a whole number from 1 to 5; got ${c.kvReplicas}`);
  }
  if (!LOG_FORMATS.includes(c.logFormat)) {
    throw new ConfigError("--log-format", `must be one of ${LOG_FORMATS.join(", ")}; got "${c.logFormat}"`);
  }
}
