/**
 * The composition root: one coordinator, started as a list of named steps (record log, NATS
 * connection, lease bucket, registrations, election and presence, query service, warm-up)
 * and stopped together. The machines' commands go through one outbox router to the side
 * that executes them (COMMAND_EXECUTOR in src/machines/commands.ts), and everything that
 * reports on the coordinator reads one view of it (view.ts).
 */
import type { CoordinatorConfig } from "../config/config.js";
import type { NatsSecurity } from "../config/security.js";
import { describeSecurity } from "../config/security.js";
import { ElectionDriver, electionInputFor, type ElectionDriverOptions } from "../election/election-driver.js";
import { KvLeaseStore } from "../election/lease-store.js";
import { Membership } from "../election/membership.js";
import { Balancer, MAX_MOVES_PER_ROUND } from "../election/balancer.js";
import type { HeartbeatBus } from "../election/election-driver.js";
import { NatsHeartbeatBus, NatsReportSink, PartitionedHeartbeats } from "../election/nats-bus.js";
import { routeCommands } from "../machines/commands.js";
import { checkServer, connectNats, type NatsLink } from "../nats/connection.js";
import { retryWhileNotReady } from "../nats/jetstream-errors.js";
import { redactNatsUrl } from "../nats/url.js";
import { createLogger, describeError, type Logger } from "../observe/logger.js";
import type { CoordinatorMetrics } from "../observe/metrics.js";
import { startQueryService, type QueryService } from "../observe/query/query-service.js";
import { openRecordLog, partitionRecorder, type LogRecorder } from "../observe/record/recorder.js";
import { PresenceEdge } from "../presence/presence-edge.js";
import { RegistrationIntake } from "../presence/registration-intake.js";
import { RegistrationRouter } from "../presence/registration-router.js";
import { KvRegistrationStore } from "../presence/registration-store.js";
import { rehearseTakeoverOnce } from "../presence/warm-up.js";
import { checkResources } from "./readiness.js";
import { coordinatorView, type CoordinatorView } from "./view.js";

/**
 * How long a starting coordinator keeps asking a JetStream that is not ready yet (a cluster
 * still electing its meta leader) before it gives up and exits 1.
 */
const STARTUP_JETSTREAM_DEADLINE_MS = 30_000;

export interface Coordinator {
  readonly config: CoordinatorConfig;
  /** What it is now: epoch, role, leader, clients, connection. */
  readonly view: CoordinatorView;
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

/** Connects, prepares the lease bucket and the registrations, and joins the election. */
export async function startCoordinator(config: CoordinatorConfig, options: StartOptions = {}): Promise<Coordinator> {
  const coordinator = new RunningCoordinator(config, options);
  await coordinator.start();
  return coordinator;
}

/** One partition's election and presence edge. */
interface PartitionRun {
  index: number;
  driver: ElectionDriver;
  edge: PresenceEdge;
  /** Whether it led at its election's last transition (see ledChanged). */
  leading: boolean;
}

class RunningCoordinator implements Coordinator {
  readonly logger: Logger;
  // The parts, in the order the start steps make them.
  private recorder: LogRecorder | undefined;
  private link: NatsLink | undefined;
  private lease: KvLeaseStore | undefined;
  private membership: Membership | undefined;
  private registrations: KvRegistrationStore | undefined;
  /** One election and presence edge per partition, by partition. */
  private readonly runs: PartitionRun[] = [];
  /** With several partitions: spreads them over the live coordinators. */
  private balancer: Balancer | undefined;
  /** With several partitions: pulls and stores the registrations while this coordinator leads any. */
  private intake: RegistrationIntake | undefined;
  /** How many partitions this coordinator leads, kept as they are won and lost. */
  private led = 0;
  private coordinatorView: CoordinatorView | undefined;
  private queryService: QueryService | undefined;
  /** Set when it is stopped or killed. */
  private ended = false;
  private stopping: Promise<void> | undefined;

  /** What start() does, in order; a step that fails undoes what the earlier ones started. */
  private readonly steps: readonly { name: string; run: () => Promise<void> | void }[] = [
    { name: "open the record log", run: () => this.openRecordLog() },
    { name: "connect to NATS", run: () => this.connect() },
    { name: "check the server", run: () => checkServer(this.nc, this.config.kvReplicas, this.logger) },
    { name: "open the lease bucket", run: () => this.openLease() },
    { name: "join the members", run: () => this.joinMembers() },
    { name: "open the registration stream and bucket", run: () => this.openRegistrations() },
    { name: "join the election", run: () => this.joinElection() },
    { name: "serve queries", run: () => this.serveQueries() },
    { name: "warm up the takeover code", run: () => this.rehearseTakeover() },
  ];

  constructor(
    readonly config: CoordinatorConfig,
    private readonly options: StartOptions,
  ) {
    this.logger =
      options.logger ??
      createLogger({
        format: config.logFormat,
        verbose: config.verbose,
        fields: { coordinatorId: config.coordinatorId },
        epoch: (partition) => this.coordinatorView?.epochOf(partition) ?? 0,
      });
  }

  get view(): CoordinatorView {
    if (this.coordinatorView === undefined) throw new Error("coordinator: not started");
    return this.coordinatorView;
  }

  private get nc() {
    if (this.link === undefined) throw new Error("coordinator: not connected");
    return this.link.nc;
  }

  async start(): Promise<void> {
    this.logStarting();
    for (const step of this.steps) {
      this.logger.debug(`start: ${step.name}`);
      try {
        await step.run();
      } catch (err) {
        for (const run of this.runs) run.driver.halt();
        this.balancer?.stop();
        this.membership?.halt();
        await this.link?.nc.close();
        await this.recorder?.close();
        throw err;
      }
    }
  }

  private logStarting(): void {
    const { config } = this;
    this.logger.info("starting coordinator", {
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
      partitions: this.partitionCount,
      electionBackoffMs: `${config.electionBackoffMinMs}-${config.electionBackoffMaxMs}`,
      seed: config.seed,
      // Which way it authenticates and which files it reads; never a password or token.
      ...describeSecurity(this.options.security ?? {}),
    });
  }

  /** Before connecting: an unwritable path stops the start with a message naming it. */
  private async openRecordLog(): Promise<void> {
    const { record } = this.options;
    if (!record) return;
    this.recorder = await openRecordLog({
      path: record.path,
      version: record.version,
      config: this.config,
      onError: (message, err) => this.logger.error(`${message}; monitoring goes on`, { error: describeError(err) }),
    });
    this.logger.info("recording this run", { recordLog: record.path });
  }

  private async connect(): Promise<void> {
    const { recorder } = this;
    this.link = await connectNats({
      urls: this.config.natsUrls,
      name: `presence-coordinator ${this.config.coordinatorId}`,
      connectTimeoutMs: this.config.connectTimeoutMs,
      logger: this.logger,
      ...(this.options.security ? { security: this.options.security } : {}),
      ...(recorder
        ? {
            onStatus: (status: string, server?: string) => {
              // Pings of the connection are not status changes.
              if (status !== "ping") recorder.record({ kind: "info", what: "connection", status, ...(server ? { server } : {}) });
            },
          }
        : {}),
    });
  }

  /** While JetStream is not ready yet (a cluster still electing its meta leader), asked again until the startup deadline. */
  private readonly notReady = {
    deadlineMs: STARTUP_JETSTREAM_DEADLINE_MS,
    warn: (message: string, fields: Record<string, unknown>) => this.logger.warn(message, fields),
    info: (message: string, fields: Record<string, unknown>) => this.logger.info(message, fields),
  };

  /** Timeout of a lease or member write: a renewal must be answered, or given up and retried, within the renew deadline. */
  private get kvTimeoutMs(): number {
    const { renewDeadlineMs, heartbeatIntervalMs } = this.config;
    return Math.max(50, Math.floor((renewDeadlineMs - heartbeatIntervalMs) / 2));
  }

  private async openLease(): Promise<void> {
    const { config } = this;
    this.lease = await retryWhileNotReady(
      "lease bucket",
      () =>
        KvLeaseStore.open(this.nc, {
          clusterId: config.clusterId,
          ttlMs: config.leaderTimeoutMs,
          replicas: config.kvReplicas,
          timeoutMs: this.kvTimeoutMs,
          partitions: this.partitionCount,
          logger: this.logger,
        }),
      this.notReady,
    );
  }

  /** The member key, so that the others know this coordinator is live, and the watch of theirs. */
  private async joinMembers(): Promise<void> {
    const { config } = this;
    this.membership = await retryWhileNotReady(
      "member keys",
      () =>
        Membership.join(this.nc, {
          clusterId: config.clusterId,
          coordinatorId: config.coordinatorId,
          intervalMs: config.heartbeatIntervalMs,
          livenessMs: config.leaderTimeoutMs,
          timeoutMs: this.kvTimeoutMs,
          led: () => this.led,
          logger: this.logger,
        }),
      this.notReady,
    );
  }

  private async openRegistrations(): Promise<void> {
    const { config } = this;
    this.registrations = await retryWhileNotReady(
      "registration stream and bucket",
      () =>
        KvRegistrationStore.open(this.nc, {
          clusterId: config.clusterId,
          replicas: config.kvReplicas,
          logger: this.logger,
          // A message pulled by a leader that died is delivered to the next one after this.
          ackWaitMs: Math.max(5000, 2 * config.leaderTimeoutMs),
          // Followers too keep every registration at hand, for when they take over.
          mirror: true,
        }),
      this.notReady,
    );
  }

  /** How many partitions the cluster runs. */
  private get partitionCount(): number {
    return this.config.partitions ?? 1;
  }

  /**
   * One election and one presence edge per partition, each pair joined by its own outbox
   * router: the election's commands run on its driver, the monitor's on its edge. With one
   * partition that is all (today's coordinator); with several, the balancer spreads them
   * over the live coordinators, and this coordinator's own intake pulls and stores the
   * registrations while it leads any (registration-router.ts). Then the metrics are attached
   * and the elections start.
   */
  private joinElection(): void {
    const { config, options, logger } = this;
    const link = this.link!;
    const count = this.partitionCount;
    const heartbeats = new NatsHeartbeatBus(link.nc, config.clusterId, logger);
    const perPartition = count > 1 ? new PartitionedHeartbeats(heartbeats) : null;
    const router = count > 1 ? new RegistrationRouter(this.registrations!, count) : null;
    const reports = new NatsReportSink(link.nc, config.clusterId, logger);
    for (let p = 0; p < count; p++) {
      this.runs.push(this.partition(p, perPartition?.forPartition(p) ?? heartbeats, reports, router));
    }
    const membership = this.membership!;
    if (count > 1) {
      const { electionBackoffMinMs: min, electionBackoffMaxMs: max } = config;
      this.balancer = new Balancer({
        coordinatorId: config.coordinatorId,
        elections: this.runs.map((r) => r.driver),
        live: () => membership.live().map((m) => m.coordinatorId),
        // A heartbeat interval and a half: it has heard every partition's leader by then.
        ready: () => membership.settled((3 * config.heartbeatIntervalMs) / 2),
        intervalMs: config.heartbeatIntervalMs,
        settleMs: config.leaderTimeoutMs,
        maxMovesPerRound: MAX_MOVES_PER_ROUND,
        standingStepMs: Math.max(min, max - min),
        maxRanks: 2,
        logger,
      });
      this.intake = new RegistrationIntake({
        store: this.registrations!,
        clusterId: config.clusterId,
        maxClients: config.maxClients,
        // Each coordinator monitors about its share of the clients: the cap grows with the cluster.
        clientLimit: () => config.maxClients * Math.max(1, membership.live().length),
        monitoredCount: () => this.registrations!.mirrored,
        log: logger.child({ component: "registrations" }),
        leaseIsValid: () => this.runs.some((r) => r.driver.isLeader && r.driver.leaseIsValid()),
        // A leave waits for the leader of its client's partition (see RegistrationIntakeOptions.mayStore).
        mayStore: (subject, leaving) => {
          if (!leaving) return true;
          const { driver } = this.runs[router!.partitionOf(subject)]!;
          return driver.isLeader && driver.leaseIsValid();
        },
        toMonitor: () => {}, // the partitions' leaders hear of it from their mirrors
        onUnregistered: () => {},
        ...(options.metrics ? { metrics: options.metrics } : {}),
      });
    }
    const view = coordinatorView(
      this.runs.map((r) => ({ index: r.index, driver: r.driver })),
      config.coordinatorId,
      () => link.connected,
    );
    this.coordinatorView = view;
    options.metrics?.attach(view, (timeoutMs) => checkResources(link.nc, config.clusterId, timeoutMs));
    for (const run of this.runs) run.driver.actor.subscribe(() => this.ledChanged(run));
    for (const run of this.runs) run.driver.start();
    this.balancer?.start();
  }

  /** Partition `index`'s election driver and presence edge. */
  private partition(index: number, heartbeats: HeartbeatBus, reports: NatsReportSink, router: RegistrationRouter | null): PartitionRun {
    const { config, options } = this;
    const link = this.link!;
    const { metrics } = options;
    const several = this.partitionCount > 1;
    const recorder = this.recorder && several ? partitionRecorder(this.recorder, index) : this.recorder;
    const logger = several ? this.logger.child({ partition: index }) : this.logger;
    const driver: ElectionDriver = new ElectionDriver({
      ...electionInputFor(config, index),
      clusterId: config.clusterId,
      outbox: routeCommands({ election: (command) => driver.execute(command), presence: (command) => edge.handle(command) }),
      lease: several ? this.lease!.forPartition(index, this.partitionCount) : this.lease!,
      ...(several ? { partition: { index, count: this.partitionCount } } : {}),
      successor: several ? () => this.balancer?.successorFor(index) : () => this.membership?.successor(),
      heartbeats,
      reports,
      logger: this.logger,
      isConnected: () => link.connected,
      ...(options.inspect ? { inspect: options.inspect } : {}),
      ...(recorder ? { recorder } : {}),
      ...(metrics ? { metrics } : {}),
    });
    const edge: PresenceEdge = new PresenceEdge({
      nc: link.nc,
      maxClients: config.maxClients,
      clusterId: config.clusterId,
      coordinatorId: config.coordinatorId,
      store: this.registrations!,
      sweepIntervalMs: config.sweepIntervalMs,
      deadTimeoutMs: config.deadTimeoutMs,
      pingIntervalMs: config.pingIntervalMs,
      reportEncoding: config.reportEncoding,
      ...(several ? { partition: index } : {}),
      ...(router ? { feed: router.feed(index) } : {}),
      logger,
      leaseIsValid: () => driver.leaseIsValid(),
      epoch: () => driver.epoch,
      isConnected: () => link.connected,
      connectionLosses: () => link.losses,
      toMonitor: (event) => driver.sendToMonitor(event),
      ...(recorder ? { recorder } : {}),
      ...(metrics ? { metrics } : {}),
    });
    return { index, driver, edge, leading: false };
  }

  /**
   * A transition of `run`'s election (every heartbeat a follower hears is one): when it won or
   * lost its partition, the member key says so, and the intake pulls while this coordinator
   * leads any partition. Constant work per transition, however many partitions there are.
   */
  private ledChanged(run: PartitionRun): void {
    const leading = run.driver.isLeader;
    if (leading === run.leading) return;
    run.leading = leading;
    const before = this.led;
    this.led += leading ? 1 : -1;
    this.membership?.ledChanged();
    if (this.intake === undefined || this.ended) return;
    if (before === 0) this.intake.pull();
    else if (this.led === 0) this.intake.stop();
  }

  /** Every coordinator serves the query service (see query-service.ts for who answers what). */
  private async serveQueries(): Promise<void> {
    this.queryService = await startQueryService({
      nc: this.nc,
      clusterId: this.config.clusterId,
      coordinatorId: this.config.coordinatorId,
      logger: this.logger,
      source: this.view,
    });
  }

  /** Once per process, while this coordinator follows, so that a takeover runs compiled code (src/presence/warm-up.ts). */
  private rehearseTakeover(): void {
    const { pingIntervalMs, deadTimeoutMs, stateIntervalMs, sweepIntervalMs, shardCount, reportEncoding } = this.config;
    const view = this.view;
    void rehearseTakeoverOnce(
      { pingIntervalMs, deadTimeoutMs, stateIntervalMs, sweepIntervalMs, shardCount },
      reportEncoding,
      () => !this.ended && view.role === "follower",
    ).then(
      (rehearsal) => {
        if (rehearsal !== null)
          this.logger.debug(rehearsal.completed ? "rehearsed a takeover" : "stopped rehearsing a takeover: no longer a follower", {
            ...rehearsal,
          });
      },
      (err: unknown) => this.logger.warn("could not rehearse a takeover; a takeover will be slower", { error: describeError(err) }),
    );
  }

  stop(): Promise<void> {
    this.ended = true;
    this.stopping ??= (async () => {
      const { config } = this;
      // Every partition it leads is handed to its heir (Balancer.stop), all at once.
      this.balancer?.stop();
      await Promise.all(this.runs.map((r) => r.driver.resign(config.leaderTimeoutMs + config.heartbeatIntervalMs)));
      await this.membership?.leave();
      await Promise.all([...this.runs.map((r) => r.edge.settled(config.leaderTimeoutMs)), this.intake?.settled(config.leaderTimeoutMs)]);
      this.intake?.stop();
      await this.queryService?.stop();
      this.registrations?.close();
      try {
        await this.nc.drain();
      } catch (err) {
        this.logger.warn("draining the NATS connection failed", { error: describeError(err) });
      }
      // After the resignation's last command: the log's tail is on disk before the process exits.
      await this.recorder?.close();
      this.logger.info("coordinator stopped");
    })();
    return this.stopping;
  }

  async kill(): Promise<void> {
    this.ended = true;
    for (const run of this.runs) run.driver.halt();
    this.balancer?.stop();
    this.membership?.halt();
    await this.nc.close();
    await this.recorder?.close();
    this.logger.info("coordinator killed without resigning");
  }
}
