/**
 * The status query (`presence-coordinator status`): who leads a cluster, under which epoch, which coordinators
 * are there and how many clients are alive or suspect.
 *
 * It asks the query service for `stats` (any coordinator; a follower forwards to the leader,
 * and a `not-leader` answer is followed to the coordinator it names), finds every
 * coordinator through the micro services discovery (`$SRV.PING.presence-coordinator`,
 * filtered by the cluster id in their metadata) and asks each for its role on its direct
 * subject, while it listens to the leader heartbeats. Coordinators that do not serve the
 * query service (the Java one) still show up through their heartbeats.
 *
 * With several partitions the `stats` answer covers every partition (the asked coordinator
 * gathers it from each partition's leader), and each coordinator's direct answer covers the
 * partitions it leads; status merges them all, so a partition the gatherer missed is still
 * shown if its leader answered status itself.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { Svcm, ServiceErrorCodeHeader } from "@nats-io/services";
import { parseHeartbeat, subjects, type Heartbeat } from "../../protocol/election.js";
import {
  mergeStats,
  QUERY_SERVICE_NAME,
  querySubjects,
  type PartitionStats,
  type QueryErrorBody,
  type StatsResponse,
} from "../../protocol/query.js";
import { describeError } from "../logger.js";

export interface CoordinatorSeen {
  coordinatorId: string;
  /** follower, candidate, leader, ...; "unknown" when it did not answer its direct query (or serves none). */
  role: string;
  /** The leader it knows of, and that leader's epoch. */
  leader: string | null;
  epoch: number;
  /** Its micro service instance and version; absent for a coordinator only heard through heartbeats. */
  serviceId?: string;
  version?: string;
  /** With several partitions: the partitions it leads, from its own answer (absent when it leads none or did not answer). */
  partitions?: number[];
}

/**
 * With one partition: the leader, its epoch and uptime, and its client counts. With several,
 * `leader`, `epoch` and `leaderUptimeMs` are those of the `stats` answer's stamp (the
 * coordinator that gathered it, the highest epoch of the partitions covered, its uptime),
 * `clients` sums the partitions covered, and `partitionCount`, `partitions` and
 * `missingPartitions` (absent with one partition) say which leader holds which partition.
 */
export interface ClusterStatus {
  clusterId: string;
  leader: string | null;
  epoch: number;
  /** From the leader's stats; null when no leader answered. */
  clients: StatsResponse["clients"] | null;
  leaderUptimeMs: number | null;
  partitionCount?: number;
  /** Each partition that answered: its leader, epoch and client counts, by partition. */
  partitions?: PartitionStats[];
  /** Partitions no answer covered (no leader, or it did not answer in time), ascending. */
  missingPartitions?: number[];
  coordinators: CoordinatorSeen[];
  /** The latest heartbeat heard while asking, with its age in ms. */
  lastHeartbeat: (Heartbeat & { ageMs: number }) | null;
}

/** No coordinator of the cluster answered in time. */
export class StatusError extends Error {
  override readonly name = "StatusError";
}

type Answer = { ok: true; stats: StatsResponse } | { ok: false; error: QueryErrorBody } | { ok: false; error: null; reason: string };

function readAnswer(msg: Msg): Answer {
  const body = JSON.parse(msg.string()) as unknown;
  if (msg.headers?.get(ServiceErrorCodeHeader)) return { ok: false, error: body as QueryErrorBody };
  return { ok: true, stats: body as StatsResponse };
}

async function ask(nc: NatsConnection, subject: string, timeoutMs: number): Promise<Answer> {
  try {
    return readAnswer(await nc.request(subject, "", { timeout: timeoutMs }));
  } catch (err) {
    return { ok: false, error: null, reason: describeError(err) };
  }
}

/** Asks the shared `stats` subject, then follows one `not-leader` hint to the leader itself. */
async function leaderStats(nc: NatsConnection, clusterId: string, timeoutMs: number): Promise<Answer> {
  const first = await ask(nc, querySubjects.shared("stats", clusterId), timeoutMs);
  if (first.ok || first.error === null || first.error.leader === null || first.error.error !== "not-leader") return first;
  return ask(nc, querySubjects.direct("stats", clusterId, first.error.leader), timeoutMs);
}

/** Collects the cluster's status; throws StatusError when nothing of the cluster answers. */
export async function collectStatus(nc: NatsConnection, clusterId: string, timeoutMs: number): Promise<ClusterStatus> {
  const heartbeats: { at: number; hb: Heartbeat }[] = [];
  const hbSub = nc.subscribe(subjects.heartbeat(clusterId), {
    callback: (_e, m) => {
      try {
        heartbeats.push({ at: performance.now(), hb: parseHeartbeat(m.data) });
      } catch {
        // Not a heartbeat we can read: the coordinators log those; status just does not count it.
      }
    },
  });
  // Long enough to hear a heartbeat at the default interval (1 s), bounded by --timeout.
  const windowMs = Math.min(timeoutMs, 1100);
  try {
    const discovery = (async () => {
      const found: { id: string; version: string; coordinatorId: string }[] = [];
      const iter = await new Svcm(nc).client({ strategy: "timer", maxWait: windowMs }).ping(QUERY_SERVICE_NAME);
      for await (const identity of iter) {
        const md = identity.metadata ?? {};
        if (md.clusterId === clusterId && md.coordinatorId)
          found.push({ id: identity.id, version: identity.version, coordinatorId: md.coordinatorId });
      }
      return found;
    })();
    const [shared, found] = await Promise.all([leaderStats(nc, clusterId, timeoutMs), discovery.catch(() => [])]);
    let stats = shared;
    /** With several partitions: every answer's partitions, merged at the end. */
    const partitionParts: PartitionStats[][] = [];
    let partitionCount = shared.ok ? (shared.stats.partitionCount ?? 1) : 1;
    if (shared.ok && shared.stats.partitions) partitionParts.push(shared.stats.partitions);
    const coordinators: CoordinatorSeen[] = await Promise.all(
      found.map(async (f) => {
        const a = await ask(nc, querySubjects.direct("stats", clusterId, f.coordinatorId), timeoutMs);
        const base = { coordinatorId: f.coordinatorId, serviceId: f.id, version: f.version };
        if (a.ok && a.stats.partitions !== undefined) {
          // One leader of several: its answer covers its own partitions only, so it never replaces the gathered one.
          partitionCount = Math.max(partitionCount, a.stats.partitionCount ?? 1);
          partitionParts.push(a.stats.partitions);
          if (!stats.ok) stats = a;
          const led = a.stats.partitions.map((p) => p.partition);
          return { ...base, role: "leader", leader: a.stats.leader, epoch: a.stats.epoch, partitions: led };
        }
        if (a.ok) {
          // A follower that had not heard of the leader yet answered no-leader; the leader itself answered now.
          if (!stats.ok || a.stats.epoch > stats.stats.epoch) stats = a;
          return { ...base, role: "leader", leader: a.stats.leader, epoch: a.stats.epoch };
        }
        if (a.error !== null) return { ...base, role: a.error.role, leader: a.error.leader, epoch: a.error.epoch };
        return { ...base, role: "unknown", leader: null, epoch: 0 };
      }),
    );
    // A heartbeat may still be on its way if the window was shorter than the interval.
    const now = performance.now();
    const last = heartbeats.filter((h) => !h.hb.resigning).at(-1) ?? null;
    for (const h of heartbeats) {
      if (!coordinators.some((c) => c.coordinatorId === h.hb.coordinatorId)) {
        coordinators.push({
          coordinatorId: h.hb.coordinatorId,
          role: h.hb.resigning ? "resigning" : "leader",
          leader: h.hb.coordinatorId,
          epoch: h.hb.epoch,
        });
      }
    }
    coordinators.sort((a, b) => (a.coordinatorId < b.coordinatorId ? -1 : a.coordinatorId > b.coordinatorId ? 1 : 0));
    if (!stats.ok && coordinators.length === 0) {
      const why = stats.error === null ? stats.reason : stats.error.message;
      throw new StatusError(
        `no coordinator of cluster "${clusterId}" answered within ${timeoutMs} ms (${why}); is one running with --cluster-id ${clusterId} on this NATS system?`,
      );
    }
    const leader = stats.ok ? stats.stats.leader : (last?.hb.coordinatorId ?? stats.error?.leader ?? null);
    const epoch = stats.ok ? stats.stats.epoch : (last?.hb.epoch ?? stats.error?.epoch ?? 0);
    const merged = partitionCount > 1 ? mergeStats(partitionCount, partitionParts) : null;
    return {
      clusterId,
      leader,
      epoch: merged !== null ? Math.max(epoch, merged.epoch) : epoch,
      clients: merged !== null ? merged.clients : stats.ok ? stats.stats.clients : null,
      leaderUptimeMs: stats.ok ? stats.stats.uptimeMs : null,
      ...(merged !== null ? { partitionCount, partitions: merged.partitions, missingPartitions: merged.missingPartitions } : {}),
      coordinators,
      lastHeartbeat: last ? { ...last.hb, ageMs: Math.round(now - last.at) } : null,
    };
  } finally {
    hbSub.unsubscribe();
  }
}
