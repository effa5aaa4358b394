/** `presence-coordinator run`: a coordinator that joins its cluster's election. */
import { randomUUID } from "node:crypto";
import { Command, Option } from "commander";
import { startCoordinator, type Coordinator } from "../../coordinator/coordinator.js";
import {
  DEFAULT_KV_REPLICAS,
  DEFAULT_MAX_CLIENTS,
  DEFAULT_SHARD_COUNT,
  validateConfig,
  type CoordinatorConfig,
  type LogFormat,
} from "../../config/config.js";
import { newSeed } from "../../machines/random.js";
import { Inspection } from "../../observe/inspect/inspector.js";
import { createLogger } from "../../observe/logger.js";
import { CoordinatorMetrics, MetricsServer } from "../../observe/metrics.js";
import type { ReportEncoding } from "../../protocol/presence.js";
import { PACKAGE_VERSION } from "../../version.js";
import { exitOnUsageError, fail, stopOnSignals } from "../exit.js";
import {
  addSecurityOptions,
  addTimingOptions,
  clusterIdOption,
  configOption,
  connectionFrom,
  connectTimeoutOption,
  inspectHostOption,
  inspectOption,
  inspectSettings,
  inspectStatelyOption,
  logConfigOverrides,
  logFormatOption,
  metricsHostOption,
  metricsPortOption,
  natsUrlOption,
  seedOption,
  timingsFrom,
  verboseFromEnv,
  wholeNumber,
  type ConnectionFlags,
  type TimingFlags,
} from "../flags.js";

interface RunFlags extends TimingFlags, ConnectionFlags {
  reportEncoding: ReportEncoding;
  shards: number;
  coordinatorId?: string;
  kvReplicas: number;
  maxClients: number;
  partitions: number;
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

/** `run`: its flags, then the coordinator, the inspector and the metrics endpoint it starts. */
export function runCommand(): Command {
  const run = new Command("run")
    .description("run a coordinator: join the cluster's leader election")
    .addOption(natsUrlOption())
    .addOption(clusterIdOption("coordinator cluster id; names every subject and bucket"))
    .addOption(new Option("--coordinator-id <id>", "this coordinator's id (default: a generated UUID)").env("PRESENCE_COORDINATOR_ID"));
  addTimingOptions(run)
    .addOption(connectTimeoutOption("give up if NATS cannot be reached within this time at startup"))
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
    .addOption(
      new Option(
        "--partitions <n>",
        "split the clients into this many partitions, each with its own leader (the same on every coordinator)",
      )
        .env("PRESENCE_PARTITIONS")
        .argParser(wholeNumber)
        .default(1),
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
    .action(async (flags: RunFlags, cmd: Command) => {
      const { urls, security } = connectionFrom(flags);
      const config: CoordinatorConfig = {
        natsUrls: urls,
        clusterId: flags.clusterId,
        coordinatorId: flags.coordinatorId ?? randomUUID(),
        ...timingsFrom(flags),
        connectTimeoutMs: flags.connectTimeout,
        kvReplicas: flags.kvReplicas,
        maxClients: flags.maxClients,
        ...(flags.partitions !== 1 ? { partitions: flags.partitions } : {}),
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
          epoch: (partition) => coordinator?.view.epochOf(partition) ?? 0,
        });
        logConfigOverrides(cmd, logger);
        // Before connecting: a port in use fails at once.
        const inspection = inspect === null ? null : await Inspection.start(inspect, logger);
        let metricsServer: MetricsServer | undefined;
        // Absent --metrics-port, no registry, no server and nothing counted.
        const metrics =
          flags.metricsPort === undefined
            ? undefined
            : new CoordinatorMetrics({ clusterId: config.clusterId, coordinatorId: config.coordinatorId, version: PACKAGE_VERSION });
        try {
          if (metrics) metricsServer = await MetricsServer.start({ host: flags.metricsHost, port: flags.metricsPort!, metrics, logger });
          const started = await startCoordinator(config, {
            logger,
            security,
            ...(metrics ? { metrics } : {}),
            ...(flags.record !== undefined ? { record: { path: flags.record, version: PACKAGE_VERSION } } : {}),
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
  return exitOnUsageError(run);
}
