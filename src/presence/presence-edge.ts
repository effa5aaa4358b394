/**
 * The edge of presence monitoring: executes the monitor's, shards' and client actors'
 * commands and feeds what comes back to the monitor as events. It sends the pings (through
 * the pinger) and answers each sweep with one SWEEP of the replies read since, with any
 * stall credited; registrations go to the intake (registration-intake.ts) and reports to
 * the report publisher (report-publisher.ts).
 *
 * Nothing here publishes unless this coordinator's lease is valid at that very moment.
 */
import { performance } from "node:perf_hooks";
import type { NatsConnection } from "@nats-io/transport-node";
import type { MonitorCommand } from "../machines/commands.js";
import type { ReplyFact } from "../machines/liveness.js";
import type { SweepEvent } from "../machines/shard.js";
import type { MonitorEvent } from "../machines/monitor.js";
import type { ClientReport, ReportEncoding } from "../protocol/presence.js";
import { describeError, type Logger } from "../observe/logger.js";
import type { MetricsSink } from "../observe/metrics.js";
import type { Recorder } from "../observe/record/recorder.js";
import { monotonicEpochMs } from "./monotonic-clock.js";
import { Pinger, type PingConnection, type PingMiss } from "./pinger.js";
import { RegistrationIntake } from "./registration-intake.js";
import type { RegistrationFeed } from "./registration-router.js";
import type { RegistrationStore } from "./registration-store.js";
import { ReportPublisher } from "./report-publisher.js";
import { StallCredit, stallThresholdMs } from "./stall-credit.js";

/**
 * What the edge does with the NATS connection: publish pings and reports, and subscribe to
 * the ping replies (one wildcard subscription, see src/presence/pinger.ts).
 */
export type PresenceConnection = Pick<NatsConnection, "publish"> & Pick<PingConnection, "subscribe">;

export interface PresenceEdgeOptions {
  nc: PresenceConnection;
  clusterId: string;
  coordinatorId: string;
  /** Where registrations are stored, loaded from, and pulled from the stream. */
  store: RegistrationStore;
  /** The monitor's sweep interval: a sweep much later than this follows a stall. */
  sweepIntervalMs: number;
  /** The dead timeout: it sizes how much stall time may be credited (STALL_CREDIT_WINDOW_DEAD_TIMEOUTS). */
  deadTimeoutMs: number;
  /** The ping interval: it sizes how late a sweep must be to count as a stall (stallThresholdMs); absent, the least threshold. */
  pingIntervalMs?: number;
  reportEncoding: ReportEncoding;
  /** The partition this edge monitors, stamped on its reports (see ReportPublisherOptions); absent, 0. */
  partition?: number;
  /** With several partitions: this partition's registrations, loaded and followed instead of pulled (see RegistrationIntakeOptions.feed). */
  feed?: RegistrationFeed;
  logger: Logger;
  /** True while this coordinator may act as leader (its renew deadline has not passed). */
  leaseIsValid: () => boolean;
  /** The epoch this coordinator leads under. */
  epoch: () => number;
  isConnected: () => boolean;
  /**
   * How many times the NATS connection has been lost so far. Pings in flight when it was
   * lost may have died with the server, or their replies did: they prove nothing.
   */
  connectionLosses?: () => number;
  /** Delivers an event to the running monitor (dropped when there is none). */
  toMonitor: (event: MonitorEvent) => void;
  /** Records ping failures, which are not events of the machines (`run --record`). */
  recorder?: Recorder;
  /** `run --metrics-port`: pings, round trips, reports and refused registrations; absent, nothing is counted. */
  metrics?: MetricsSink;
  /** Registrations of new subjects past this many monitored clients are refused (`--max-clients`). */
  maxClients: number;
}

export class PresenceEdge {
  private readonly log: Logger;
  /** Bumped whenever monitoring stops, so that a SWEEP asked for by an old leadership is dropped. */
  private generation = 0;
  private readonly intake: RegistrationIntake;
  private readonly reports: ReportPublisher;
  private readonly stallCredit: StallCredit;
  /**
   * What a turn of the event loop sends waits here until the turn is over, then goes out in
   * this order: the lifecycle reports (a verdict is news), the pings, the NodeStates. Each
   * report is still checked against the lease when it is sent.
   */
  private lifecycle: ClientReport[] = [];
  private pings: { subjects: readonly string[]; keys: readonly number[] }[] = [];
  private states: ClientReport[] = [];
  /** The key of each outgoing NodeState's client, for the encoder (see ReportKeys). */
  private stateKeys: number[] = [];
  private flushScheduled = false;
  /** A sweep later than this follows a stall (see stallThresholdMs). */
  private readonly stallThresholdMs: number;
  /** Per-ping debug lines are only built when they would be printed. */
  private readonly debug: boolean;
  /** Sends the pings and routes their replies; started at the first ping of a leadership, stopped with it. */
  private readonly pinger: Pinger;
  /** The replies read since the last SWEEP, handed over with the next. */
  private replies: ReplyFact[] = [];
  /** When the last SWEEP went out (performance.now()), 0 before the first of a leadership. */
  private lastSweepAt = 0;
  /** `connectionLosses()` as of the last SWEEP. */
  private lossesSeen: number;
  private sweepScheduled = false;
  /** Subjects whose ping a shard asked for but this edge did not send (lease unsure, disconnected): they go back in the next SWEEP. */
  private unsent: string[] = [];

  constructor(private readonly options: PresenceEdgeOptions) {
    this.log = options.logger.child({ component: "monitor" });
    this.debug = this.log.isDebugEnabled();
    this.stallThresholdMs = stallThresholdMs(options.pingIntervalMs);
    this.lossesSeen = options.connectionLosses?.() ?? 0;
    this.stallCredit = new StallCredit(options.deadTimeoutMs, this.log, options.metrics);
    this.pinger = new Pinger({
      nc: options.nc,
      onReply: (subject, rttMs, key) => this.onPong(subject, rttMs, key),
      onMiss: (subject, why) => this.onPingMissed(subject, why),
      onError: (err) => this.log.warn("ping replies cannot be received", { error: describeError(err) }),
    });
    this.intake = new RegistrationIntake({
      store: options.store,
      clusterId: options.clusterId,
      maxClients: options.maxClients,
      log: this.log,
      leaseIsValid: options.leaseIsValid,
      toMonitor: options.toMonitor,
      onUnregistered: (subject) => this.pinger.forget(subject),
      ...(options.metrics ? { metrics: options.metrics } : {}),
      ...(options.feed ? { feed: options.feed } : {}),
    });
    this.reports = new ReportPublisher({
      nc: options.nc,
      clusterId: options.clusterId,
      coordinatorId: options.coordinatorId,
      reportEncoding: options.reportEncoding,
      ...(options.partition !== undefined ? { partition: options.partition } : {}),
      log: this.log,
      leaseIsValid: options.leaseIsValid,
      isConnected: options.isConnected,
      epoch: options.epoch,
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
  }

  /** Clients whose unchanging report fields are cached: the live ones of this leadership. */
  get cachedReportClients(): number {
    return this.reports.cachedClients;
  }

  handle(command: MonitorCommand): void {
    switch (command.type) {
      case "registrations.load":
        return void this.intake.load();
      case "registrations.pull":
        return void this.intake.pull();
      case "monitor.stop":
        return void this.stop();
      case "replies.collect":
        return void this.collectReplies();
      case "clients.ping":
        this.pings.push({ subjects: command.subjects, keys: command.keys });
        return void this.flushSoon();
      case "registration.remove":
        this.pinger.forget(command.subject); // it is dead
        return void this.intake.removeDead(command.subject, command.revision);
      case "report.presence":
        this.lifecycle.push(command.report);
        return void this.flushSoon();
      case "reports.state":
        for (let i = 0; i < command.reports.length; i++) {
          this.states.push(command.reports[i]!);
          this.stateKeys.push(command.keys[i] ?? -1);
        }
        return void this.flushSoon();
    }
  }

  /**
   * Resolves when every registration in flight has been stored and acknowledged (or handed
   * back), or after `timeoutMs`: shutdown waits for it before it drains the connection.
   */
  settled(timeoutMs: number): Promise<void> {
    return this.intake.settled(timeoutMs);
  }

  /**
   * Answers the monitor's sweep with one SWEEP. Node runs due timers before it reads its
   * sockets, so the sweep's timer may fire with replies waiting unread: the SWEEP goes out
   * after this turn's I/O (setImmediate), with every reply read until then. If it goes out
   * far later than one interval after the last, the event loop was stalled: the time it
   * could not observe must not count against any client, so the SWEEP says how long, and the
   * shards move their deadlines and defer their verdicts (Lifeguard's local health awareness).
   * Pings this edge did not send go back too, so that nobody is judged on a ping that never
   * went out; and while no ping can go out (the lease unsure, NATS down), every sweep defers
   * as after a stall, since replies may not come in either.
   */
  private collectReplies(): void {
    if (this.sweepScheduled) return; // one SWEEP answers every ask of this turn
    this.sweepScheduled = true;
    const generation = this.generation;
    setImmediate(() => {
      this.sweepScheduled = false;
      if (generation !== this.generation) return;
      // One clock read for both the stall and the SWEEP's time: a stall that begins between
      // two reads (a SIGSTOP, a GC) would stamp the SWEEP after it while crediting none of it.
      const now = performance.now();
      const atMs = monotonicEpochMs(now);
      const since = this.lastSweepAt === 0 ? 0 : now - this.lastSweepAt;
      const late = since === 0 ? 0 : since - this.options.sweepIntervalMs;
      this.lastSweepAt = now;
      let stalledMs = late > this.stallThresholdMs ? this.stallCredit.credit(now, Math.round(late)) : 0;
      const maySend = this.options.leaseIsValid() && this.options.isConnected();
      if (maySend) {
        this.reports.resume();
      }
      if (stalledMs === 0 && !maySend) {
        // No ping can go out now (the lease is unsure, or NATS is down), and replies may not
        // come in: this time cannot be observed either. Nobody is judged or pinged, within
        // the same cap as a stall's.
        stalledMs = this.stallCredit.grant(now, Math.max(1, Math.round(since === 0 ? this.options.sweepIntervalMs : since)));
      }
      const losses = this.options.connectionLosses?.() ?? 0;
      if (losses !== this.lossesSeen) {
        // The connection was lost since the last sweep: the pings still unanswered may have
        // died with it, or their replies did. They go back to the shards, to be sent again,
        // rather than count as missed (a leader's own outage says nothing of its clients).
        this.lossesSeen = losses;
        const lost = this.pinger.abandonOutstanding();
        for (const subject of lost) this.unsent.push(subject);
        if (lost.length > 0)
          this.log.info(`the NATS connection was lost: ${lost.length} unanswered pings are sent again`, { pings: lost.length });
      }
      const replies = this.replies;
      this.replies = [];
      const event: SweepEvent = { type: "SWEEP", atMs, stalledMs, replies };
      if (this.unsent.length > 0) {
        event.unsent = this.unsent;
        this.unsent = [];
      }
      this.options.toMonitor(event);
    });
  }

  private stop(): void {
    this.generation += 1;
    this.pinger.stop(); // replies to this leadership's pings are dropped from here on
    this.replies = [];
    this.unsent = [];
    this.lastSweepAt = 0;
    this.reports.stop();
    this.intake.stop();
    this.stallCredit.reset();
  }

  /**
   * Sends what this turn produced once the machines are done with it: in a microtask, so that
   * a sweep's verdicts go out in the sweep's own turn, not a turn of the event loop later (a
   * busy leader's turns are tens of ms apart). The verdicts go first: a sweep of 50,000
   * clients also sends thousands of pings and NodeStates, and a NodeDead that waited behind
   * them would be late by that much.
   */
  private flushSoon(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      const lifecycle = this.lifecycle;
      const pings = this.pings;
      const states = this.states;
      const keys = this.stateKeys;
      this.lifecycle = [];
      this.pings = [];
      this.states = [];
      this.stateKeys = [];
      if (lifecycle.length > 0) this.reports.publish(lifecycle, []);
      for (const p of pings) this.pingAll(p.subjects, p.keys);
      if (states.length > 0) this.reports.publish(states, keys);
    });
  }

  /**
   * One shard sweep's pings, each published at once (the client library writes them out
   * together). Each goes on its client's key as the pinger's slot, so its reply comes back
   * with the key.
   */
  private pingAll(subjects: readonly string[], keys: readonly number[]): void {
    if (!this.options.leaseIsValid() || !this.options.isConnected()) {
      for (const subject of subjects) this.unsent.push(subject);
      return;
    }
    this.pinger.start();
    let sent = 0;
    for (let i = 0; i < subjects.length; i++) {
      const subject = subjects[i]!;
      try {
        this.pinger.ping(subject, keys[i]!);
        sent += 1;
      } catch (err) {
        this.unsent.push(subject);
        this.log.debug("could not send a ping", { subject, error: describeError(err) });
      }
    }
    this.options.metrics?.pingSent(sent);
  }

  private onPong(subject: string, rttMs: number, key: number): void {
    this.options.metrics?.pingReplied(rttMs);
    this.replies.push({ subject, key, atMs: monotonicEpochMs(), rttMs: Math.round(rttMs * 100) / 100 });
  }

  /** Superseded before a reply came, or no responders: counted and recorded; the shard's sweep judges the miss. */
  private onPingMissed(subject: string, why: PingMiss): void {
    this.options.metrics?.pingFailed();
    this.options.recorder?.record({ kind: "info", what: "ping-failed", subject, error: why });
    if (this.debug) this.log.debug("ping got no reply", { subject, error: why });
  }
}
