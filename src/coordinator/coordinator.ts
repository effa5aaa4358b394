/**
 * One coordinator: its NATS connection, lease store, heartbeat bus, report sink and
 * election driver, started together and stopped together.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { describeSecurity, type CoordinatorConfig, type NatsSecurity } from "../config/config.js";
import { redactNatsUrl } from "../nats/url.js";
import {
  encodeElectionReport,
  encodeHeartbeat,
  parseHeartbeat,
  subjects,
  type ElectionReport,
  type Heartbeat,
} from "../protocol/election.js";
import {
  ElectionDriver,
  electionInputFor,
  type ElectionDriverOptions,
  type HeartbeatBus,
  type ReportSink,
} from "../election/election-driver.js";
import { KvLeaseStore } from "../election/lease-store.js";
import { PresenceEdge } from "../presence/presence-edge.js";
import { KvRegistrationStore } from "../presence/registration-store.js";
import { createLogger, describeError, WarningThrottle, type Logger } from "../observe/logger.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { resources } from "../protocol/election.js";
import { presenceResources } from "../protocol/presence.js";
import type { CoordinatorMetrics } from "../observe/metrics.js";
import { retryWhileNotReady } from "../nats/jetstream-errors.js";
import { checkServer, connectNats, type NatsLink } from "../nats/connection.js";
import { openRecordLog } from "../observe/record/recorder.js";
import { startQueryService, type QueryService } from "../observe/query/query-service.js";
import { rehearseTakeoverOnce } from "../presence/warm-up.js";

/**
 * How long a starting coordinator keeps asking a JetStream that is not ready yet (a cluster
 * still electing its meta leader) before it gives up and exits 1.
 */
const STARTUP_JETSTREAM_DEADLINE_MS = 30_000;

export class NatsHeartbeatBus implements HeartbeatBus {
  /** Garbage on the heartbeat subject logs a line per 10 s, not one per message. */
  private readonly malformed: WarningThrottle;

  constructor(
    private readonly nc: NatsConnection,
    private readonly clusterId: string,
    private readonly logger: Logger,
  ) {
    this.malformed = new WarningThrottle(logger, "more malformed heartbeats ignored (counted, not logged one by one)");
  }

  publish(heartbeat: Heartbeat): void {
    try {
      this.nc.publish(subjects.heartbeat(this.clusterId), encodeHeartbeat(heartbeat));
    } catch (err) {
      this.logger.warn("could not publish a heartbeat", { error: describeError(err) });
    }
  }

  subscribe(handler: (heartbeat: Heartbeat) => void): () => void {
    const sub = this.nc.subscribe(subjects.heartbeat(this.clusterId), {
      callback: (err, msg) => {
        if (err) {
          this.logger.warn("heartbeat subscription failed", { error: describeError(err) });
          return;
        }
        let hb: Heartbeat;
        try {
          hb = parseHeartbeat(msg.data);
        } catch (e) {
          this.malformed.warn("malformed", "ignored a malformed heartbeat", { error: describeError(e) });
          return;
        }
        handler(hb);
      },
    });
    return () => {
      sub.unsubscribe();
      this.malformed.flush();
    };
  }
}

export class NatsReportSink implements ReportSink {
  constructor(
    private readonly nc: NatsConnection,
    private readonly clusterId: string,
    private readonly logger: Logger,
  ) {}

  publish(report: ElectionReport): void {
    try {
      this.nc.publish(subjects.electionReport(this.clusterId), encodeElectionReport(report));
    } catch (err) {
      this.logger.warn("could not publish an election report", { report: report.type, error: describeError(err) });
    }
  }
}

export interface Coordinator {
  readonly config: CoordinatorConfig;
  readonly driver: ElectionDriver;
  readonly logger: Logger;
  /** Leaves the election gracefully (a leader resigns) and drains the NATS connection. */
  stop(): Promise<void>;
  /** Stops at once without resigning and drops the connection, as a crash would (for the demo). */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** Defaults to a winston logger built from the config. */
  logger?: Logger;
  /** Receives the actor system's inspection stream (the live inspector); absent, nothing is inspected. */
  inspect?: ElectionDriverOptions["inspect"];
  /** `run --record`: write a record log of this run to `path` (see src/observe/record/recorder.ts). */
  record?: { path: string; version: string };
  /** Authentication and TLS for the NATS connection (never logged, never recorded). */
  security?: NatsSecurity;
  /** `run --metrics-port`: the metrics to feed; attached once connected. Absent, nothing is counted. */
  metrics?: CoordinatorMetrics;
}

/** Connects, prepares the lease bucket and joins the election. */
export async function startCoordinator(config: CoordinatorConfig, options: StartOptions = {}): Promise<Coordinator> {
  let driver: ElectionDriver | undefined;
  let queryService: QueryService | undefined;
  let edge: PresenceEdge | undefined;
  let registrationStore: KvRegistrationStore | undefined;
  /** Set when it is stopped or killed. */
  let ended = false;
  const logger =
    options.logger ??
    createLogger({
      format: config.logFormat,
      verbose: config.verbose,
      fields: { coordinatorId: config.coordinatorId },
      epoch: () => driver?.epoch ?? 0,
    });
  logger.info("starting coordinator", {
    clusterId: config.clusterId,
    natsUrls: config.natsUrls.map(redactNatsUrl).join(","),
    leaderTimeoutMs: config.leaderTimeoutMs,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    renewDeadlineMs: config.renewDeadlineMs,
    pingIntervalMs: config.pingIntervalMs,
    deadTimeoutMs: config.deadTimeoutMs,
    stateIntervalMs: config.stateIntervalMs,
    sweepIntervalMs: config.sweepIntervalMs,
    reportEncoding: config.reportEncoding,
    electionBackoffMs: `${config.electionBackoffMinMs}-${config.electionBackoffMaxMs}`,
    seed: config.seed,
    // Which way it authenticates and which files it reads; never a password or token.
    ...describeSecurity(options.security ?? {}),
  });
  // Opened before connecting: an unwritable path stops the start with a message naming it.
  const recorder = options.record
    ? await openRecordLog({
        path: options.record.path,
        version: options.record.version,
        config,
        onError: (message, err) => logger.error(`${message}; monitoring goes on`, { error: describeError(err) }),
      })
    : undefined;
  if (options.record) logger.info("recording this run", { recordLog: options.record.path });
  let link: NatsLink;
  try {
    link = await connectNats({
      urls: config.natsUrls,
      name: `presence-coordinator ${config.coordinatorId}`,
      connectTimeoutMs: config.connectTimeoutMs,
      logger,
      ...(options.security ? { security: options.security } : {}),
      ...(recorder
        ? {
            onStatus: (status: string, server?: string) => {
              // Pings of the connection are not status changes.
              if (status !== "ping") recorder.record({ kind: "info", what: "connection", status, ...(server ? { server } : {}) });
            },
          }
        : {}),
    });
  } catch (err) {
    await recorder?.close();
    throw err;
  }
  const { nc } = link;
  try {
    await checkServer(nc, config.kvReplicas, logger);
    const notReady = {
      deadlineMs: STARTUP_JETSTREAM_DEADLINE_MS,
      warn: (message: string, fields: Record<string, unknown>) => logger.warn(message, fields),
      info: (message: string, fields: Record<string, unknown>) => logger.info(message, fields),
    };
    const lease = await retryWhileNotReady(
      "lease bucket",
      () =>
        KvLeaseStore.open(nc, {
          clusterId: config.clusterId,
          ttlMs: config.leaderTimeoutMs,
          replicas: config.kvReplicas,
          // A renewal must be answered, or given up and retried, within the renew deadline.
          timeoutMs: Math.max(50, Math.floor((config.renewDeadlineMs - config.heartbeatIntervalMs) / 2)),
          logger,
        }),
      notReady,
    );
    const registrations = await retryWhileNotReady(
      "registration stream and bucket",
      () =>
        KvRegistrationStore.open(nc, {
          clusterId: config.clusterId,
          replicas: config.kvReplicas,
          logger,
          // A message pulled by a leader that died is delivered to the next one after this.
          ackWaitMs: Math.max(5000, 2 * config.leaderTimeoutMs),
          // Followers too keep every registration at hand, for when they take over.
          mirror: true,
        }),
      notReady,
    );
    registrationStore = registrations;
    driver = new ElectionDriver({
      ...electionInputFor(config),
      clusterId: config.clusterId,
      onMonitorCommand: (command) => edge?.handle(command),
      lease,
      heartbeats: new NatsHeartbeatBus(nc, config.clusterId, logger),
      reports: new NatsReportSink(nc, config.clusterId, logger),
      logger,
      isConnected: () => link.connected,
      ...(options.inspect ? { inspect: options.inspect } : {}),
      ...(recorder ? { recorder } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    const elected = driver;
    edge = new PresenceEdge({
      nc,
      maxClients: config.maxClients,
      clusterId: config.clusterId,
      coordinatorId: config.coordinatorId,
      store: registrations,
      sweepIntervalMs: config.sweepIntervalMs,
      deadTimeoutMs: config.deadTimeoutMs,
      pingIntervalMs: config.pingIntervalMs,
      reportEncoding: config.reportEncoding,
      logger,
      leaseIsValid: () => elected.leaseIsValid(),
      epoch: () => elected.epoch,
      isConnected: () => link.connected,
      connectionLosses: () => link.losses,
      toMonitor: (event) => elected.sendToMonitor(event),
      ...(recorder ? { recorder } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    options.metrics?.attach({
      epoch: () => elected.epoch,
      connected: () => link.connected,
      clientStates: () => {
        const counts = { alive: 0, suspect: 0 };
        for (const c of elected.clients()) counts[c.state === "suspect" ? "suspect" : "alive"] += 1;
        return counts;
      },
      checkReady: (timeoutMs) => checkResources(nc, config.clusterId, timeoutMs),
    });
    driver.start();
    // Every coordinator serves the query service; a follower forwards to the leader.
    queryService = await startQueryService({
      nc,
      clusterId: config.clusterId,
      coordinatorId: config.coordinatorId,
      logger,
      source: {
        leads: () => elected.isLeader && elected.leaseIsValid(),
        get role() {
          return elected.role;
        },
        get knownLeader() {
          return elected.knownLeader;
        },
        clients: () => elected.clients(),
      },
    });
    // Once per process, while this coordinator follows, so that a takeover runs compiled code (src/presence/warm-up.ts).
    const { pingIntervalMs, deadTimeoutMs, stateIntervalMs, sweepIntervalMs, shardCount } = config;
    void rehearseTakeoverOnce(
      { pingIntervalMs, deadTimeoutMs, stateIntervalMs, sweepIntervalMs, shardCount },
      config.reportEncoding,
      () => !ended && elected.role === "follower",
    ).then(
      (rehearsal) => {
        if (rehearsal !== null)
          logger.debug(rehearsal.completed ? "rehearsed a takeover" : "stopped rehearsing a takeover: no longer a follower", {
            ...rehearsal,
          });
      },
      (err: unknown) => logger.warn("could not rehearse a takeover; a takeover will be slower", { error: describeError(err) }),
    );
  } catch (err) {
    driver?.halt();
    await nc.close();
    await recorder?.close();
    throw err;
  }
  const started = driver;
  let stopping: Promise<void> | undefined;
  return {
    config,
    driver: started,
    logger,
    stop: () => {
      ended = true;
      stopping ??= (async () => {
        await started.resign(config.leaderTimeoutMs + config.heartbeatIntervalMs);
        await edge?.settled(config.leaderTimeoutMs);
        await queryService?.stop();
        registrationStore?.close();
        try {
          await nc.drain();
        } catch (err) {
          logger.warn("draining the NATS connection failed", { error: describeError(err) });
        }
        // After the resignation's last command: the log's tail is on disk before the process exits.
        await recorder?.close();
        logger.info("coordinator stopped");
      })();
      return stopping;
    },
    kill: async () => {
      ended = true;
      started.halt();
      await nc.close();
      await recorder?.close();
      logger.info("coordinator killed without resigning");
    },
  };
}

/**
 * Readiness (`/readyz`): the lease bucket, the registration bucket and the registration
 * stream answer JetStream within `timeoutMs`. Throws naming the first that does not.
 */
async function checkResources(nc: NatsConnection, clusterId: string, timeoutMs: number): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  const checks: [string, string][] = [
    ["lease bucket", `KV_${resources.leadershipBucket(clusterId)}`],
    ["registration bucket", `KV_${presenceResources.registrationBucket(clusterId)}`],
    ["registration stream", presenceResources.registrationStream(clusterId)],
  ];
  await Promise.all(
    checks.map(async ([what, stream]) => {
      try {
        await jsm.streams.info(stream);
      } catch (err) {
        throw new Error(`${what} ${stream}: ${describeError(err)}`, { cause: err });
      }
    }),
  );
}
