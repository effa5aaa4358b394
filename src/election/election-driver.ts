/**
 * Runs the election machine against the world: executes its commands on the lease store,
 * the heartbeat bus and the report sink, and feeds the results back as events.
 *
 * It also enforces the lease on its own, independent of the machine's timers: anything
 * published as leader (heartbeats, leader reports) goes out only while the renew deadline,
 * measured on this process's monotonic clock from when the last successful lease write was
 * sent, has not passed. A process that was paused past its lease therefore publishes
 * nothing as leader when it wakes, whatever order its timers fire in.
 */
import { performance } from "node:perf_hooks";
import { createActor, fromCallback, type Actor, type ActorOptions, type ActorRefFrom } from "xstate";
import type { CoordinatorConfig, ElectionTimings } from "../config/config.js";
import type { Command, MonitorCommand } from "../machines/commands.js";
import { electionMachine, type ElectionEvent, type ElectionInput } from "../machines/election.js";
import type { MonitorEvent, MonitorMachine, MonitorSettings } from "../machines/monitor.js";
import type { ElectionReport, ElectionReportBody, Heartbeat, LeaseHolder } from "../protocol/election.js";
import type { ClientInfo } from "../protocol/query.js";
import { createRandom, type RandomSource } from "../machines/random.js";
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
  /** Runs the monitor's and client actors' commands (default: they are dropped, for election-only tests). */
  onMonitorCommand?: (command: MonitorCommand) => void;
  lease: LeaseStore;
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

/** The election machine's input for a coordinator's config: what the driver runs, and what replay rebuilds from a log's header. */
export function electionInputFor(config: CoordinatorConfig): ElectionInput {
  return {
    coordinatorId: config.coordinatorId,
    timings: config,
    random: createRandom(config.seed),
    monitor: {
      pingIntervalMs: config.pingIntervalMs,
      deadTimeoutMs: config.deadTimeoutMs,
      stateIntervalMs: config.stateIntervalMs,
      sweepIntervalMs: config.sweepIntervalMs,
      shardCount: config.shardCount,
    },
  };
}

/** Leaders confirmed against the lease that are remembered (the newest). */
const CONFIRMED_KEPT = 8;
/** Unconfirmed heartbeats (one per leader and epoch) that wait for a lease read at most. */
const WAITING_KEPT = 16;
/** Shortest time between two lease reads for confirmation: a flood of forged heartbeats costs at most this many reads. */
const CONFIRM_SPACING_MS = 50;
/** Refused (coordinator, epoch) pairs that are remembered, so that their heartbeats cost no read. */
const REFUSED_KEPT = 256;
/**
 * How long a resignation is checked against a lease that still names the resigning leader:
 * a leader publishes its last heartbeat first and deletes the lease right after, so the
 * delete may not have landed at the first read. Past this, the resignation is a forgery
 * (or the delete failed, and the lease's expiry does the rest).
 */
const RESIGNATION_GRACE_MS = 500;

const leaderKey = (coordinatorId: string, epoch: number) => `${epoch}\u0000${coordinatorId}`;
/** Resignations wait and are refused apart from the same leader's ordinary heartbeats. */
const resignationKey = (key: string) => `resigning\u0000${key}`;

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
  /** Monotonic time until which this process may act as leader. */
  private leaseValidUntil = Number.NEGATIVE_INFINITY;
  /**
   * Bumped on every release: a renewal that was in flight then cannot make the released
   * lease valid again when its success arrives.
   */
  private leaseGeneration = 0;
  private seq = 0;
  private unsubscribe: (() => void) | null = null;
  private readonly log: Logger;
  /** Leaders (id and epoch) the lease confirmed, oldest first. */
  private readonly confirmed = new Set<string>();
  /** Heartbeats of leaders not confirmed yet, and resignations, waiting for the lease read (with when they were heard). */
  private readonly waiting = new Map<string, { hb: Heartbeat; heardAt: number }>();
  /** The heartbeats (wait keys) the lease read in flight decides: copies heard meanwhile cost no read of their own. */
  private readonly reading = new Set<string>();
  /** Leaders the lease did not confirm, with when: their heartbeats are dropped for a leader timeout. */
  private readonly refused = new Map<string, number>();
  private confirming = false;
  private refusedWarnedAt = Number.NEGATIVE_INFINITY;
  private refusedUnwarned = 0;
  private lastConfirmReadAt = Number.NEGATIVE_INFINITY;
  /** The pause between two lease reads for confirmation, cleared when the driver stops. */
  private confirmPause: NodeJS.Timeout | undefined;
  /** Heartbeats with this coordinator's own id from elsewhere: warned of once per leader timeout. */
  private ownIdWarnedAt = Number.NEGATIVE_INFINITY;
  private ownIdUnwarned = 0;
  /** When the machine found its renew deadline passed and started to check the lease (null: it is not unsure). */
  private unsureSince: number | null = null;

  constructor(private readonly options: ElectionDriverOptions) {
    this.now = options.now ?? (() => performance.now());
    this.log = options.logger.child({ component: "election" });
    const machine = electionMachine.provide({
      actors: {
        outbox: fromCallback<Command>(({ receive }) =>
          receive((command) => {
            options.recorder?.record({ kind: "command", command });
            // A throw here would surface as an uncaught exception on XState's timer.
            try {
              this.execute(command);
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

  /** The epoch this coordinator knows: its own while leading, else the highest seen. */
  get epoch(): number {
    const c = this.actor.getSnapshot().context;
    return this.isLeader ? c.epoch : c.highestEpoch;
  }

  get isLeader(): boolean {
    return this.actor.getSnapshot().matches("leader");
  }

  /** The top-level election state: follower, candidate, leader, steppingDown, resigning or stopped. */
  get role(): string {
    const value = this.actor.getSnapshot().value;
    return typeof value === "string" ? value : (Object.keys(value)[0] ?? "unknown");
  }

  /** The leader this coordinator knows of: itself while leading, else the one it follows; null when it knows none. */
  get knownLeader(): LeaseHolder | null {
    const c = this.actor.getSnapshot().context;
    if (this.isLeader) return { coordinatorId: this.options.coordinatorId, epoch: c.epoch };
    return c.leader;
  }

  /**
   * The clients this coordinator monitors now: their states from the client actors'
   * snapshots, their last replies from the shards' liveness tables (monitor → shards →
   * clients, as the inspector reads them). Empty unless it leads.
   * Reading sends no event: the machines' behaviour is untouched.
   */
  clients(): ClientInfo[] {
    const monitor = this.actor.system.get("monitor") as ActorRefFrom<MonitorMachine> | undefined;
    if (monitor === undefined) return [];
    const out: ClientInfo[] = [];
    for (const shard of monitor.getSnapshot().context.shards) {
      const { clients, liveness } = shard.getSnapshot().context;
      for (const ref of clients.values()) {
        const snap = ref.getSnapshot();
        const c = snap.context;
        if (snap.status !== "active" || (c.state !== "alive" && c.state !== "suspect")) continue;
        // The actor hears only lifecycle changes; the shard's table has the latest reply.
        const l = liveness.get(c.subject) ?? c;
        out.push({
          subject: c.subject,
          state: c.state,
          lastSeenMs: l.lastSeenMs,
          rttMs: l.rttMs,
          missedPings: l.missedPings,
          metadata: c.metadata,
        });
      }
    }
    return out;
  }

  /** True while the renew deadline of the last successful lease write has not passed. */
  leaseIsValid(): boolean {
    return this.now() < this.leaseValidUntil;
  }

  start(): void {
    this.unsubscribe = this.options.heartbeats.subscribe((hb) => this.onHeartbeat(hb));
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
    this.leaseValidUntil = Number.NEGATIVE_INFINITY;
    this.stopActor();
  }

  private stopActor(): void {
    clearTimeout(this.confirmPause);
    if (this.actor.getSnapshot().status === "active") this.options.recorder?.record({ kind: "stop" });
    this.actor.stop();
  }

  /**
   * A heartbeat heard: handed to the machine if its sender is a leader the lease confirmed,
   * dropped if it could change nothing (an epoch older than one already seen), else held
   * until the lease is read. A resignation is always checked against the lease, even from
   * a confirmed leader: anyone could forge one, and every follower would stand for election.
   */
  private onHeartbeat(hb: Heartbeat): void {
    const context = this.actor.getSnapshot().context;
    if (hb.coordinatorId === this.options.coordinatorId) {
      // The machine ignores heartbeats with its own id. One it did not send means another
      // process runs with this --coordinator-id (or a forgery): say so.
      if (hb.epoch !== context.epoch) this.warnOwnId(hb);
      return;
    }
    if (hb.epoch < context.highestEpoch) return; // stale: the machine would ignore it
    const key = leaderKey(hb.coordinatorId, hb.epoch);
    const resigning = hb.resigning === true;
    if (!resigning && this.confirmed.has(key)) {
      this.deliver(hb);
      return;
    }
    const waitKey = resigning ? resignationKey(key) : key;
    const refusedAt = this.refused.get(waitKey);
    if (refusedAt !== undefined && this.now() - refusedAt < this.options.timings.leaderTimeoutMs) return;
    if (this.waiting.has(waitKey) || this.reading.has(waitKey)) return; // already waiting for a read, or being read
    if (this.waiting.size >= WAITING_KEPT) return; // a flood: the real leader heartbeats again
    this.waiting.set(waitKey, { hb, heardAt: this.now() });
    void this.confirmWaiting();
  }

  /** At most one warning per leader timeout, with how many more heartbeats were heard since the last. */
  private warnOwnId(hb: Heartbeat): void {
    const now = this.now();
    if (now - this.ownIdWarnedAt < this.options.timings.leaderTimeoutMs) {
      this.ownIdUnwarned += 1;
      return;
    }
    this.log.warn(
      "heard a heartbeat with this coordinator's own id that this process did not send: is another coordinator running with the same --coordinator-id?",
      {
        heartbeatEpoch: hb.epoch,
        leading: this.isLeader,
        ...(this.ownIdUnwarned > 0 ? { moreHeardSinceLastWarning: this.ownIdUnwarned } : {}),
      },
    );
    this.ownIdWarnedAt = now;
    this.ownIdUnwarned = 0;
  }

  private deliver(hb: Heartbeat): void {
    this.send({ type: "HEARTBEAT", coordinatorId: hb.coordinatorId, epoch: hb.epoch, resigning: hb.resigning === true });
  }

  /** Reads the lease, one read at a time, until no heartbeat waits; delivers those it confirms. */
  private async confirmWaiting(): Promise<void> {
    if (this.confirming) return;
    this.confirming = true;
    try {
      while (this.waiting.size > 0 && this.actor.getSnapshot().status === "active") {
        const wait = this.lastConfirmReadAt + CONFIRM_SPACING_MS - this.now();
        if (wait > 0) {
          await new Promise((resolve) => (this.confirmPause = setTimeout(resolve, wait)));
          if (this.actor.getSnapshot().status !== "active") break;
        }
        this.lastConfirmReadAt = this.now();
        const batch = [...this.waiting];
        this.waiting.clear();
        for (const [waitKey] of batch) this.reading.add(waitKey);
        let holder: LeaseHolder | null;
        try {
          holder = await this.options.lease.holder();
        } catch (err) {
          // Unconfirmed, but not refused either: the next heartbeat tries again.
          this.log.warn("could not read the lease to confirm a new leader's heartbeat", { error: describeError(err) });
          continue;
        } finally {
          this.reading.clear();
        }
        const holderKey = holder === null ? null : leaderKey(holder.coordinatorId, holder.epoch);
        if (holderKey !== null) this.remember(this.confirmed, holderKey, CONFIRMED_KEPT);
        for (const [waitKey, { hb, heardAt }] of batch) {
          const key = leaderKey(hb.coordinatorId, hb.epoch);
          if (hb.resigning === true) {
            // Believed once the lease is gone: standing for election then is right anyway.
            if (holder === null) {
              this.deliver(hb);
              continue;
            }
            // The lease still names the resigning leader: its delete may not have landed yet.
            if (holderKey === key && this.now() - heardAt < RESIGNATION_GRACE_MS) {
              if (!this.waiting.has(waitKey)) this.waiting.set(waitKey, { hb, heardAt });
              continue;
            }
          } else if (this.confirmed.has(key)) {
            this.deliver(hb);
            continue;
          }
          if (this.refused.size >= REFUSED_KEPT) this.refused.clear();
          this.refused.set(waitKey, this.now());
          this.warnRefused(hb, holder);
        }
      }
    } finally {
      this.confirming = false;
    }
  }

  /** One warning per leader timeout at most, with how many more were ignored since the last. */
  private warnRefused(hb: Heartbeat, holder: LeaseHolder | null): void {
    const now = this.now();
    if (now - this.refusedWarnedAt < this.options.timings.leaderTimeoutMs) {
      this.refusedUnwarned += 1;
      return;
    }
    this.log.warn("ignored a heartbeat that the lease does not confirm", {
      heartbeatFrom: hb.coordinatorId,
      heartbeatEpoch: hb.epoch,
      ...(hb.resigning === true ? { resigning: true } : {}),
      leaseHolder: holder === null ? null : `${holder.coordinatorId} (epoch ${holder.epoch})`,
      ...(this.refusedUnwarned > 0 ? { moreIgnoredSinceLastWarning: this.refusedUnwarned } : {}),
    });
    this.refusedWarnedAt = now;
    this.refusedUnwarned = 0;
  }

  /** Adds `key` to a set kept to its `limit` newest entries. */
  private remember(set: Set<string>, key: string, limit: number): void {
    set.delete(key);
    set.add(key);
    if (set.size > limit) set.delete(set.values().next().value!);
  }

  private send(event: ElectionEvent): void {
    if (this.actor.getSnapshot().status !== "active") return;
    this.options.recorder?.record({ kind: "event", target: "election", event });
    this.actor.send(event);
  }

  private execute(command: Command): void {
    switch (command.type) {
      case "registrations.load":
      case "registrations.pull":
      case "monitor.stop":
      case "replies.collect":
      case "clients.ping":
      case "registration.remove":
      case "report.presence":
      case "reports.state":
        return void this.options.onMonitorCommand?.(command);
      case "lease.create":
        return void this.createLease();
      case "lease.renew":
        return void this.renewLease(command.epoch, command.revision);
      case "lease.release":
        return void this.releaseLease(command.epoch, command.revision);
      case "heartbeat.publish":
        return void this.publishHeartbeat(command.epoch, command.resigning);
      case "report.publish":
        return void this.publishReport(command.report);
    }
  }

  private async createLease(): Promise<void> {
    const sentAt = this.now();
    try {
      const { epoch, revision } = await this.options.lease.acquire(this.options.coordinatorId);
      this.leaseValidUntil = sentAt + this.options.timings.renewDeadlineMs;
      this.send({ type: "LEASE_CREATED", epoch, revision, latencyMs: this.now() - sentAt });
    } catch (err) {
      if (err instanceof LeaseTakenError) {
        const holder = await this.readHolder();
        // The winner's heartbeats need no further read to be believed.
        if (holder !== null) this.remember(this.confirmed, leaderKey(holder.coordinatorId, holder.epoch), CONFIRMED_KEPT);
        this.send({ type: "LEASE_TAKEN", holder });
      } else {
        this.log.warn("lease create failed", { error: describeError(err) });
        this.send({ type: "LEASE_ERROR", operation: "create", message: describeError(err) });
      }
    }
  }

  private async renewLease(epoch: number, revision: number): Promise<void> {
    const sentAt = this.now();
    const generation = this.leaseGeneration;
    try {
      const next = await this.options.lease.renew({ coordinatorId: this.options.coordinatorId, epoch }, revision);
      if (generation !== this.leaseGeneration) return; // released meanwhile: the release deletes this write too
      this.leaseValidUntil = sentAt + this.options.timings.renewDeadlineMs;
      this.send({ type: "LEASE_RENEWED", revision: next, latencyMs: this.now() - sentAt });
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.leaseValidUntil = Number.NEGATIVE_INFINITY;
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
    this.leaseValidUntil = Number.NEGATIVE_INFINITY;
    this.leaseGeneration += 1;
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

  private publishHeartbeat(epoch: number, resigning: boolean): void {
    if (!this.leaseIsValid()) {
      this.log.warn("not publishing a heartbeat: the renew deadline has passed", { epoch, resigning });
      return;
    }
    if (!this.options.isConnected()) {
      // Queued, it would go out after the reconnect, when the lease may belong to another.
      this.log.warn("not connected to NATS: heartbeat not published", { epoch, resigning });
      return;
    }
    const hb: Heartbeat = { coordinatorId: this.options.coordinatorId, epoch, ts: Date.now() };
    if (resigning) hb.resigning = true;
    this.options.heartbeats.publish(hb);
    this.log.debug(resigning ? "published resigning heartbeat" : "published heartbeat", { heartbeatEpoch: epoch });
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
    });
    this.options.metrics?.reportPublished(body.type);
  }
}
