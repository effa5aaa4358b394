/**
 * The flags more than one command takes, declared once: the connection (`--nats-url`,
 * `--cluster-id`, `--connect-timeout`, authentication and TLS, `--config`), the timings,
 * the inspector, the metrics endpoint, the log format and the seed.
 */
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { configOverrides } from "../config/config-file.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DEAD_TIMEOUT_MS,
  DEFAULT_ELECTION_BACKOFF_MAX_MS,
  DEFAULT_ELECTION_BACKOFF_MIN_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_LEADER_TIMEOUT_MS,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_STATE_INTERVAL_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  defaultRenewDeadline,
  LOG_FORMATS,
  parseNatsUrls,
} from "../config/config.js";
import { natsConnectionFrom, validateSecurity, type NatsConnectionSettings, type NatsSecurity } from "../config/security.js";
import { MAX_SEED } from "../machines/random.js";
import { DEFAULT_INSPECT_HOST, DEFAULT_INSPECT_PORT } from "../observe/inspect/inspector-server.js";
import type { InspectSettings } from "../observe/inspect/inspector.js";
import type { Logger } from "../observe/logger.js";
import { DEFAULT_METRICS_HOST } from "../observe/metrics.js";
import { REPORT_ENCODINGS, type ReportEncoding } from "../protocol/presence.js";
import { fail } from "./exit.js";

export function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError("must be a whole number.");
  return Number(value);
}

export interface TimingFlags {
  pingInterval: number;
  deadTimeout: number;
  stateInterval: number;
  sweepInterval: number;
  leaderTimeout: number;
  electionBackoffMin: number;
  electionBackoffMax: number;
  heartbeatInterval: number;
  renewDeadline?: number;
}

/** `-u, --nats-url`: required by every command that connects. */
export function natsUrlOption(): Option {
  return new Option("-u, --nats-url <urls>", "NATS server URL(s), comma-separated seeds").env("PRESENCE_NATS_URL").makeOptionMandatory();
}

/** `--cluster-id`: required by every command that connects. */
export function clusterIdOption(description = "coordinator cluster id"): Option {
  return new Option("--cluster-id <id>", description).env("PRESENCE_CLUSTER_ID").makeOptionMandatory();
}

export function connectTimeoutOption(description = "give up if NATS cannot be reached within this time"): Option {
  return new Option("--connect-timeout <ms>", description)
    .env("PRESENCE_CONNECT_TIMEOUT")
    .argParser(wholeNumber)
    .default(DEFAULT_CONNECT_TIMEOUT_MS);
}

/** The flags of a command that connects to NATS, as commander hands them over. */
export interface ConnectionFlags extends SecurityFlags {
  natsUrl: string;
  clusterId: string;
  connectTimeout: number;
}

/** The flags of `addSecurityOptions`, as commander hands them over. */
export interface SecurityFlags {
  creds?: string;
  nkey?: string;
  user?: string;
  password?: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/**
 * Authentication and TLS, for every command that connects to NATS. None has a default, so
 * `--help` never shows a secret (commander prints defaults, never the environment's values).
 */
export function addSecurityOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--creds <file>", "NATS credentials file (user JWT and NKey seed)").env("PRESENCE_CREDS"))
    .addOption(new Option("--nkey <file>", "file holding an NKey user seed").env("PRESENCE_NKEY"))
    .addOption(new Option("--user <user>", "user name for user/password authentication").env("PRESENCE_USER"))
    .addOption(
      new Option("--password <password>", "password for --user (prefer the environment variable: flags show in ps)").env(
        "PRESENCE_PASSWORD",
      ),
    )
    .addOption(new Option("--token <token>", "authentication token (prefer the environment variable)").env("PRESENCE_TOKEN"))
    .addOption(
      new Option("--tls-cert <file>", "client certificate (PEM) for servers that verify clients; needs --tls-key").env("PRESENCE_TLS_CERT"),
    )
    .addOption(new Option("--tls-key <file>", "private key (PEM) of --tls-cert").env("PRESENCE_TLS_KEY"))
    .addOption(new Option("--tls-ca <file>", "CA certificate(s) (PEM) the server's certificate must chain to").env("PRESENCE_TLS_CA"));
}

/**
 * The seed URLs (shown redacted) and the security flags, with the credentials of the URLs
 * taken into the security; checked (combinations, files) before anything connects; exit 2
 * naming the flag.
 */
export function connectionFrom(flags: SecurityFlags & { natsUrl: string }): NatsConnectionSettings {
  const fromFlags: NatsSecurity = {
    ...(flags.creds !== undefined ? { credsFile: flags.creds } : {}),
    ...(flags.nkey !== undefined ? { nkeyFile: flags.nkey } : {}),
    ...(flags.user !== undefined ? { user: flags.user } : {}),
    ...(flags.password !== undefined ? { password: flags.password } : {}),
    ...(flags.token !== undefined ? { token: flags.token } : {}),
    ...(flags.tlsCert !== undefined ? { tlsCert: flags.tlsCert } : {}),
    ...(flags.tlsKey !== undefined ? { tlsKey: flags.tlsKey } : {}),
    ...(flags.tlsCa !== undefined ? { tlsCa: flags.tlsCa } : {}),
  };
  try {
    const connection = natsConnectionFrom(parseNatsUrls(flags.natsUrl), fromFlags);
    validateSecurity(connection.security, (path) => readFileSync(path, "utf8"));
    return connection;
  } catch (err) {
    fail(err);
  }
}

/** `--config <file>`: only parsed here for `--help`; the file is applied before parsing (see src/cli/program.ts). */
export function configOption(): Option {
  return new Option("--config <file>", "JSON or YAML file of flag values (precedence: flag > environment > file > default)").env(
    "PRESENCE_CONFIG",
  );
}

/** Logs which values of the config file the command line or the environment replaced (names only). */
export function logConfigOverrides(cmd: Command, logger: Logger): void {
  const used = configOverrides(cmd);
  if (used === null) return;
  logger.info("read the config file", { configFile: used.path });
  for (const o of used.overrides) {
    logger.info(`${o.flag} from the ${o.by} overrides the config file`, { configFile: used.path, ...(o.env ? { env: o.env } : {}) });
  }
}

function portNumber(value: string): number {
  const n = wholeNumber(value);
  if (n > 65535) throw new InvalidArgumentError("must be a port number, 0 to 65535.");
  return n;
}

export function metricsPortOption(): Option {
  return new Option("--metrics-port <port>", "serve Prometheus metrics, /healthz and /readyz on this port (0: any free port; default: off)")
    .env("PRESENCE_METRICS_PORT")
    .argParser(portNumber);
}

export function metricsHostOption(): Option {
  return new Option("--metrics-host <host>", "address the metrics endpoint listens on (anything but loopback is warned about)")
    .env("PRESENCE_METRICS_HOST")
    .default(DEFAULT_METRICS_HOST);
}

/** The timing flags, shared by `run` and `dev`; each reads an environment variable too. */
export function addTimingOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--leader-timeout <ms>", "silence after which followers elect a new leader; also the lease TTL")
        .env("PRESENCE_LEADER_TIMEOUT")
        .argParser(wholeNumber)
        .default(DEFAULT_LEADER_TIMEOUT_MS),
    )
    .addOption(
      new Option("--election-backoff-min <ms>", "lower bound of a candidate's random wait")
        .env("PRESENCE_ELECTION_BACKOFF_MIN")
        .argParser(wholeNumber)
        .default(DEFAULT_ELECTION_BACKOFF_MIN_MS),
    )
    .addOption(
      new Option("--election-backoff-max <ms>", "upper bound of a candidate's random wait")
        .env("PRESENCE_ELECTION_BACKOFF_MAX")
        .argParser(wholeNumber)
        .default(DEFAULT_ELECTION_BACKOFF_MAX_MS),
    )
    .addOption(
      new Option("--heartbeat-interval <ms>", "how often the leader renews its lease and heartbeats")
        .env("PRESENCE_HEARTBEAT_INTERVAL")
        .argParser(wholeNumber)
        .default(DEFAULT_HEARTBEAT_INTERVAL_MS),
    )
    .addOption(
      new Option(
        "--renew-deadline <ms>",
        "a leader without a successful renewal for this long stops acting (default: 75% of --leader-timeout)",
      )
        .env("PRESENCE_RENEW_DEADLINE")
        .argParser(wholeNumber),
    )
    .addOption(
      new Option("--ping-interval <ms>", "a client quiet for this long is pinged; an unanswered ping makes it suspect after this long")
        .env("PRESENCE_PING_INTERVAL")
        .argParser(wholeNumber)
        .default(DEFAULT_PING_INTERVAL_MS),
    )
    .addOption(
      new Option("--dead-timeout <ms>", "a client with no reply for this long is reported dead")
        .env("PRESENCE_DEAD_TIMEOUT")
        .argParser(wholeNumber)
        .default(DEFAULT_DEAD_TIMEOUT_MS),
    )
    .addOption(
      new Option("--state-interval <ms>", "every live client gets a NodeState report this often")
        .env("PRESENCE_STATE_INTERVAL")
        .argParser(wholeNumber)
        .default(DEFAULT_STATE_INTERVAL_MS),
    )
    .addOption(
      new Option("--sweep-interval <ms>", "how often the leader judges its clients and sends due pings (verdicts are late by at most this)")
        .env("PRESENCE_SWEEP_INTERVAL")
        .argParser(wholeNumber)
        .default(DEFAULT_SWEEP_INTERVAL_MS),
    )
    .addOption(
      new Option("--report-encoding <encoding>", "encoding of presence reports")
        .env("PRESENCE_REPORT_ENCODING")
        .choices(REPORT_ENCODINGS)
        .default("protobuf"),
    );
}

export function timingsFrom(flags: TimingFlags & { reportEncoding: ReportEncoding }) {
  return {
    pingIntervalMs: flags.pingInterval,
    deadTimeoutMs: flags.deadTimeout,
    stateIntervalMs: flags.stateInterval,
    sweepIntervalMs: flags.sweepInterval,
    reportEncoding: flags.reportEncoding,
    leaderTimeoutMs: flags.leaderTimeout,
    electionBackoffMinMs: flags.electionBackoffMin,
    electionBackoffMaxMs: flags.electionBackoffMax,
    heartbeatIntervalMs: flags.heartbeatInterval,
    renewDeadlineMs: flags.renewDeadline ?? defaultRenewDeadline(flags.leaderTimeout),
  };
}

export function seedOption(): Option {
  return new Option("--seed <n>", "seed of the random source (election backoff); default: random, and logged")
    .env("PRESENCE_SEED")
    .argParser((v) => {
      const n = wholeNumber(v);
      if (n > MAX_SEED) throw new InvalidArgumentError(`must be at most ${MAX_SEED}.`);
      return n;
    });
}

/** `--inspect[=port]`: the live inspector page; without a port, the default one. */
export function inspectOption(): Option {
  return new Option("--inspect [port]", `serve the live inspector page on this port (default ${DEFAULT_INSPECT_PORT}; 0: any free port)`)
    .env("PRESENCE_INSPECT")
    .argParser(portNumber);
}

export function inspectHostOption(): Option {
  return new Option("--inspect-host <host>", "address the inspector page listens on (anything but loopback is warned about)")
    .env("PRESENCE_INSPECT_HOST")
    .default(DEFAULT_INSPECT_HOST);
}

export function inspectStatelyOption(): Option {
  return new Option("--inspect-stately", "also forward the inspection stream to the Stately inspector (needs internet)")
    .env("PRESENCE_INSPECT_STATELY")
    .default(false);
}

export function logFormatOption(): Option {
  return new Option("--log-format <format>", "log line format").env("PRESENCE_LOG_FORMAT").choices(LOG_FORMATS).default("pretty");
}

/** What `--inspect`, `--inspect-host` and `--inspect-stately` ask for; null: no inspection at all. */
export function inspectSettings(port: number | true | undefined, host: string, stately: boolean): InspectSettings | null {
  if (port === undefined && !stately) return null;
  return {
    ...(port !== undefined ? { local: { host, port: port === true ? DEFAULT_INSPECT_PORT : port } } : {}),
    stately,
  };
}

/** PRESENCE_VERBOSE counts when it says yes (1, true, yes, on), not merely when it is set. */
export function verboseFromEnv(): boolean {
  return /^(1|true|yes|on)$/i.test(process.env.PRESENCE_VERBOSE ?? "");
}
