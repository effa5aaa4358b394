/**
 * The edge of presence monitoring: executes the monitor's, shards' and client actors'
 * commands (load and pull registrations, ping clients, remove registrations, publish
 * reports) and feeds what comes back (stored registrations, and the ping replies as one
 * SWEEP per sweep) to the monitor as events.
 *
 * Nothing here publishes unless this coordinator's lease is valid at that very moment.
 */
import { performance } from "node:perf_hooks";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import type { MonitorCommand, RegistrationRecord } from "../machines/commands.js";
import type { ReplyFact } from "../machines/liveness.js";
import type { SweepEvent } from "../machines/shard.js";
import type { MonitorEvent } from "../machines/monitor.js";
import {
  parseRegistration,
  presenceSubjects,
  REPORT_HEADERS,
  REPORT_SCHEMA,
  RegistrationError,
  type ClientReport,
  type Registration,
  type ReportEncoding,
} from "../protocol/presence.js";
import { createReportEncoder, type ReportEncoder, type ReportKeys } from "../protocol/report-encoder.js";
import { describeError, WarningThrottle, type Logger } from "../observe/logger.js";
import { fixedHeaders } from "./fixed-headers.js";
import type { RegistrationStore } from "./registration-store.js";
import type { MetricsSink } from "../observe/metrics.js";
import { Pinger, type PingConnection, type PingMiss } from "./pinger.js";
import type { Recorder } from "../observe/record/recorder.js";

/**
 * A registration or unregistration message pulled from the registration stream: what the
 * edge uses of a JetStream message (`JsMsg` is one).
 */
export interface RegistrationMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  ack(): void;
  /** Hands it back for redelivery, after `millis` if given. */
  nak(millis?: number): void;
}

/** The registration stream's durable consumer, which only the leader pulls. */
export interface RegistrationFeed {
  /** Starts pulling; every message goes to `handle`. Resolves to the pull, which `close()` ends. */
  pull(handle: (m: RegistrationMessage) => Promise<void>): Promise<{ close(): Promise<unknown> }>;
}

/**
 * What the edge does with the NATS connection: publish pings and reports, and subscribe to
 * the ping replies (one wildcard subscription, see src/presence/pinger.ts).
 */
export type PresenceConnection = Pick<NatsConnection, "publish"> & Pick<PingConnection, "subscribe">;

export interface PresenceEdgeOptions {
  nc: PresenceConnection;
  /** Where registrations come from (`pullRegistrations` on the stream). */
  feed: RegistrationFeed;
  clusterId: string;
  coordinatorId: string;
  store: RegistrationStore;
  /** The monitor's sweep interval: a sweep much later than this follows a stall. */
  sweepIntervalMs: number;
  /** The dead timeout: it sizes how much stall time may be credited (STALL_CREDIT_WINDOW_DEAD_TIMEOUTS). */
  deadTimeoutMs: number;
  /** The ping interval: it sizes how late a sweep must be to count as a stall (stallThresholdMs); absent, the least threshold. */
  pingIntervalMs?: number;
  reportEncoding: ReportEncoding;
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

/**
 * Stored registrations handed to the monitor per event when a new leader loads them: a
 * chunk spawns its client actors (about 70 ms for 2,000), then the event loop gets a turn, so
 * that lease renewals and their answers are not held up past the renew deadline. Chunks of
 * 2,000 took over 49,980 stored clients in 4.6–5.2 s, chunks of 500 in 5.2–6.3 s, when every
 * turn between chunks also swept and pinged the clients loaded so far; now the clients of a
 * chunk wait for the last one before they are pinged (LivenessTable.register, `held`).
 */
const LOAD_CHUNK = 2000;
/** How long a registration that could not be stored waits before it is delivered again. */
const STORE_RETRY_DELAY_MS = 1000;
/**
 * A sweep asked for more than `stallThresholdMs` after it was due follows an event-loop
 * stall, and defers its verdicts (LivenessTable.sweep): while the loop stood still, pings
 * that were due did not go out, and replies piled up unread. A shorter one needs no credit.
 * The SWEEP is delivered after the socket was read, so the replies that came meanwhile are
 * applied before anyone is judged; and a ping that went out late has its full ping interval
 * from when it went out. What such a stall costs a client is its next ping being that much
 * later, far inside its dead timeout. So the threshold is a third of the ping interval (a
 * late ping still leaves two thirds of the interval for its reply), between 100 and 250 ms:
 * a busy leader at 50,000 clients is often 100–250 ms late, and crediting that moved every
 * deadline, delaying verdicts and pings for nothing.
 */
export const STALL_THRESHOLD_MS = 100;
const STALL_THRESHOLD_MAX_MS = 250;
export function stallThresholdMs(pingIntervalMs: number | undefined): number {
  if (pingIntervalMs === undefined) return STALL_THRESHOLD_MS;
  return Math.min(STALL_THRESHOLD_MAX_MS, Math.max(STALL_THRESHOLD_MS, Math.round(pingIntervalMs / 3)));
}
/**
 * Stall credit is capped, as Lifeguard caps its timeout multiplier: within any window of
 * 6 × the dead timeout, at most half of it is credited. One stall of twice the dead timeout
 * is forgiven in full, with room for the short stalls around it; a leader that is late on
 * every sweep still judges, with its clocks at no less than half speed (NodeDead within
 * about twice the dead timeout).
 */
const STALL_CREDIT_WINDOW_DEAD_TIMEOUTS = 6;
/**
 * Stalls of this many ms or more are warnings: long enough that a leader without stall
 * credit would have called answering clients suspect. Shorter ones (a GC pause on a busy
 * machine) are logged at info.
 */
export const STALL_WARN_MS = 1000;

/**
 * Epoch milliseconds on a monotonic clock: the wall clock at process start plus monotonic
 * time since. Every time the machines judge by comes from here, so a step of the system
 * clock (NTP, a resumed VM) neither kills every client nor delays every verdict.
 */
const monotonicEpochMs = (now = performance.now()): number => Math.round(performance.timeOrigin + now);

export class PresenceEdge {
  private readonly log: Logger;
  /** Bumped whenever monitoring stops, so that late answers of an old leadership are dropped. */
  private generation = 0;
  private consumer: { close(): Promise<unknown> } | null = null;
  private seq = 0;
  private seqEpoch = 0;
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
  /** The registration work in flight per subject: messages for one subject run in order. */
  private readonly storing = new Map<string, Promise<void>>();
  /** The subjects this leader monitors (loaded, registered, not dead or left): what --max-clients counts. */
  private readonly monitored = new Set<string>();
  /** Built once: every report goes to the same subject with the same headers. */
  private readonly reportSubject: string;
  private readonly reportHeaders: MsgHdrs;
  /** A sweep later than this follows a stall (see stallThresholdMs). */
  private readonly stallThresholdMs: number;
  /** Keeps each live client's unchanging report fields encoded: a report encodes only what changed. */
  private readonly reportEncoder: ReportEncoder;
  /** Per-ping and per-NodeState debug lines are only built when they would be printed. */
  private readonly debug: boolean;
  /** Refused registrations: a flood of garbage or of new subjects past --max-clients logs a few lines, not one per message. */
  private readonly refusals: WarningThrottle;
  private readonly storeFailures: WarningThrottle;
  /** Sends the pings and routes their replies; started at the first ping of a leadership, stopped with it. */
  private readonly pinger: Pinger;
  /** The replies read since the last SWEEP, handed over with the next. */
  private replies: ReplyFact[] = [];
  /** When the last SWEEP went out (performance.now()), 0 before the first of a leadership. */
  private lastSweepAt = 0;
  /** `connectionLosses()` as of the last SWEEP. */
  private lossesSeen: number;
  private sweepScheduled = false;
  /** Stall time credited lately: when, and how much (see STALL_CREDIT_WINDOW_DEAD_TIMEOUTS). */
  private credits: { at: number; ms: number }[] = [];
  /** Subjects whose ping a shard asked for but this edge did not send (lease unsure, disconnected): they go back in the next SWEEP. */
  private unsent: string[] = [];
  private readonly stalls: WarningThrottle;
  private readonly shortStalls: WarningThrottle;

  constructor(private readonly options: PresenceEdgeOptions) {
    this.log = options.logger.child({ component: "monitor" });
    this.debug = this.log.isDebugEnabled();
    this.refusals = new WarningThrottle(this.log, "more registrations refused (counted, not logged one by one)");
    this.storeFailures = new WarningThrottle(this.log, "more registrations could not be stored (counted, not logged one by one)");
    this.stalls = new WarningThrottle(this.log, "more event-loop stalls deferred verdicts (counted, not logged one by one)");
    this.shortStalls = new WarningThrottle(
      this.log,
      "more short event-loop stalls deferred verdicts (counted, not logged one by one)",
      10_000,
      "info",
    );
    this.reportSubject = presenceSubjects.report(options.clusterId);
    this.stallThresholdMs = stallThresholdMs(options.pingIntervalMs);
    this.lossesSeen = options.connectionLosses?.() ?? 0;
    this.reportHeaders = fixedHeaders({ [REPORT_HEADERS.encoding]: options.reportEncoding, [REPORT_HEADERS.schema]: REPORT_SCHEMA });
    this.reportEncoder = createReportEncoder(options.reportEncoding, options.clusterId, options.coordinatorId);
    this.pinger = new Pinger({
      nc: options.nc,
      onReply: (subject, rttMs, key) => this.onPong(subject, rttMs, key),
      onMiss: (subject, why) => this.onPingMissed(subject, why),
      onError: (err) => this.log.warn("ping replies cannot be received", { error: describeError(err) }),
    });
  }

  /** Clients whose unchanging report fields are cached: the live ones of this leadership. */
  get cachedReportClients(): number {
    return this.reportEncoder.cachedClients;
  }

  handle(command: MonitorCommand): void {
    switch (command.type) {
      case "registrations.load":
        return void this.load(this.generation);
      case "registrations.pull":
        return void this.startPulling(this.generation);
      case "monitor.stop":
        return void this.stop();
      case "replies.collect":
        return void this.collectReplies();
      case "clients.ping":
        this.pings.push({ subjects: command.subjects, keys: command.keys });
        return void this.flushSoon();
      case "registration.remove":
        this.monitored.delete(command.subject); // it is dead
        this.pinger.forget(command.subject);
        return void this.options.store
          .remove(command.subject, command.revision)
          .catch((err: unknown) =>
            this.log.warn("could not remove a registration", { subject: command.subject, error: describeError(err) }),
          );
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
      let stalledMs = late > this.stallThresholdMs ? this.credit(now, Math.round(late)) : 0;
      const maySend = this.options.leaseIsValid() && this.options.isConnected();
      if (maySend) {
        this.endWithholding();
        this.publishHeld();
      }
      if (stalledMs === 0 && !maySend) {
        // No ping can go out now (the lease is unsure, or NATS is down), and replies may not
        // come in: this time cannot be observed either. Nobody is judged or pinged, within
        // the same cap as a stall's.
        stalledMs = this.grant(now, Math.max(1, Math.round(since === 0 ? this.options.sweepIntervalMs : since)));
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

  /** The part of a stall that is credited (see STALL_CREDIT_WINDOW_DEAD_TIMEOUTS); logs and counts it. */
  private credit(now: number, stallMs: number): number {
    const granted = this.grant(now, stallMs);
    if (granted > 0) {
      (stallMs >= STALL_WARN_MS ? this.stalls : this.shortStalls).warn("stall", `event loop stalled ${stallMs} ms; verdicts deferred`, {
        stalledMs: stallMs,
        creditedMs: granted,
      });
      this.options.metrics?.sweepStalled(granted);
    } else {
      this.stalls.warn("stall-uncredited", `event loop stalled ${stallMs} ms; stall credit used up, verdicts not deferred`, {
        stalledMs: stallMs,
      });
    }
    return granted;
  }

  /** How much of `ms` unobserved time is credited now, within the cap; it is booked. */
  private grant(now: number, ms: number): number {
    const window = STALL_CREDIT_WINDOW_DEAD_TIMEOUTS * this.options.deadTimeoutMs;
    while (this.credits.length > 0 && this.credits[0]!.at < now - window) this.credits.shift();
    const used = this.credits.reduce((sum, c) => sum + c.ms, 0);
    const granted = Math.max(0, Math.min(ms, Math.floor(window / 2 - used)));
    if (granted > 0) this.credits.push({ at: now, ms: granted });
    return granted;
  }

  private async load(generation: number): Promise<void> {
    const started = performance.now();
    try {
      const stored = await this.options.store.loadAll();
      if (generation !== this.generation) return;
      // Every stored client was accepted once: all are monitored, even past --max-clients.
      for (const s of stored) this.monitored.add(s.registration.subject);
      this.log.info("loaded stored registrations", { clients: stored.length, ms: Math.round(performance.now() - started) });
      // Spawning a client actor takes 30–35 µs: handed over at once, 50,000 stored clients
      // would hold the event loop for seconds, past the lease's renew deadline.
      // In chunks, with a turn of the event loop between them, renewals and heartbeats go on.
      // Each chunk is stamped when it is handed over. The clients of all but the last are held
      // until the last is in, and start then: a client's time starts when it is monitored.
      const chunk = (from: number, to: number): RegistrationRecord[] => {
        const atMs = monotonicEpochMs();
        return stored.slice(from, to).map((s) => ({ registration: s.registration, revision: s.revision, atMs }));
      };
      let from = 0;
      for (; from + LOAD_CHUNK < stored.length; from += LOAD_CHUNK) {
        this.options.toMonitor({ type: "REGISTRATIONS_CHUNK", records: chunk(from, from + LOAD_CHUNK) });
        await new Promise((resolve) => setImmediate(resolve));
        if (generation !== this.generation) return;
      }
      this.options.toMonitor({ type: "REGISTRATIONS_LOADED", records: chunk(from, stored.length) });
    } catch (err) {
      this.log.error("could not load the stored registrations; monitoring starts empty", { error: describeError(err) });
      if (generation === this.generation) this.options.toMonitor({ type: "REGISTRATIONS_LOADED", records: [] });
    }
  }

  private async startPulling(generation: number): Promise<void> {
    try {
      const consumer = await this.options.feed.pull((m) => this.onRegistrationMessage(m, generation));
      if (generation !== this.generation) {
        await consumer.close();
        return;
      }
      this.consumer = consumer;
      this.log.debug("pulling registrations");
    } catch (err) {
      this.log.error("could not pull registrations", { error: describeError(err) });
    }
  }

  private stop(): void {
    this.generation += 1;
    this.pinger.stop(); // replies to this leadership's pings are dropped from here on
    this.replies = [];
    this.unsent = [];
    this.credits = [];
    this.lastSweepAt = 0;
    if (this.held.length > 0) {
      this.log.info(`dropping ${this.held.length} held reports: leadership ended before they could be published`, {
        count: this.held.length,
      });
      this.held = [];
    }
    this.endWithholding();
    this.refusals.flush();
    this.storeFailures.flush();
    this.stalls.flush();
    this.shortStalls.flush();
    this.monitored.clear();
    this.reportEncoder.clear();
    const consumer = this.consumer;
    this.consumer = null;
    if (consumer) {
      consumer.close().catch((err: unknown) => this.log.debug("closing the registration consumer failed", { error: describeError(err) }));
    }
  }

  private async onRegistrationMessage(m: RegistrationMessage, generation: number): Promise<void> {
    if (generation !== this.generation) {
      m.nak(); // leadership ended: the next leader gets it
      return;
    }
    const leaving = m.subject === presenceSubjects.unregister(this.options.clusterId);
    let registration: Registration;
    try {
      registration = parseRegistration(m.data);
    } catch (err) {
      if (!(err instanceof RegistrationError)) throw err;
      this.refusals.warn(err.reason, leaving ? "refused an unregistration" : "refused a registration", {
        reason: err.reason,
        error: err.message,
      });
      this.options.metrics?.registrationError(err.reason);
      m.ack(); // refused for good: never delivered again
      return;
    }
    const subject = registration.subject;
    if (leaving) this.monitored.delete(subject);
    else if (!this.monitored.has(subject)) {
      if (this.monitored.size >= this.options.maxClients) {
        this.refusals.warn("max-clients", "refused a registration", {
          reason: "max-clients",
          subject,
          error: `this leader already monitors ${this.monitored.size} clients (--max-clients ${this.options.maxClients})`,
        });
        this.options.metrics?.registrationError("max-clients");
        m.ack(); // refused for good, as any refused registration: the client may register again later
        return;
      }
      this.monitored.add(subject);
    }
    // Registrations of different subjects are stored concurrently (the pull loop bounds how
    // many); those of one subject one after the other, so that a leave is never overtaken.
    const previous = this.storing.get(subject);
    const work = (previous ?? Promise.resolve()).then(() => this.store(m, registration, leaving, generation));
    this.storing.set(subject, work);
    await work;
    if (this.storing.get(subject) === work) this.storing.delete(subject);
  }

  /**
   * Stores one registration or leave in the KV bucket, then acknowledges it on the stream.
   * If the leadership ended while the write was in flight, or the lease is no longer valid
   * (a process paused past its renew deadline may see the write's answer before the timer
   * that ends its leadership), the message is not acknowledged but handed back (nak): the
   * next leader may have loaded the bucket before this write landed, and only the message
   * brings the change to it. Doing it twice is harmless.
   */
  private async store(m: RegistrationMessage, registration: Registration, leaving: boolean, generation: number): Promise<void> {
    try {
      if (leaving) {
        await this.options.store.remove(registration.subject);
        if (!this.stillLeading(generation)) return m.nak();
        m.ack();
        this.log.debug("client unregistered", { subject: registration.subject });
        this.pinger.forget(registration.subject);
        this.options.toMonitor({ type: "UNREGISTERED", subject: registration.subject });
      } else {
        const revision = await this.options.store.put(registration);
        if (!this.stillLeading(generation)) return m.nak();
        m.ack();
        if (this.debug) this.log.debug("client registered", { subject: registration.subject });
        const record: RegistrationRecord = { registration, revision, atMs: monotonicEpochMs() };
        this.options.toMonitor({ type: "REGISTERED", record });
      }
    } catch (err) {
      this.storeFailures.warn("store-failed", "could not store a registration; it will be delivered again", {
        subject: registration.subject,
        error: describeError(err),
      });
      this.options.metrics?.registrationError("store-failed");
      m.nak(STORE_RETRY_DELAY_MS); // not at once: a bucket that cannot be written now would be asked again and again
    }
  }

  private stillLeading(generation: number): boolean {
    return generation === this.generation && this.options.leaseIsValid();
  }

  /**
   * Resolves when every registration in flight has been stored and acknowledged (or handed
   * back), or after `timeoutMs`: shutdown waits for it before it drains the connection, so
   * that the next leader gets what was in flight at once, not after an ack wait.
   */
  async settled(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.storing.values()]),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
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
      if (lifecycle.length > 0) this.publish(lifecycle, []);
      for (const p of pings) this.pingAll(p.subjects, p.keys);
      if (states.length > 0) this.publish(states, keys);
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

  /**
   * Reports not published because the lease was not valid or the connection was down: the
   * first of a run is logged as a warning, the rest only counted (with 50,000 clients they
   * come by the thousand), and the count is logged when publishing works again.
   */
  private withheld: { reason: string; count: number } | null = null;

  private withhold(reason: string, body: ClientReport): void {
    if (this.withheld?.reason === reason) {
      this.withheld.count += 1;
      return;
    }
    this.endWithholding();
    this.withheld = { reason, count: 1 };
    this.log.warn(`not publishing presence reports: ${reason}`, { report: body.type, subject: body.clientSubject });
  }

  private endWithholding(): void {
    if (this.withheld === null) return;
    const { reason, count } = this.withheld;
    this.withheld = null;
    this.log.info(`presence reports withheld: ${count}`, { reason, count });
  }

  /**
   * Lifecycle reports (everything but NodeState) that could not be published because the
   * lease was unsure or NATS was down. If this leadership goes on (its lease check succeeded,
   * the connection came back in time), they are published in order before anything newer:
   * a NodePresent or NodeDead must not be lost to a short stall. If it ends, they are dropped
   * with it (monitor.stop): another leader reports under its own epoch. A NodeState that
   * could not go out is only counted; the next comes within a state interval.
   */
  private held: ClientReport[] = [];

  /** Why nothing may be published now, or null when it may. */
  private publishBlocked(): string | null {
    return !this.options.leaseIsValid() ? "the lease is no longer valid" : !this.options.isConnected() ? "not connected to NATS" : null;
  }

  /**
   * Publishes a turn's reports, in order, each still checked against the lease when it is
   * sent; those that may not go out are withheld (a lifecycle report is held).
   */
  private publish(bodies: ClientReport[], keys: ReportKeys): void {
    const why = this.publishBlocked();
    if (why !== null) {
      this.withholdAll(why, bodies, 0);
      return;
    }
    this.endWithholding();
    this.publishHeld();
    this.emit(bodies, keys);
  }

  /** Withholds `bodies` from `from` on: counted, and a lifecycle report held. */
  private withholdAll(why: string, bodies: readonly ClientReport[], from: number): void {
    for (let i = from; i < bodies.length; i++) {
      const body = bodies[i]!;
      this.withhold(why, body);
      if (body.type !== "NodeState") this.held.push(body);
    }
  }

  /** Publishes the held lifecycle reports, oldest first (the lease was just found valid). */
  private publishHeld(): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    this.log.info(`publishing ${held.length} reports held while they could not be published`, { count: held.length });
    this.emit(held);
  }

  /**
   * Numbers, encodes (as one batch) and publishes reports, in order. The lease is checked
   * again before each report: one that runs out in the middle of a batch stops it there,
   * and the rest are withheld, with no seq taken (they are encoded afresh if published later).
   */
  private emit(bodies: readonly ClientReport[], keys?: ReportKeys): void {
    if (bodies.length === 0) return;
    const epoch = this.options.epoch();
    if (epoch !== this.seqEpoch) {
      this.seqEpoch = epoch;
      this.seq = 0;
    }
    let payloads: Uint8Array[];
    try {
      payloads = this.reportEncoder.encodeAll(bodies, epoch, this.seq + 1, Date.now(), keys);
    } catch (err) {
      // A report that cannot be encoded must not take the others with it: one by one. It
      // takes its seq, as a report that could not be published.
      if (bodies.length > 1) for (const body of bodies) this.emit([body]);
      else {
        this.seq += 1;
        this.log.warn("could not encode a presence report", {
          report: bodies[0]!.type,
          subject: bodies[0]!.clientSubject,
          error: describeError(err),
        });
      }
      return;
    }
    for (let i = 0; i < bodies.length; i++) {
      const why = this.publishBlocked();
      if (why !== null) {
        this.withholdAll(why, bodies, i);
        return;
      }
      this.published(bodies[i]!, payloads[i]!);
    }
  }

  /** Takes the report's seq, publishes its payload and logs it. */
  private published(body: ClientReport, payload: Uint8Array): void {
    this.seq += 1;
    // Changes of liveness are what an operator wants in the log; NodePresent (a takeover
    // brings one per client) and NodeState (one per client every interval) only with debug.
    const routine = body.type === "NodeState" || body.type === "NodePresent";
    if (!routine || this.debug) {
      const fields = { report: body.type, subject: body.clientSubject, state: body.state };
      this.log.log(routine ? "debug" : "info", `${body.type} ${body.clientSubject}`, fields);
    }
    try {
      this.options.nc.publish(this.reportSubject, payload, { headers: this.reportHeaders });
      this.options.metrics?.reportPublished(body.type);
    } catch (err) {
      this.log.warn("could not publish a presence report", { report: body.type, error: describeError(err) });
    }
    // A dead or departed client gets no more reports; registering again brings a NodePresent.
    if (body.type === "NodeDead" || body.type === "NodeLeft") this.reportEncoder.forget(body.clientSubject);
  }
}
