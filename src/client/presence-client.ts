/**
 * PresenceClient: what an application embeds to be monitored by a coordinator cluster.
 *
 * On an existing NatsConnection it answers pings on its presence subject, registers with
 * the cluster (`presence.register.{cluster}`), registers again when that may be needed, and
 * unregisters on `close()` (the coordinator then reports `NodeLeft`). It never closes the
 * application's connection.
 *
 * When does it register again?
 * - After its connection reconnects (`reconnect` status): while it was away the leader may
 *   have declared it dead and removed its registration.
 * - After a new leader of its partition appears (a heartbeat on
 *   `coordinator.leader.heartbeat.{cluster}` of its partition with a higher epoch than any
 *   seen of it; a resigning heartbeat is not a new leader), but only if no ping arrives
 *   within `newLeaderGraceMs` of it. A new leader loads every stored
 *   registration and pings each client within a ping interval, so a client that is pinged
 *   is known and needs nothing. Registering again anyway would restart its lifecycle at the
 *   coordinator (another NodePresent, its round-trip and missed pings reset) and write the
 *   registration bucket once per client per failover, for nothing. A client that is not
 *   pinged is one the leader does not know (say, its registration was published before the
 *   registration stream existed): registering again is exactly what it needs. The first
 *   heartbeat the client hears counts as a new leader too, so that case is covered from
 *   the start.
 *
 * Partitions: a cluster run with `--partitions P` has one leader per partition, and a
 * client is monitored by the leader of `partitionOf(subject, P)` only. Given the option
 * `partitions` (P), the client follows its own partition's heartbeats and ignores the rest,
 * so an unrelated partition's failover is nothing to it. Without it, the client follows
 * every partition (at P = 1 that is its own); the ping check above still keeps a client
 * whose leader pings it from registering again, but it then reacts to every partition's
 * new leaders (see LeaderEpochs).
 *
 * Registering is idempotent at the coordinator: one actor per subject, whose lifecycle
 * starts over with NodePresent.
 */
import { Empty, type Msg, type NatsConnection, type Status, type Subscription } from "@nats-io/transport-node";
import type { JsonObject } from "@bufbuild/protobuf";
import { isValidClusterId } from "../protocol/cluster-id.js";
import { parseHeartbeat, subjects, type Heartbeat } from "../protocol/election.js";
import { parseRegistration, presenceSubjects } from "../protocol/presence.js";
import { MAX_PARTITIONS } from "../protocol/partition.js";
import { ClientEvents } from "./events.js";
import { LeaderEpochs } from "./leader-epochs.js";

/**
 * How long after a new leader appears a client waits for its first ping before it registers
 * again, in ms (default 2500). It must exceed the cluster's ping interval (750 ms by
 * default) plus the time a new leader takes to load the stored registrations; longer only
 * delays the repair of a registration the leader never had.
 */
export const DEFAULT_NEW_LEADER_GRACE_MS = 2500;

export interface PresenceClientOptions {
  /** The coordinators' `--cluster-id`. */
  clusterId: string;
  /** The subject this client answers pings on; the coordinator's rules apply (no wildcards, not under `$` or `_INBOX.`, ...). */
  subject: string;
  /** Extra JSON fields sent with the registration; they travel in every report about this client. */
  metadata?: JsonObject;
  /** See DEFAULT_NEW_LEADER_GRACE_MS. */
  newLeaderGraceMs?: number;
  /**
   * The cluster's number of partitions (the coordinators' `--partitions`, 1 to 1024). Given,
   * the client heeds only the heartbeats of its own partition, `partitionOf(subject,
   * partitions)`; a heartbeat that shows another count is reported once as an error
   * (`partitions-mismatch`) and the client then follows every partition. Left out, it
   * follows every partition: right at one partition, and at more it may react to
   * unrelated failovers.
   */
  partitions?: number;
}

export type ReregisterReason = "reconnect" | "new-leader";

/** `new` → `registered` (after start) → `closed`. */
export type PresenceClientStatus = "new" | "starting" | "registered" | "closed";

export type PresenceClientEvents = {
  /** The registration was published and flushed (start()). */
  registered: [{ subject: string; at: number }];
  /** A coordinator pinged this client, and it answered. */
  pinged: [{ at: number }];
  /** Registered again, and why. `epoch` is the client's `epoch` at that moment. */
  reregistered: [{ reason: ReregisterReason; epoch: number; at: number }];
  /**
   * A heartbeat of a partition the client follows named a leader with a higher epoch than
   * any seen before of that partition (`partition` 0 with one partition).
   */
  leader: [{ coordinatorId: string; epoch: number; partition: number }];
  /** close() finished: unregistered and unsubscribed. */
  closed: [];
  error: [PresenceClientError];
};

export type PresenceClientErrorCode =
  | "invalid-options"
  | "already-started"
  | "closed"
  | "connection-closed"
  | "start-failed"
  | "publish-failed"
  | "subscription-failed"
  | "partitions-mismatch";

/** Something the presence client could not do; `code` is stable, `cause` holds the NATS error. */
export class PresenceClientError extends Error {
  override readonly name = "PresenceClientError";
  constructor(
    readonly code: PresenceClientErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`presence client: ${message}`, options);
  }
}

export class PresenceClient extends ClientEvents<PresenceClientEvents> {
  readonly clusterId: string;
  readonly subject: string;
  readonly metadata: JsonObject;
  private readonly registration: Uint8Array;
  private readonly graceMs: number;
  private current: PresenceClientStatus = "new";
  private subs: Subscription[] = [];
  private statusIter: (AsyncIterable<Status> & { stop?: () => void }) | null = null;
  private readonly epochs: LeaderEpochs;
  /** Monotonic times (performance.now) of the last ping and the last registration. */
  private lastPingAt = Number.NEGATIVE_INFINITY;
  private lastRegisteredAt = Number.NEGATIVE_INFINITY;
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private closing: Promise<void> | undefined;

  /**
   * Checks the options at once: a bad cluster id or grace throws a PresenceClientError
   * (`invalid-options`), a subject or metadata the coordinator would refuse throws the
   * coordinator's own RegistrationError (with its `reason`, e.g. `wildcard`).
   */
  constructor(
    private readonly nc: NatsConnection,
    options: PresenceClientOptions,
  ) {
    super();
    if (!isValidClusterId(options.clusterId)) {
      throw new PresenceClientError(
        "invalid-options",
        `clusterId must be 1–64 letters, digits, "-" or "_"; got ${JSON.stringify(options.clusterId)}`,
      );
    }
    const grace = options.newLeaderGraceMs ?? DEFAULT_NEW_LEADER_GRACE_MS;
    if (!Number.isFinite(grace) || grace < 0) {
      throw new PresenceClientError("invalid-options", `newLeaderGraceMs must be a number of ms ≥ 0; got ${grace}`);
    }
    const partitions = options.partitions;
    if (partitions !== undefined && (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS)) {
      throw new PresenceClientError(
        "invalid-options",
        `partitions must be a whole number from 1 to ${MAX_PARTITIONS} (the cluster's --partitions); got ${partitions}`,
      );
    }
    const metadata = options.metadata ?? {};
    if ("myPresenceSubject" in metadata) {
      throw new PresenceClientError("invalid-options", "metadata must not contain myPresenceSubject; pass the subject as `subject`");
    }
    this.registration = new TextEncoder().encode(JSON.stringify({ myPresenceSubject: options.subject, ...metadata }));
    // The coordinator's own parser: whatever it would refuse is refused here, with the same reason.
    parseRegistration(this.registration);
    this.clusterId = options.clusterId;
    this.subject = options.subject;
    this.metadata = metadata;
    this.graceMs = grace;
    this.epochs = new LeaderEpochs(options.subject, partitions);
  }

  get status(): PresenceClientStatus {
    return this.current;
  }

  /**
   * The highest leader epoch this client has heard of its partition (0: none yet); of any
   * partition when it does not know its partition.
   */
  get epoch(): number {
    return this.epochs.epoch;
  }

  /** Its partition, when the `partitions` option gave it (and no heartbeat contradicted it). */
  get partition(): number | undefined {
    return this.epochs.partition;
  }

  /**
   * Subscribes to its presence subject (and to the leader heartbeats), then publishes the
   * registration and flushes, so that it can answer the first ping.
   */
  async start(): Promise<void> {
    if (this.current === "closed") throw new PresenceClientError("closed", "start() after close()");
    if (this.current !== "new") throw new PresenceClientError("already-started", "start() was already called");
    if (this.nc.isClosed()) throw new PresenceClientError("connection-closed", "the NATS connection is closed");
    this.current = "starting";
    try {
      this.subs.push(this.nc.subscribe(this.subject, { callback: (err, msg) => this.onPing(err, msg) }));
      this.subs.push(this.nc.subscribe(subjects.heartbeat(this.clusterId), { callback: (err, msg) => this.onHeartbeat(err, msg) }));
      void this.watchConnection();
      this.nc.publish(presenceSubjects.register(this.clusterId), this.registration);
      this.lastRegisteredAt = performance.now();
      await this.nc.flush();
    } catch (err) {
      this.teardown();
      this.current = "closed";
      throw new PresenceClientError(
        "start-failed",
        `could not register ${this.subject} with cluster ${this.clusterId}: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
    }
    this.current = "registered";
    this.emit("registered", { subject: this.subject, at: Date.now() });
  }

  /**
   * Unregisters (the coordinator reports NodeLeft), stops answering pings and listening.
   * The application's connection stays open. Safe to call more than once.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const wasRegistered = this.current === "registered";
      this.current = "closed";
      clearTimeout(this.graceTimer);
      this.statusIter?.stop?.();
      this.statusIter = null;
      if (wasRegistered && !this.nc.isClosed() && !this.nc.isDraining()) {
        try {
          // Pings are still answered until the unregistration has reached the server.
          this.nc.publish(presenceSubjects.unregister(this.clusterId), this.registration);
          await this.nc.flush();
        } catch (err) {
          this.fail(new PresenceClientError("publish-failed", `could not unregister ${this.subject}: ${messageOf(err)}`, { cause: err }));
        }
      }
      this.teardown();
      this.emit("closed");
    })();
    return this.closing;
  }

  private teardown(): void {
    for (const sub of this.subs) {
      try {
        sub.unsubscribe();
      } catch {
        // Already gone with its connection: nothing left to undo.
      }
    }
    this.subs = [];
    this.statusIter?.stop?.();
    this.statusIter = null;
  }

  private onPing(err: Error | null, msg: Msg): void {
    if (err) {
      this.fail(new PresenceClientError("subscription-failed", `subscription to ${this.subject} failed: ${err.message}`, { cause: err }));
      return;
    }
    if (this.current === "closed") return;
    // Any reply means alive; an empty one is the cheapest.
    if (msg.reply) msg.respond(Empty);
    this.lastPingAt = performance.now();
    this.emit("pinged", { at: Date.now() });
  }

  private onHeartbeat(err: Error | null, msg: Msg): void {
    if (err) {
      this.fail(new PresenceClientError("subscription-failed", `heartbeat subscription failed: ${err.message}`, { cause: err }));
      return;
    }
    let hb: Heartbeat;
    try {
      hb = parseHeartbeat(msg.data);
    } catch {
      return; // a malformed heartbeat is the coordinators' concern (they log it), not this client's
    }
    const verdict = this.epochs.observe(hb);
    if (verdict.mismatch !== null) this.fail(new PresenceClientError("partitions-mismatch", `${this.subject}: ${verdict.mismatch}`));
    if (!verdict.newLeader) return;
    this.emit("leader", { coordinatorId: hb.coordinatorId, epoch: hb.epoch, partition: verdict.partition });
    const seenAt = performance.now();
    clearTimeout(this.graceTimer);
    this.graceTimer = setTimeout(() => {
      // Pinged (or registered again, e.g. after a reconnect) since: the new leader knows this client.
      if (this.lastPingAt >= seenAt || this.lastRegisteredAt >= seenAt) return;
      this.reregister("new-leader");
    }, this.graceMs);
    this.graceTimer.unref?.();
  }

  private async watchConnection(): Promise<void> {
    const iter = this.nc.status() as AsyncIterable<Status> & { stop?: () => void };
    this.statusIter = iter;
    for await (const s of iter) {
      if (this.current === "closed") break;
      if (s.type === "reconnect") this.reregister("reconnect");
    }
  }

  private reregister(reason: ReregisterReason): void {
    if (this.current !== "registered" || this.nc.isClosed()) return;
    try {
      this.nc.publish(presenceSubjects.register(this.clusterId), this.registration);
    } catch (err) {
      this.fail(
        new PresenceClientError("publish-failed", `could not register ${this.subject} again (${reason}): ${messageOf(err)}`, {
          cause: err,
        }),
      );
      return;
    }
    this.lastRegisteredAt = performance.now();
    this.emit("reregistered", { reason, epoch: this.epochs.epoch, at: Date.now() });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
