/**
 * Registration intake for the presence edge: loads the stored registrations when this
 * coordinator becomes leader, pulls new registrations and unregistrations from the stream
 * while it leads, stores each in the registration bucket and tells the monitor. Only the
 * leader stores: a message handled when the lease is no longer valid is handed back.
 */
import { performance } from "node:perf_hooks";
import type { RegistrationRecord } from "../machines/commands.js";
import type { MonitorEvent } from "../machines/monitor.js";
import { parseRegistration, presenceSubjects, RegistrationError, type Registration } from "../protocol/presence.js";
import { describeError, WarningThrottle, type Logger } from "../observe/logger.js";
import type { MetricsSink } from "../observe/metrics.js";
import { monotonicEpochMs } from "./monotonic-clock.js";
import type { RegistrationFeed } from "./registration-router.js";
import type { RegistrationChange, RegistrationMessage, RegistrationStore, StoredRegistration } from "./registration-store.js";

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
/** How long a message this coordinator may not store now (see RegistrationIntakeOptions.mayStore) waits before it is delivered again. */
export const NOT_MINE_RETRY_DELAY_MS = 100;

export interface RegistrationIntakeOptions {
  store: RegistrationStore;
  clusterId: string;
  /** Registrations of new subjects past this many monitored clients are refused (`--max-clients`). */
  maxClients: number;
  log: Logger;
  /** True while this coordinator may act as leader (its renew deadline has not passed). */
  leaseIsValid: () => boolean;
  /** Delivers an event to the running monitor (dropped when there is none). */
  toMonitor: (event: MonitorEvent) => void;
  /** A client unregistered: its pending ping is forgotten. */
  onUnregistered: (subject: string) => void;
  /** Counts refused registrations; absent, nothing is counted. */
  metrics?: MetricsSink;
  /**
   * When the cluster runs several partitions: the registrations of the one partition this
   * intake serves. It loads them from the feed and follows the feed's changes instead of
   * pulling the stream (the coordinator's own intake pulls and stores; see
   * registration-router.ts).
   */
  feed?: RegistrationFeed;
  /** How many clients count against --max-clients; absent, the ones this intake monitors. */
  monitoredCount?: () => number;
  /** The limit they are held to now; absent, maxClients. */
  clientLimit?: () => number;
  /**
   * Whether this coordinator may store this message now; absent, always. One it may not is
   * handed back, to be delivered again after NOT_MINE_RETRY_DELAY_MS (to whichever
   * coordinator pulls it then). With several partitions a leave is stored only by the leader
   * of the client's partition: stored while the partition has no leader, it would reach no
   * monitor, and the next leader, loading a bucket without the client, would never report
   * NodeLeft.
   */
  mayStore?: (subject: string, leaving: boolean) => boolean;
}

export class RegistrationIntake {
  /** Bumped whenever monitoring stops, so that late answers of an old leadership are dropped. */
  private generation = 0;
  private consumer: { close(): Promise<unknown> } | null = null;
  /** The registration work in flight per subject: messages for one subject run in order. */
  private readonly storing = new Map<string, Promise<void>>();
  /** The subjects this leader monitors (loaded, registered, not dead or left): what --max-clients counts. */
  private readonly monitored = new Set<string>();
  /** Per-registration debug lines are only built when they would be printed. */
  private readonly debug: boolean;
  private readonly log: Logger;
  /** Refused registrations: a flood of garbage or of new subjects past --max-clients logs a few lines, not one per message. */
  private readonly refusals: WarningThrottle;
  private readonly storeFailures: WarningThrottle;
  /** With a feed: the revision of each subject this partition's leader monitors, so that a change it already has is not told twice. */
  private readonly known = new Map<string, number>();
  /** With a feed: changes heard while the load is in flight, applied once it is in (null: applied as they come). */
  private pending: RegistrationChange[] | null = null;
  private unfollow: (() => void) | null = null;

  constructor(private readonly options: RegistrationIntakeOptions) {
    this.log = options.log;
    this.debug = this.log.isDebugEnabled();
    this.refusals = new WarningThrottle(this.log, "more registrations refused (counted, not logged one by one)");
    this.storeFailures = new WarningThrottle(this.log, "more registrations could not be stored (counted, not logged one by one)");
  }

  /** Loads every stored registration and hands it to the monitor (registrations.load). */
  load(): void {
    const feed = this.options.feed;
    if (feed !== undefined) {
      // Followed before the load starts, so that nothing stored meanwhile is missed.
      this.pending = [];
      this.unfollow?.();
      this.unfollow = feed.follow((change) => (this.pending ? this.pending.push(change) : this.apply(change)));
    }
    void this.loadAll(this.generation);
  }

  /** Starts pulling the registration stream (registrations.pull); with a feed, applies its changes from here on. */
  pull(): void {
    if (this.options.feed !== undefined) {
      const pending = this.pending ?? [];
      this.pending = null;
      for (const change of pending) this.apply(change);
      return;
    }
    void this.startPulling(this.generation);
  }

  /** A change of this partition's registrations, stored by whichever coordinator pulled it. */
  private apply(change: RegistrationChange): void {
    if (change.op === "put") {
      const { registration, revision } = change.stored;
      if ((this.known.get(registration.subject) ?? 0) >= revision) return; // loaded already
      this.known.set(registration.subject, revision);
      if (this.debug) this.log.debug("client registered", { subject: registration.subject });
      this.options.toMonitor({ type: "REGISTERED", record: { registration, revision, atMs: monotonicEpochMs() } });
      return;
    }
    // A subject this leader does not monitor (or removed as dead) has nothing to leave.
    if (!this.known.delete(change.subject)) return;
    this.log.debug("client unregistered", { subject: change.subject });
    this.options.onUnregistered(change.subject);
    this.options.toMonitor({ type: "UNREGISTERED", subject: change.subject });
  }

  /** A client is dead (registration.remove): its registration is removed if still the one at `revision`, and it no longer counts against --max-clients. */
  removeDead(subject: string, revision: number): void {
    this.monitored.delete(subject);
    this.known.delete(subject);
    this.options.store
      .remove(subject, revision)
      .catch((err: unknown) => this.log.warn("could not remove a registration", { subject, error: describeError(err) }));
  }

  /** Leadership ended: stops pulling; what is still in flight is handed back, not stored. */
  stop(): void {
    this.generation += 1;
    this.refusals.flush();
    this.storeFailures.flush();
    this.monitored.clear();
    this.known.clear();
    this.pending = null;
    this.unfollow?.();
    this.unfollow = null;
    const consumer = this.consumer;
    this.consumer = null;
    if (consumer) {
      consumer.close().catch((err: unknown) => this.log.debug("closing the registration consumer failed", { error: describeError(err) }));
    }
  }

  private async loadAll(generation: number): Promise<void> {
    const started = performance.now();
    try {
      const feed = this.options.feed;
      const stored: StoredRegistration[] = feed !== undefined ? await feed.load() : await this.options.store.loadAll();
      if (generation !== this.generation) return;
      if (feed !== undefined) for (const s of stored) this.known.set(s.registration.subject, s.revision);
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
      const consumer = await this.options.store.pull((m) => this.onRegistrationMessage(m, generation));
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
    if (this.options.mayStore?.(subject, leaving) === false) {
      m.nak(NOT_MINE_RETRY_DELAY_MS);
      return;
    }
    if (leaving) this.monitored.delete(subject);
    else if (!this.monitored.has(subject)) {
      const monitored = this.options.monitoredCount?.() ?? this.monitored.size;
      const limit = this.options.clientLimit?.() ?? this.options.maxClients;
      if (monitored >= limit) {
        this.refusals.warn("max-clients", "refused a registration", {
          reason: "max-clients",
          subject,
          error:
            this.options.monitoredCount === undefined
              ? `this leader already monitors ${monitored} clients (--max-clients ${this.options.maxClients})`
              : `the cluster already has ${monitored} clients, its limit now (--max-clients ${this.options.maxClients} per live coordinator)`,
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
        this.options.onUnregistered(registration.subject);
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
}
