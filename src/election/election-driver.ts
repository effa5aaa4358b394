/**
 * Runs the election machine against the world: executes its commands on the lease store,
 * the heartbeat bus and the report sink, and feeds the results back as events.
 *
 * Two jobs it hands to files of their own:
 * - the lease fence (lease-fence.ts): anything published as leader goes out only while the
 *   renew deadline of the last successful lease write has not passed, on this process's own
 *   monotonic clock, whatever the machine's timers say;
 * - the heartbeat gate (heartbeat-gate.ts): a heartbeat reaches the machine only once the
 *   lease confirms its sender.
 */
import { performance } from "node:perf_hooks";
import { createActor, fromCallback, type Actor, type ActorOptions } from "xstate";
import type { CoordinatorConfig, ElectionTimings } from "../config/config.js";
import { routeCommands, type Command, type ElectionCommand } from "../machines/commands.js";
import { electionMachine, type ElectionEvent, type ElectionInput } from "../machines/election.js";
import type { MonitorEvent, MonitorSettings } from "../machines/monitor.js";
import type { ElectionReport, ElectionReportBody, Heartbeat, LeaseHolder } from "../protocol/election.js";
import { createRandom, type RandomSource } from "../machines/random.js";
import { HeartbeatGate } from "./heartbeat-gate.js";
import { LeaseFence } from "./lease-fence.js";
import { LeaseLostError, LeaseTakenError, type LeaseStore } from "./lease-store.js";
import { describeError, type Logger } from "../observe/logger.js";
import { indexScheduler } from "../machines/scheduler-index.js";
import type { MetricsSink } from "../observe/metrics.js";
import { realClock, recordingClock, type Recorder } from "../observe/record/recorder.js";

/** Where heartbeats go and come from. */
export interface HeartbeatBus {
  publish(heartbeat: Heartbeat): void;
  /** Calls `handler` for every heartbeat heard; returns a function that stops listening. */
  subscribe(handler: (heartbeat: Heartbeat) => void): () => void;
}

/** Where election reports go. */
export interface ReportSink {
  publish(report: ElectionReport): void;
}

export interface ElectionDriverOptions {
  coordinatorId: string;
  clusterId: string;
  timings: ElectionTimings;
  random: RandomSource;
  /** Settings of the monitor that runs while this coordinator leads. */
  monitor: MonitorSettings;
  /**
   * Where the machines' commands go: a router that sends each to the side that executes it
   * (routeCommands), this driver's `execute` for the election's. Default: the election's
   * are executed and the monitor's dropped, for election-only tests.
   */
  outbox?: (command: Command) => void;
  lease: LeaseStore;
  /**
   * The partition this election is for, when the cluster runs more than one: its heartbeats
   * and reports name it, and heartbeats of other partitions are not its business. Absent,
   * the cluster runs one partition and the wire is exactly that of one.
   */
  partition?: { index: number; count: number };
  /**
   * The live coordinator a resigning leader hands over to, named in its last heartbeat (see
   * membership.ts); absent or undefined, the heartbeat names none and everyone backs off.
   */
  successor?: () => string | undefined;
  heartbeats: HeartbeatBus;
  reports: ReportSink;
  logger: Logger;
  /** Whether the connection is up now; reports are not queued while it is down. */
  isConnected: () => boolean;
  /** Monotonic milliseconds (default: performance.now). */
  now?: () => number;
  /** The machine's clock (default: XState's real-time clock); tests pass a SimulatedClock. */
  clock?: ActorOptions<typeof electionMachine>["clock"];
  /** Receives XState's inspection stream of the whole actor system (absent: no inspection, no cost). */
  inspect?: ActorOptions<typeof electionMachine>["inspect"];
  /**
   * Records every event that enters the actor system, every timer that fires and every
   * command that leaves it (`run --record`); absent, nothing is recorded and nothing costs.
   */
  recorder?: Recorder;
  /** `run --metrics-port`: told of every transition and every report published; absent, nothing is counted. */
  metrics?: MetricsSink;
}

/**
 * The election machine's input for a coordinator's config: what the driver runs, and what
 * replay rebuilds from a log's header. Each partition's election draws its backoffs from a
 * random source of its own, seeded from the config's seed and the partition (partition 0's
 * is the config's seed itself).
 */
export function electionInputFor(config: CoordinatorConfig, partition = 0): ElectionInput {
  return {
    coordinatorId: config.coordinatorId,
    timings: config,
    random: createRandom(partition === 0 ? config.seed : (config.seed + Math.imul(partition, 0x9e3779b1)) >>> 0),
    monitor: {
      pingIntervalMs: config.pingIntervalMs,
      deadTimeoutMs: config.deadTimeoutMs,
      stateIntervalMs: config.stateIntervalMs,
      sweepIntervalMs: config.sweepIntervalMs,
      shardCount: config.shardCount,
    },
  };
}

const SAY: Record<ElectionReportBody["type"], string> = {
  BecameFollower: "following; waiting for a leader",
  FollowingLeader: "following the leader",
  BecameCandidate: "standing for election",
  BecameLeader: "became leader",
  SteppedDown: "stepped down from leadership",
  Stopped: "left the election",
};

export class ElectionDriver {
  readonly actor: Actor<typeof electionMachine>;
  private readonly now: () => number;
  private readonly fence: LeaseFence;
  private readonly gate: HeartbeatGate;
  private seq = 0;
  private unsubscribe: (() => void) | null = null;
  private readonly log: Logger;
  /** What heartbeats and reports carry of the partition: nothing when the cluster runs one. */
  private readonly partitionField: { partition?: number };
  /** When the machine found its renew deadline passed and started to check the lease (null: it is not unsure). */
  private unsureSince: number | null = null;

  constructor(private readonly options: ElectionDriverOptions) {
    this.now = options.now ?? (() => performance.now());
    const partition = options.partition;
    this.partitionField = partition !== undefined && partition.count > 1 ? { partition: partition.index } : {};
    this.log = options.logger.child({ component: "election", ...this.partitionField });
    this.fence = new LeaseFence(this.now, options.timings.renewDeadlineMs);
    // Without an outbox (election-only tests), the monitor's commands go nowhere.
    const route = options.outbox ?? routeCommands({ election: (command) => this.execute(command), presence: () => {} });
    const machine = electionMachine.provide({
      actors: {
        outbox: fromCallback<Command>(({ receive }) =>
          receive((command) => {
            options.recorder?.record({ kind: "command", command });
            // A throw here would surface as an uncaught exception on XState's timer.
            try {
              route(command);
            } catch (err) {
              this.log.error("a command failed", { command: command.type, error: describeError(err) });
            }
          }),
        ),
      },
    });
    // Recording wraps the clock, so that replay can fire each timer where it fired live.
    const clock = options.recorder ? recordingClock(options.clock ?? realClock, options.recorder) : options.clock;
    this.actor = createActor(machine, {
      ...(clock ? { clock } : {}),
      ...(options.inspect ? { inspect: options.inspect } : {}),
      input: {
        coordinatorId: options.coordinatorId,
        timings: options.timings,
        random: options.random,
        monitor: options.monitor,
      },
    });
    indexScheduler(this.actor.system);
    this.gate = new HeartbeatGate({
      coordinatorId: options.coordinatorId,
      leaderTimeoutMs: options.timings.leaderTimeoutMs,
      lease: options.lease,
      now: this.now,
      log: this.log,
      epochs: () => this.actor.getSnapshot().context,
      isLeader: () => this.isLeader,
      isRunning: () => this.actor.getSnapshot().status === "active",
      deliver: (hb) =>
        this.send({
          type: "HEARTBEAT",
          coordinatorId: hb.coordinatorId,
          epoch: hb.epoch,
          resigning: hb.resigning === true,
          ...(hb.successor !== undefined ? { successor: hb.successor } : {}),
        }),
    });
    this.actor.subscribe((snapshot) => this.watchLeaseCheck(snapshot.matches({ leader: { lease: "unsure" } })));
  }

  /** Logs when a leader past its renew deadline starts checking its lease, and how the check ended. */
  private watchLeaseCheck(unsure: boolean): void {
    if (unsure === (this.unsureSince !== null)) return;
    const c = this.actor.getSnapshot().context;
    if (unsure) {
      this.unsureSince = this.now();
      this.log.warn("renew deadline passed: publishing nothing until a renewal against the last revision confirms the lease", {
        revision: c.revision,
      });
      return;
    }
    const unsureMs = Math.round(this.now() - this.unsureSince!);
    this.unsureSince = null;
    if (this.isLeader) {
      this.log.info("lease confirmed after the renew deadline had passed: leading on under the same epoch", {
        unsureMs,
        revision: c.revision,
      });
    } else {
      this.log.warn("could not confirm the lease after the renew deadline had passed", { unsureMs });
    }
  }

  /** Delivers an event to the monitor, if this coordinator runs one now. */
  sendToMonitor(event: MonitorEvent): void {
    const monitor = this.actor.system.get("monitor");
    if (monitor === undefined) return;
    this.options.recorder?.record({ kind: "event", target: "monitor", event });
    monitor.send(event);
  }

  /** Balancing: a leader hands its lease to `successor` and follows on; anyone else ignores it. */
  handOver(successor: string): void {
    if (this.isLeader) this.send({ type: "HAND_OVER", successor });
  }

  /** Balancing: the extra wait before this election stands (see standingDelays); sent only when it changes. */
  setStandingDelay(ms: number): void {
    if (this.actor.getSnapshot().context.standingDelayMs !== ms) this.send({ type: "STANDING_DELAY", ms });
  }

  /** The epoch this election knows: its own while leading, else the highest seen. */
  get epoch(): number {
    const c = this.actor.getSnapshot().context;
    return this.isLeader ? c.epoch : c.highestEpoch;
  }

  /** Who leads this election's partition, as far as this coordinator knows: itself while leading, else the one it follows. */
  get leaderId(): string | null {
    return this.isLeader ? this.options.coordinatorId : (this.actor.getSnapshot().context.leader?.coordinatorId ?? null);
  }

  /** True while the election machine is in its leader state. */
  get isLeader(): boolean {
    return this.actor.getSnapshot().matches("leader");
  }

  /** True while the renew deadline of the last successful lease write has not passed. */
  leaseIsValid(): boolean {
    return this.fence.isValid();
  }

  start(): void {
    const partition = this.options.partition;
    this.unsubscribe = this.options.heartbeats.subscribe(
      partition === undefined || partition.count === 1
        ? (hb) => this.gate.hear(hb)
        : (hb) => {
            if (hb.partition === partition.index) this.gate.hear(hb);
          },
    );
    this.options.recorder?.record({ kind: "start" });
    this.actor.start();
  }

  /**
   * Leaves the election: a leader resigns (last heartbeat with `resigning: true`, lease
   * deleted), anyone else just stops. Resolves once the machine has stopped, or after
   * `timeoutMs` at the latest.
   */
  async resign(timeoutMs: number): Promise<void> {
    const done = new Promise<void>((resolve) => {
      const sub = this.actor.subscribe({ complete: () => resolve(), error: () => resolve() });
      if (this.actor.getSnapshot().status !== "active") {
        sub.unsubscribe();
        resolve();
      }
    });
    this.send({ type: "RESIGN" });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const late = await Promise.race([done.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) this.log.warn("resigning did not finish in time; leaving anyway", { timeoutMs });
    this.unsubscribe?.();
    this.stopActor();
  }

  /** Stops at once, without resigning: to the others it is as if the process died. */
  halt(): void {
    this.unsubscribe?.();
    this.fence.close();
    this.stopActor();
  }

  private stopActor(): void {
    this.gate.stop();
    if (this.actor.getSnapshot().status === "active") this.options.recorder?.record({ kind: "stop" });
    this.actor.stop();
  }

  private send(event: ElectionEvent): void {
    if (this.actor.getSnapshot().status !== "active") return;
    this.options.recorder?.record({ kind: "event", target: "election", event });
    this.actor.send(event);
  }

  /** Executes one of the election machine's commands on the lease store, the heartbeat bus or the report sink. */
  execute(command: ElectionCommand): void {
    switch (command.type) {
      case "lease.create":
        return void this.createLease();
      case "lease.renew":
        return void this.renewLease(command.epoch, command.revision);
      case "lease.release":
        return void this.releaseLease(command.epoch, command.revision);
      case "heartbeat.publish":
        return void this.publishHeartbeat(command.epoch, command.resigning, command.successor);
      case "report.publish":
        return void this.publishReport(command.report);
    }
  }

  private async createLease(): Promise<void> {
    const sentAt = this.now();
    try {
      const { epoch, revision } = await this.options.lease.acquire(this.options.coordinatorId);
      this.fence.written(sentAt);
      this.send({ type: "LEASE_CREATED", epoch, revision, latencyMs: this.now() - sentAt });
    } catch (err) {
      if (err instanceof LeaseTakenError) {
        const holder = await this.readHolder();
        // The winner's heartbeats need no further read to be believed.
        if (holder !== null) this.gate.confirm(holder);
        this.send({ type: "LEASE_TAKEN", holder });
      } else {
        this.log.warn("lease create failed", { error: describeError(err) });
        this.send({ type: "LEASE_ERROR", operation: "create", message: describeError(err) });
      }
    }
  }

  private async renewLease(epoch: number, revision: number): Promise<void> {
    const sentAt = this.now();
    const ticket = this.fence.renewing();
    try {
      const next = await this.options.lease.renew({ coordinatorId: this.options.coordinatorId, epoch }, revision);
      if (!this.fence.renewed(ticket, sentAt)) return; // released meanwhile: the release deletes this write too
      this.send({ type: "LEASE_RENEWED", revision: next, latencyMs: this.now() - sentAt });
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.fence.close();
        this.log.warn("lease lost: another coordinator wrote it", { revision });
        this.send({ type: "LEASE_LOST" });
      } else {
        this.log.warn("lease renewal failed", { error: describeError(err) });
        this.send({ type: "LEASE_ERROR", operation: "renew", message: describeError(err) });
      }
    }
  }

  private async releaseLease(epoch: number, revision: number): Promise<void> {
    // From here on this process does not act as leader, whatever the release's outcome.
    this.fence.release();
    try {
      await this.options.lease.release({ coordinatorId: this.options.coordinatorId, epoch }, revision);
      this.send({ type: "LEASE_RELEASED", holder: await this.options.lease.holder() });
    } catch (err) {
      this.log.warn("lease release failed", { error: describeError(err) });
      this.send({ type: "LEASE_ERROR", operation: "release", message: describeError(err) });
    }
  }

  private async readHolder(): Promise<LeaseHolder | null> {
    try {
      return await this.options.lease.holder();
    } catch (err) {
      this.log.warn("could not read the lease holder", { error: describeError(err) });
      return null;
    }
  }

  private publishHeartbeat(epoch: number, resigning: boolean, named?: string): void {
    if (!this.leaseIsValid()) {
      this.log.warn("not publishing a heartbeat: the renew deadline has passed", { epoch, resigning });
      return;
    }
    if (!this.options.isConnected()) {
      // Queued, it would go out after the reconnect, when the lease may belong to another.
      this.log.warn("not connected to NATS: heartbeat not published", { epoch, resigning });
      return;
    }
    const hb: Heartbeat = { coordinatorId: this.options.coordinatorId, epoch, ts: Date.now(), ...this.partitionField };
    if (resigning) {
      hb.resigning = true;
      const successor = named ?? this.options.successor?.();
      if (successor !== undefined) hb.successor = successor;
    }
    this.options.heartbeats.publish(hb);
    if (resigning) this.log.info("published resigning heartbeat", { heartbeatEpoch: epoch, successor: hb.successor ?? "none" });
    else this.log.debug("published heartbeat", { heartbeatEpoch: epoch });
  }

  private publishReport(body: ElectionReportBody): void {
    const fields = {
      report: body.type,
      reason: body.reason,
      ...(body.leaderId !== undefined ? { leaderId: body.leaderId } : {}),
      ...(body.formerEpoch !== undefined ? { formerEpoch: body.formerEpoch } : {}),
    };
    this.options.metrics?.electionTransition(body);
    if (body.state === "leader" && !this.leaseIsValid()) {
      this.log.warn(`${SAY[body.type]}, but the lease is no longer valid: report not published`, fields);
      return;
    }
    this.log.info(SAY[body.type], fields);
    if (!this.options.isConnected()) {
      // A report queued now would arrive after the reconnect, possibly under a newer leader.
      this.log.warn("not connected to NATS: report not published", { report: body.type });
      return;
    }
    this.seq += 1;
    this.options.reports.publish({
      ...body,
      clusterId: this.options.clusterId,
      coordinatorId: this.options.coordinatorId,
      seq: this.seq,
      ts: Date.now(),
      ...this.partitionField,
    });
    this.options.metrics?.reportPublished(body.type);
  }
}
