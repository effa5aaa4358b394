/**
 * watchPresence: the "who is present now" view of a cluster, built from its presence
 * reports (Phoenix Presence's `list` is the model).
 *
 * It subscribes to `presence.report.{cluster}`, decodes each report in the encoding its
 * `Presence-Encoding` header names, and keeps a live map of the clients that are alive or
 * suspect, with `join`, `update` and `leave` events:
 *
 * - a report whose epoch is lower than the highest seen of its partition comes from a stale
 *   leader: dropped (a `stale` event says so). Each partition has its own leader and its own
 *   epochs (a report without `partition` is partition 0), so a report is only ever compared
 *   with reports of its own partition;
 * - a newer epoch of a partition (a new leader of it) keeps the entries: the new leader
 *   reports NodePresent for every client it took over, which updates them;
 * - NodeDead and NodeLeft remove the client (`leave` with reason `dead` or `left`);
 * - an entry no report has refreshed for `expireAfterMs` is removed too (`leave`,
 *   `expired`): every live client gets a NodeState report every state interval (1.5 s by
 *   default), so only a client nobody monitors any more goes quiet that long.
 *
 * The map starts empty and fills as reports arrive: within one state interval it holds
 * every monitored client.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { JsonObject } from "@bufbuild/protobuf";
import { decodeReport, presenceSubjects, REPORT_HEADERS, ReportDecodeError, type Report } from "../protocol/presence.js";
import type { ClientInfo } from "../protocol/query.js";
import { ClientEvents } from "./events.js";

/**
 * An entry not refreshed by any report for this long is removed, in ms (default 15000, ten
 * state intervals of the default 1500 ms). Shorter: a client whose leader vanished leaves
 * the view sooner; too short (below the cluster's state interval) and live clients flap.
 * 0 keeps entries until a report removes them.
 */
export const DEFAULT_EXPIRE_AFTER_MS = 15_000;

/** A client in the view: what the leader's monitor knows of it (as the query service gives it), and where that came from. */
export interface PresenceEntry extends ClientInfo {
  /** Partition, epoch and leader of the latest report about it (`partition` 0 with one partition). */
  partition: number;
  epoch: number;
  coordinatorId: string;
  /** Wall-clock ms when the latest report about it arrived here. */
  updatedAt: number;
}

export type LeaveReason = "dead" | "left" | "expired";

export type PresenceChange =
  | { type: "join"; entry: PresenceEntry; report: Report }
  | { type: "update"; entry: PresenceEntry; previous: PresenceEntry; report: Report }
  | { type: "leave"; subject: string; reason: LeaveReason; entry: PresenceEntry; report: Report | null };

/** The leader of one partition as the reports name it: the one of the highest epoch seen. */
export interface PartitionLeader {
  partition: number;
  epoch: number;
  coordinatorId: string;
}

/** What applying one report did. */
export interface Applied {
  /** False: the report came from a stale epoch of its partition and was dropped. */
  accepted: boolean;
  /** The report named a higher epoch than any before of its partition (a new leader of it). */
  newLeader: boolean;
  /** The report's partition (0 when it names none). */
  partition: number;
  changes: PresenceChange[];
}

function sameMetadata(a: JsonObject, b: JsonObject): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The view itself, without NATS: reports in, changes out. */
export class PresenceView {
  private readonly entries = new Map<string, PresenceEntry>();
  /** Per partition, the highest epoch seen and its leader. */
  private readonly leaders = new Map<number, PartitionLeader>();
  /** The leader of the highest epoch seen over all partitions. */
  private latest: PartitionLeader | null = null;

  /**
   * The highest epoch seen over all partitions (0: none yet). With one partition, that
   * partition's; with more, see epochOf().
   */
  get epoch(): number {
    return this.latest?.epoch ?? 0;
  }

  /** The leader of the highest epoch seen over all partitions (with one partition: its leader). */
  get leader(): string | null {
    return this.latest?.coordinatorId ?? null;
  }

  /** The highest epoch seen of `partition` (0: none yet). */
  epochOf(partition: number): number {
    return this.leaders.get(partition)?.epoch ?? 0;
  }

  /** The leader of the highest epoch seen of `partition` (null: none yet). */
  leaderOf(partition: number): string | null {
    return this.leaders.get(partition)?.coordinatorId ?? null;
  }

  /** Every partition a report has named, with its leader, sorted by partition. */
  partitions(): PartitionLeader[] {
    return [...this.leaders.values()].sort((a, b) => a.partition - b.partition);
  }

  get size(): number {
    return this.entries.size;
  }

  get(subject: string): PresenceEntry | undefined {
    return this.entries.get(subject);
  }

  /** Every present client, sorted by subject; optionally only those in `state`. */
  list(filter: { state?: PresenceEntry["state"] } = {}): PresenceEntry[] {
    const out = [...this.entries.values()].filter((e) => filter.state === undefined || e.state === filter.state);
    return out.sort((a, b) => (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0));
  }

  apply(report: Report, nowMs: number = Date.now()): Applied {
    const partition = report.partition ?? 0;
    const highest = this.epochOf(partition);
    if (report.epoch < highest) return { accepted: false, newLeader: false, partition, changes: [] };
    const newLeader = report.epoch > highest;
    if (newLeader) {
      const leader: PartitionLeader = { partition, epoch: report.epoch, coordinatorId: report.coordinatorId };
      this.leaders.set(partition, leader);
      if (report.epoch > this.epoch) this.latest = leader;
    }
    const subject = report.clientSubject;
    const previous = this.entries.get(subject);
    if (report.type === "NodeDead" || report.type === "NodeLeft" || report.state === "dead" || report.state === "left") {
      if (previous === undefined) return { accepted: true, newLeader, partition, changes: [] };
      this.entries.delete(subject);
      const reason: LeaveReason = report.type === "NodeLeft" || report.state === "left" ? "left" : "dead";
      return { accepted: true, newLeader, partition, changes: [{ type: "leave", subject, reason, entry: previous, report }] };
    }
    const entry: PresenceEntry = {
      subject,
      state: report.state,
      lastSeenMs: report.lastSeenMs,
      rttMs: report.rttMs,
      missedPings: report.missedPings,
      metadata: report.metadata,
      partition,
      epoch: report.epoch,
      coordinatorId: report.coordinatorId,
      updatedAt: nowMs,
    };
    this.entries.set(subject, entry);
    if (previous === undefined) return { accepted: true, newLeader, partition, changes: [{ type: "join", entry, report }] };
    // NodeState refreshes an entry quietly; a change of state, of metadata or a new registration (NodePresent) is an update.
    const changed = previous.state !== entry.state || report.type === "NodePresent" || !sameMetadata(previous.metadata, entry.metadata);
    return { accepted: true, newLeader, partition, changes: changed ? [{ type: "update", entry, previous, report }] : [] };
  }

  /** Removes the entries no report refreshed within `maxAgeMs` of `nowMs`. */
  expire(nowMs: number, maxAgeMs: number): PresenceChange[] {
    const changes: PresenceChange[] = [];
    for (const [subject, entry] of this.entries) {
      if (nowMs - entry.updatedAt < maxAgeMs) continue;
      this.entries.delete(subject);
      changes.push({ type: "leave", subject, reason: "expired", entry, report: null });
    }
    return changes;
  }
}

export interface WatchPresenceOptions {
  /** The coordinators' `--cluster-id`. */
  clusterId: string;
  /** See DEFAULT_EXPIRE_AFTER_MS. */
  expireAfterMs?: number;
}

export type PresenceWatchEvents = {
  join: [{ entry: PresenceEntry; report: Report }];
  update: [{ entry: PresenceEntry; previous: PresenceEntry; report: Report }];
  leave: [{ subject: string; reason: LeaveReason; entry: PresenceEntry; report: Report | null }];
  /** Every report accepted (not stale), after the view was updated. */
  report: [Report];
  /** A report of an epoch lower than the highest seen of its partition (`highestEpoch`), dropped. */
  stale: [{ report: Report; highestEpoch: number; partition: number }];
  /** A report named a new, higher epoch of its partition: a new leader of that partition. */
  leader: [{ coordinatorId: string; epoch: number; partition: number }];
  /** A message on the report subject that could not be decoded (it is skipped). */
  error: [ReportDecodeError];
};

/** A running watch: the live view plus its events. */
export class PresenceWatch extends ClientEvents<PresenceWatchEvents> {
  readonly view = new PresenceView();
  private sub: Subscription | null = null;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  /** Use watchPresence(). */
  constructor(
    private readonly nc: NatsConnection,
    readonly options: WatchPresenceOptions,
  ) {
    super();
  }

  list(filter?: { state?: PresenceEntry["state"] }): PresenceEntry[] {
    return this.view.list(filter);
  }

  get(subject: string): PresenceEntry | undefined {
    return this.view.get(subject);
  }

  get size(): number {
    return this.view.size;
  }

  get epoch(): number {
    return this.view.epoch;
  }

  get leader(): string | null {
    return this.view.leader;
  }

  /** See PresenceView.epochOf(). */
  epochOf(partition: number): number {
    return this.view.epochOf(partition);
  }

  /** See PresenceView.leaderOf(). */
  leaderOf(partition: number): string | null {
    return this.view.leaderOf(partition);
  }

  /** See PresenceView.partitions(). */
  partitions(): PartitionLeader[] {
    return this.view.partitions();
  }

  /** @internal Subscribes; called by watchPresence(). */
  async start(): Promise<void> {
    this.sub = this.nc.subscribe(presenceSubjects.report(this.options.clusterId), {
      callback: (err, msg) => {
        if (err) {
          this.fail(new ReportDecodeError(`presence watch: subscription failed: ${err.message}`, { cause: err }));
          return;
        }
        let report: Report;
        try {
          report = decodeReport(msg.data, msg.headers?.get(REPORT_HEADERS.encoding));
        } catch (e) {
          this.fail(e instanceof ReportDecodeError ? e : new ReportDecodeError(String(e), { cause: e }));
          return;
        }
        this.receive(report);
      },
    });
    await this.nc.flush();
    const maxAge = this.options.expireAfterMs ?? DEFAULT_EXPIRE_AFTER_MS;
    if (maxAge > 0) {
      this.sweeper = setInterval(() => this.publishChanges(this.view.expire(Date.now(), maxAge)), Math.max(50, Math.min(maxAge / 2, 5000)));
      this.sweeper.unref?.();
    }
  }

  /** Feeds one decoded report through the view and emits what changed. */
  receive(report: Report): void {
    const applied = this.view.apply(report);
    const partition = applied.partition;
    if (!applied.accepted) {
      this.emit("stale", { report, highestEpoch: this.view.epochOf(partition), partition });
      return;
    }
    if (applied.newLeader) this.emit("leader", { coordinatorId: report.coordinatorId, epoch: report.epoch, partition });
    this.publishChanges(applied.changes);
    this.emit("report", report);
  }

  private publishChanges(changes: PresenceChange[]): void {
    for (const c of changes) {
      if (c.type === "join") this.emit("join", { entry: c.entry, report: c.report });
      else if (c.type === "update") this.emit("update", { entry: c.entry, previous: c.previous, report: c.report });
      else this.emit("leave", { subject: c.subject, reason: c.reason, entry: c.entry, report: c.report });
    }
  }

  /** Unsubscribes; the view keeps its last contents. The connection stays open. */
  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    const sub = this.sub;
    this.sub = null;
    if (sub && !sub.isClosed()) sub.unsubscribe();
  }
}

/** Subscribes to the cluster's presence reports on `nc` and resolves once the subscription is in place. */
export async function watchPresence(nc: NatsConnection, options: WatchPresenceOptions): Promise<PresenceWatch> {
  const watch = new PresenceWatch(nc, options);
  await watch.start();
  return watch;
}
