#!/usr/bin/env node
/**
 * presence-coordinator: the command line. Thin on purpose: it parses and validates flags,
 * then hands over to `startCoordinator` (run) or `runDev` (dev).
 */
import "./cli/v8-flags.js"; // first: V8 settings apply to what is allocated after them
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { applyConfigFile, configOverrides, findConfigPath } from "./config/config-file.js";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  ConfigError,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_ELECTION_BACKOFF_MAX_MS,
  DEFAULT_ELECTION_BACKOFF_MIN_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_KV_REPLICAS,
  DEFAULT_LEADER_TIMEOUT_MS,
  DEFAULT_DEAD_TIMEOUT_MS,
  DEFAULT_PING_INTERVAL_MS,
  DEFAULT_SHARD_COUNT,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_STATE_INTERVAL_MS,
  DEFAULT_SWEEP_INTERVAL_MS,
  REPORT_ENCODINGS,
  type ReportEncoding,
  defaultRenewDeadline,
  LOG_FORMATS,
  natsConnectionFrom,
  parseNatsUrls,
  validateConfig,
  validateSecurity,
  type CoordinatorConfig,
  type NatsConnectionSettings,
  type NatsSecurity,
  type LogFormat,
} from "./config/config.js";
import { redactUrlsIn } from "./nats/url.js";
import { MAX_SEED, newSeed } from "./machines/random.js";
import { startCoordinator, type Coordinator } from "./coordinator/coordinator.js";
import { Inspection, type InspectSettings } from "./observe/inspect/inspector.js";
import { DEFAULT_INSPECT_HOST, DEFAULT_INSPECT_PORT } from "./observe/inspect/inspector-server.js";
import { runDev } from "./dev/dev.js";
import { runWatch } from "./observe/watch.js";
import { runStatus } from "./observe/query/status.js";
import { RecordLogError, runReplay } from "./observe/record/replay.js";
import { createLogger, describeError, type Logger } from "./observe/logger.js";
import { CoordinatorMetrics, DEFAULT_METRICS_HOST, MetricsServer } from "./observe/metrics.js";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/** Exit codes: 0 clean stop, 1 failure while running, 2 bad flags or configuration. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError("must be a whole number.");
  return Number(value);
}

interface TimingFlags {
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

interface RunFlags extends TimingFlags {
  reportEncoding: ReportEncoding;
  shards: number;
  natsUrl: string;
  clusterId: string;
  coordinatorId?: string;
  connectTimeout: number;
  kvReplicas: number;
  maxClients: number;
  logFormat: LogFormat;
  verbose: boolean;
  seed?: number;
  inspect?: number | true;
  inspectHost: string;
  inspectStately: boolean;
  record?: string;
  metricsPort?: number;
  metricsHost: string;
}

/** The flags of `addSecurityOptions`, as commander hands them over. */
interface SecurityFlags {
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
function addSecurityOptions(cmd: Command): Command {
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
function connectionFrom(flags: SecurityFlags & { natsUrl: string }): NatsConnectionSettings {
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

/** `--config <file>`: only parsed here for `--help`; the file is applied before parsing (see buildProgram). */
function configOption(): Option {
  return new Option("--config <file>", "JSON or YAML file of flag values (precedence: flag > environment > file > default)").env(
    "PRESENCE_CONFIG",
  );
}

/** Logs which values of the config file the command line or the environment replaced (names only). */
function logConfigOverrides(cmd: Command, logger: Logger): void {
  const used = configOverrides(cmd);
  if (used === null) return;
  logger.info("read the config file", { configFile: used.path });
  for (const o of used.overrides) {
    logger.info(`${o.flag} from the ${o.by} overrides the config file`, { configFile: used.path, ...(o.env ? { env: o.env } : {}) });
  }
}

function metricsPortOption(): Option {
  return new Option("--metrics-port <port>", "serve Prometheus metrics, /healthz and /readyz on this port (0: any free port; default: off)")
    .env("PRESENCE_METRICS_PORT")
    .argParser((v) => {
      const n = wholeNumber(v);
      if (n > 65535) throw new InvalidArgumentError("must be a port number, 0 to 65535.");
      return n;
    });
}

function metricsHostOption(): Option {
  return new Option("--metrics-host <host>", "address the metrics endpoint listens on (anything but loopback is warned about)")
    .env("PRESENCE_METRICS_HOST")
    .default(DEFAULT_METRICS_HOST);
}

/** The timing flags, shared by `run` and `dev`; each reads an environment variable too. */
function addTimingOptions(cmd: Command): Command {
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

function timingsFrom(flags: TimingFlags & { reportEncoding: ReportEncoding }) {
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

function seedOption(): Option {
  return new Option("--seed <n>", "seed of the random source (election backoff); default: random, and logged")
    .env("PRESENCE_SEED")
    .argParser((v) => {
      const n = wholeNumber(v);
      if (n > MAX_SEED) throw new InvalidArgumentError(`must be at most ${MAX_SEED}.`);
      return n;
    });
}

/** `--inspect[=port]`: the live inspector page; without a port, the default one. */
function inspectOption(): Option {
  return new Option("--inspect [port]", `serve the live inspector page on this port (default ${DEFAULT_INSPECT_PORT}; 0: any free port)`)
    .env("PRESENCE_INSPECT")
    .argParser((v) => {
      const n = wholeNumber(v);
      if (n > 65535) throw new InvalidArgumentError("must be a port number, 0 to 65535.");
      return n;
    });
}

function inspectHostOption(): Option {
  return new Option("--inspect-host <host>", "address the inspector page listens on (anything but loopback is warned about)")
    .env("PRESENCE_INSPECT_HOST")
    .default(DEFAULT_INSPECT_HOST);
}

function inspectStatelyOption(): Option {
  return new Option("--inspect-stately", "also forward the inspection stream to the Stately inspector (needs internet)")
    .env("PRESENCE_INSPECT_STATELY")
    .default(false);
}

function logFormatOption(): Option {
  return new Option("--log-format <format>", "log line format").env("PRESENCE_LOG_FORMAT").choices(LOG_FORMATS).default("pretty");
}

/** Prints why the command stops (any URL in it redacted) and exits: 2 for bad flags, else 1. */
function fail(err: unknown): never {
  if (err instanceof ConfigError || err instanceof RecordLogError) {
    process.stderr.write(`presence-coordinator: ${redactUrlsIn(err.message)}\n`);
    process.exit(EXIT_USAGE);
  }
  process.stderr.write(`presence-coordinator: ${redactUrlsIn(describeError(err))}\n`);
  process.exit(EXIT_FAILURE);
}

/**
 * Handles SIGTERM and SIGINT from before startup: the first one stops what `starting`
 * started (once it has started) and exits 0; a second one exits at once. So a signal that
 * arrives while connecting still stops an embedded nats-server.
 */
function stopOnSignals(starting: Promise<() => Promise<void>>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`presence-coordinator: ${signal} again, exiting without waiting\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    starting
      .then((stop) => stop())
      .then(
        () => process.exit(0),
        (err: unknown) => fail(err),
      );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** What `--inspect`, `--inspect-host` and `--inspect-stately` ask for; null: no inspection at all. */
function inspectSettings(port: number | true | undefined, host: string, stately: boolean): InspectSettings | null {
  if (port === undefined && !stately) return null;
  return {
    ...(port !== undefined ? { local: { host, port: port === true ? DEFAULT_INSPECT_PORT : port } } : {}),
    stately,
  };
}

/** PRESENCE_VERBOSE counts when it says yes (1, true, yes, on), not merely when it is set. */
function verboseFromEnv(): boolean {
  return /^(1|true|yes|on)$/i.test(process.env.PRESENCE_VERBOSE ?? "");
}

/** Commander's own errors (unknown flag, bad value, missing option) exit with the usage code. */
function exitOnUsageError(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    const clean = err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help";
    process.exit(clean ? 0 : EXIT_USAGE);
  });
}

export function buildProgram(): Command {
  const program = new Command("presence-coordinator")
    .description("Presence and leader-election coordinator on NATS JetStream")
    .version(pkg.version)
    .showHelpAfterError("(run with --help for usage)");

  const run = new Command("run")
    .description("run a coordinator: join the cluster's leader election")
    .addOption(
      new Option("-u, --nats-url <urls>", "NATS server URL(s), comma-separated seeds").env("PRESENCE_NATS_URL").makeOptionMandatory(),
    )
    .addOption(
      new Option("--cluster-id <id>", "coordinator cluster id; names every subject and bucket")
        .env("PRESENCE_CLUSTER_ID")
        .makeOptionMandatory(),
    )
    .addOption(new Option("--coordinator-id <id>", "this coordinator's id (default: a generated UUID)").env("PRESENCE_COORDINATOR_ID"));
  addTimingOptions(run)
    .addOption(
      new Option("--connect-timeout <ms>", "give up if NATS cannot be reached within this time at startup")
        .env("PRESENCE_CONNECT_TIMEOUT")
        .argParser(wholeNumber)
        .default(DEFAULT_CONNECT_TIMEOUT_MS),
    )
    .addOption(
      new Option("--kv-replicas <n>", "replicas of the coordinator's KV buckets (3 on a 3-node JetStream cluster)")
        .env("PRESENCE_KV_REPLICAS")
        .argParser(wholeNumber)
        .default(DEFAULT_KV_REPLICAS),
    )
    .addOption(
      new Option("--shards <n>", "shard actors the clients are spread over")
        .env("PRESENCE_SHARDS")
        .argParser(wholeNumber)
        .default(DEFAULT_SHARD_COUNT),
    )
    .addOption(
      new Option("--max-clients <n>", "new clients past this many are refused (a leader holds what its event loop can ping)")
        .env("PRESENCE_MAX_CLIENTS")
        .argParser(wholeNumber)
        .default(DEFAULT_MAX_CLIENTS),
    )
    .addOption(seedOption())
    .addOption(inspectOption())
    .addOption(inspectHostOption())
    .addOption(inspectStatelyOption())
    .addOption(
      new Option("--record <file>", "write a record log of this run (JSON lines) for `presence-coordinator replay`").env("PRESENCE_RECORD"),
    )
    .addOption(metricsPortOption())
    .addOption(metricsHostOption())
    .addOption(logFormatOption())
    .addOption(new Option("-v, --verbose", "log debug lines too (env: PRESENCE_VERBOSE=1)").default(false));
  addSecurityOptions(run)
    .addOption(configOption())
    .action(async (flags: RunFlags & SecurityFlags, cmd: Command) => {
      const { urls, security } = connectionFrom(flags);
      const config: CoordinatorConfig = {
        natsUrls: urls,
        clusterId: flags.clusterId,
        coordinatorId: flags.coordinatorId ?? randomUUID(),
        ...timingsFrom(flags),
        connectTimeoutMs: flags.connectTimeout,
        kvReplicas: flags.kvReplicas,
        maxClients: flags.maxClients,
        shardCount: flags.shards,
        logFormat: flags.logFormat,
        verbose: flags.verbose === true || verboseFromEnv(),
        seed: flags.seed ?? newSeed(),
      };
      try {
        validateConfig(config);
      } catch (err) {
        fail(err);
      }
      const inspect = inspectSettings(flags.inspect, flags.inspectHost, flags.inspectStately === true);
      const starting = (async () => {
        let coordinator: Coordinator | undefined;
        const logger = createLogger({
          format: config.logFormat,
          verbose: config.verbose,
          fields: { coordinatorId: config.coordinatorId },
          epoch: () => (coordinator ? coordinator.view.epoch : 0),
        });
        logConfigOverrides(cmd, logger);
        // Before connecting: a port in use fails at once.
        const inspection = inspect === null ? null : await Inspection.start(inspect, logger);
        let metricsServer: MetricsServer | undefined;
        // Absent --metrics-port, no registry, no server and nothing counted.
        const metrics =
          flags.metricsPort === undefined
            ? undefined
            : new CoordinatorMetrics({ clusterId: config.clusterId, coordinatorId: config.coordinatorId, version: pkg.version });
        try {
          if (metrics) metricsServer = await MetricsServer.start({ host: flags.metricsHost, port: flags.metricsPort!, metrics, logger });
          const started = await startCoordinator(config, {
            logger,
            security,
            ...(metrics ? { metrics } : {}),
            ...(flags.record !== undefined ? { record: { path: flags.record, version: pkg.version } } : {}),
            ...(inspection ? { inspect: inspection.observerFor(config.coordinatorId, config.clusterId) } : {}),
          });
          coordinator = started;
          return async () => {
            await started.stop();
            await inspection?.stop();
            await metricsServer?.stop();
          };
        } catch (err) {
          await inspection?.stop();
          if (metricsServer) await metricsServer.stop();
          else metrics?.close();
          throw err;
        }
      })();
      stopOnSignals(starting);
      await starting.catch(fail);
    });
  program.addCommand(exitOnUsageError(run));

  const watch = new Command("watch")
    .description("print every presence report of a cluster, one per line")
    .addOption(
      new Option("-u, --nats-url <urls>", "NATS server URL(s), comma-separated seeds").env("PRESENCE_NATS_URL").makeOptionMandatory(),
    )
    .addOption(new Option("--cluster-id <id>", "coordinator cluster id").env("PRESENCE_CLUSTER_ID").makeOptionMandatory())
    .addOption(new Option("--json", "print JSON lines instead of text").default(false))
    .addOption(
      new Option("--connect-timeout <ms>", "give up if NATS cannot be reached within this time")
        .env("PRESENCE_CONNECT_TIMEOUT")
        .argParser(wholeNumber)
        .default(DEFAULT_CONNECT_TIMEOUT_MS),
    );
  addSecurityOptions(watch)
    .addOption(configOption())
    .action(async (flags: { natsUrl: string; clusterId: string; json: boolean; connectTimeout: number } & SecurityFlags) => {
      const { urls, security } = connectionFrom(flags);
      const starting = runWatch({
        urls,
        clusterId: flags.clusterId,
        json: flags.json === true,
        connectTimeoutMs: flags.connectTimeout,
        security,
        out: process.stdout,
        err: process.stderr,
      });
      stopOnSignals(starting);
      await starting.catch(fail);
    });
  program.addCommand(exitOnUsageError(watch));

  const status = new Command("status")
    .description("print the cluster's leader, epoch, coordinators and client counts (from the query service)")
    .addOption(
      new Option("-u, --nats-url <urls>", "NATS server URL(s), comma-separated seeds").env("PRESENCE_NATS_URL").makeOptionMandatory(),
    )
    .addOption(new Option("--cluster-id <id>", "coordinator cluster id").env("PRESENCE_CLUSTER_ID").makeOptionMandatory())
    .addOption(new Option("--json", "print one JSON object instead of text").default(false))
    .addOption(new Option("--timeout <ms>", "how long to wait for the coordinators' answers").argParser(wholeNumber).default(2000))
    .addOption(
      new Option("--connect-timeout <ms>", "give up if NATS cannot be reached within this time")
        .env("PRESENCE_CONNECT_TIMEOUT")
        .argParser(wholeNumber)
        .default(DEFAULT_CONNECT_TIMEOUT_MS),
    );
  addSecurityOptions(status)
    .addOption(configOption())
    .action(
      async (flags: { natsUrl: string; clusterId: string; json: boolean; timeout: number; connectTimeout: number } & SecurityFlags) => {
        const { urls, security } = connectionFrom(flags);
        try {
          process.exitCode = await runStatus({
            urls,
            clusterId: flags.clusterId,
            json: flags.json === true,
            timeoutMs: Math.max(1, flags.timeout),
            connectTimeoutMs: flags.connectTimeout,
            security,
            out: process.stdout,
            err: process.stderr,
          });
        } catch (err) {
          fail(err);
        }
      },
    );
  program.addCommand(exitOnUsageError(status));

  const replay = new Command("replay")
    .description("replay a record log (run --record) through the machines and print the commands and reports they produce")
    .argument("<file>", "the record log")
    .addOption(new Option("--json", "print JSON lines instead of text").default(false))
    .addOption(new Option("--check", "compare every command with the recorded one; exit 1 at the first difference").default(false))
    .addOption(
      new Option("--until <ms>", "stop at this time (ms since the recording started) and print every actor's state").argParser((v) => {
        const n = Number(v);
        if (v.trim() === "" || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError("must be a number of milliseconds.");
        return n;
      }),
    )
    .action(async (file: string, flags: { json: boolean; check: boolean; until?: number }) => {
      // `replay log | head`: a reader that went away is not an error.
      process.stdout.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
        fail(err);
      });
      try {
        process.exitCode = await runReplay({
          file,
          json: flags.json === true,
          check: flags.check === true,
          ...(flags.until !== undefined ? { until: flags.until } : {}),
          out: process.stdout,
          err: process.stderr,
        });
      } catch (err) {
        fail(err);
      }
    });
  program.addCommand(exitOnUsageError(replay));

  const dev = new Command("dev")
    .description("demo: an embedded nats-server and three coordinators, printing every election report")
    .addOption(new Option("--coordinators <n>", "how many coordinators to run").argParser(wholeNumber).default(3))
    .addOption(new Option("--clients <n>", "how many demo clients to run").argParser(wholeNumber).default(5))
    .addOption(new Option("--cluster-id <id>", "coordinator cluster id").default("dev"))
    .addOption(
      new Option("--crash-every <s>", "crash the leader this often to show a failover (0: never)").argParser(wholeNumber).default(20),
    )
    .addOption(new Option("--duration <s>", "stop by itself after this long (0: run until Ctrl-C)").argParser(wholeNumber).default(0));
  addTimingOptions(dev)
    .addOption(inspectOption().default(true, String(DEFAULT_INSPECT_PORT)))
    .addOption(new Option("--no-inspect", "do not serve the inspector page"))
    .addOption(inspectHostOption())
    .addOption(inspectStatelyOption())
    .addOption(logFormatOption())
    .addOption(new Option("-v, --verbose", "also print the coordinators' logs").default(false))
    .action(
      async (
        flags: TimingFlags & {
          reportEncoding: ReportEncoding;
          coordinators: number;
          clients: number;
          clusterId: string;
          crashEvery: number;
          duration: number;
          logFormat: LogFormat;
          verbose: boolean;
          inspect: number | boolean;
          inspectHost: string;
          inspectStately: boolean;
        },
      ) => {
        const timings = timingsFrom(flags);
        if (flags.coordinators < 1 || flags.coordinators > 26) fail(new ConfigError("--coordinators", "must be from 1 to 26"));
        const starting = runDev({
          coordinators: flags.coordinators,
          clients: flags.clients,
          clusterId: flags.clusterId,
          timings,
          crashEverySeconds: flags.crashEvery,
          logFormat: flags.logFormat,
          verbose: flags.verbose === true,
          inspect: flags.inspect === false ? null : inspectSettings(flags.inspect, flags.inspectHost, flags.inspectStately === true),
          out: process.stdout,
        });
        stopOnSignals(starting);
        await starting.catch(fail);
        if (flags.duration > 0) {
          setTimeout(() => process.kill(process.pid, "SIGTERM"), flags.duration * 1000);
        }
      },
    );
  program.addCommand(exitOnUsageError(dev));
  // `--config <file>` (or PRESENCE_CONFIG): the file's values go in before the subcommand
  // parses its arguments, with the value source "config", so that commander's own parsing
  // lets the command line and then the environment override them, and required options
  // may come from the file.
  program.hook("preSubcommand", (_program, sub) => {
    if (!sub.options.some((o) => o.long === "--config")) return;
    // The program's arguments: the subcommand's name, then everything after it.
    const raw = _program.args;
    const at = raw.indexOf(sub.name());
    try {
      const path = findConfigPath(at >= 0 ? raw.slice(at + 1) : []);
      if (path !== undefined) applyConfigFile(sub, path);
    } catch (err) {
      fail(err);
    }
  });
  return exitOnUsageError(program);
}

await buildProgram().parseAsync(process.argv);
