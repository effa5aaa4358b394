/**
 * The capacity run's observer: its own NATS connection counts every presence report by
 * type, with the first NodePresent and NodeDead of each client, and keeps the latest leader
 * heartbeats (who leads, and since when) and the bare pinger's state messages.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeReport, REPORT_HEADERS, type ReportType } from "../../src/protocol/presence.js";
import type { HeardHeartbeat } from "../../harness/capacity-judge.js";
import { bareStateSubject } from "../bare-pinger.js";

/** Heartbeats the observer keeps: a minute's worth at the default interval, more than the settling window. */
const HEARTBEATS_KEPT = 64;

/** A NodeState whose reply was read more than this after its ping marks the leader as behind (see detection.ts). */
export const SLOW_REPLY_MS = 1000;

/** Every presence report seen, counted by type, with first/last times per client where needed. */
export class ReportCounter {
  readonly byType = new Map<ReportType, number>();
  readonly present = new Map<string, number>();
  readonly dead = new Map<string, number>();
  /** The `ts` of each client's first NodeDead: when the leader published it (ms since the Unix epoch). */
  readonly deadPublished = new Map<string, number>();
  /** The `lastSeenMs` of each client's first NodeDead: when the leader read its last reply. */
  readonly deadLastSeen = new Map<string, number>();
  readonly suspects: string[] = [];
  /** Clients that got any report from a coordinator with `epoch` > `watchEpoch`: first time seen. */
  readonly reportedAfter = new Map<string, number>();
  /** Clients that got a NodePresent from a coordinator with `epoch` > `watchEpoch`. */
  readonly presentAfter = new Set<string>();
  watchEpoch = Number.POSITIVE_INFINITY;
  highestEpoch = 0;
  /** Election reports: a coordinator took the lease (overload shows as leadership passing back and forth). */
  becameLeader = 0;
  /** The latest leader heartbeats heard (resignations left out), oldest first: who leads, and since when. */
  readonly heartbeats: HeardHeartbeat[] = [];
  /** State messages of the bare pinger (on a subject of their own). */
  bareStates = 0;
  /** When a NodeState last said its client's latest ping was read more than SLOW_REPLY_MS after it went out (performance.now()). */
  lastSlowReply = 0;
  constructor(nc: NatsConnection, cluster: string, prefix: string) {
    nc.subscribe(`coordinator.leader.heartbeat.${cluster}`, {
      callback: (_e, m) => {
        const h = JSON.parse(m.string()) as { coordinatorId: string; epoch: number; resigning?: boolean };
        if (h.resigning === true) return;
        this.heartbeats.push({ atMs: performance.now(), coordinatorId: h.coordinatorId, epoch: h.epoch });
        if (this.heartbeats.length > HEARTBEATS_KEPT) this.heartbeats.splice(0, this.heartbeats.length - HEARTBEATS_KEPT);
      },
    });
    nc.subscribe(`coordinator.report.${cluster}`, {
      callback: (_e, m) => {
        if ((JSON.parse(m.string()) as { type: string }).type === "BecameLeader") this.becameLeader += 1;
      },
    });
    nc.subscribe(`presence.report.${cluster}`, {
      callback: (_e, m) => {
        const r = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding));
        const now = performance.now();
        this.byType.set(r.type, (this.byType.get(r.type) ?? 0) + 1);
        this.highestEpoch = Math.max(this.highestEpoch, r.epoch);
        if (r.type === "NodePresent" && !this.present.has(r.clientSubject)) this.present.set(r.clientSubject, now);
        else if (r.type === "NodeDead" && !this.dead.has(r.clientSubject)) {
          this.dead.set(r.clientSubject, now);
          this.deadPublished.set(r.clientSubject, r.ts);
          this.deadLastSeen.set(r.clientSubject, r.lastSeenMs);
        } else if (r.type === "NodeSuspect") this.suspects.push(r.clientSubject);
        else if (r.type === "NodeState" && r.rttMs > SLOW_REPLY_MS) this.lastSlowReply = now;
        if (r.epoch > this.watchEpoch) {
          if (!this.reportedAfter.has(r.clientSubject)) this.reportedAfter.set(r.clientSubject, now);
          if (r.type === "NodePresent") this.presentAfter.add(r.clientSubject);
        }
      },
    });
    nc.subscribe(bareStateSubject(prefix), {
      callback: () => {
        this.bareStates += 1;
      },
    });
  }
  count(type: ReportType): number {
    return this.byType.get(type) ?? 0;
  }
}
