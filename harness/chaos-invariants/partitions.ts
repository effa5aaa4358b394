/**
 * The chaos checks of a partitioned run (`npm run chaos -- --partitions P`, P > 1). Every
 * check of run-checks.ts is judged per partition, on the partition's own record: its
 * reports, heartbeats and election reports (their `partition`, absent = 0) and the clients
 * whose subject hashes to it (`partitionOf`); each partition has its own epochs, takeovers
 * and blind windows. The checks of what the harness sent (refused input, leader faults)
 * are judged once. Three checks are added, on partitioned leadership:
 *
 * - one leader per epoch: an epoch (the revision of a lease's create, unique in the bucket)
 *   belongs to one partition and one coordinator, in every heartbeat and report;
 * - reports from the partition's leader: a presence report of partition p names a client of
 *   p, under an epoch of p that its publisher leads (as the heartbeats say), and does not
 *   arrive after a higher epoch of p took over;
 * - partitions balanced: BALANCE_BOUND_MS after the last change of membership (a coordinator
 *   started, stopped, killed, SIGSTOPped or continued; a NATS server stopped or started),
 *   every partition has a leader and the live coordinators lead max - min <= 1 of them.
 */
import { partitionOf } from "../../src/protocol/partition.js";
import { checkUnknownSubjects, checkRefusedIgnored } from "./registrations.js";
import { checkLeaderFaultsRan } from "./leadership.js";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ChaosTimings, type SeenHeartbeat } from "./record.js";
import { runChecks } from "./run-checks.js";
import { byArrival, describe, fmt, takeovers } from "./timeline.js";
import type { CheckResult, Violation } from "./verdict.js";

/** How long after the last membership change the partitions must be balanced (the issue's bound). */
export const BALANCE_BOUND_MS = 10_000;

/** A coordinator went up (started, continued after SIGSTOP) or down (SIGKILL, SIGTERM, SIGSTOP, exited) at `at`, as the harness did it. */
export interface CoordinatorEvent {
  at: number;
  coordinatorId: string;
  kind: "up" | "down";
}

export interface PartitionedRecord extends ChaosRecord {
  partitions: number;
  /** Who is live when: every start, stop and continuation of a coordinator process. */
  coordinatorEvents: CoordinatorEvent[];
  /** When a NATS server was stopped or started again (leaderships move then too). */
  serverEvents?: number[];
}

const partitionOfItem = (x: { partition?: number }): number => x.partition ?? 0;

/** The record of partition `p`: its reports, heartbeats and election reports, and the actions on its clients. */
export function partitionRecord(record: PartitionedRecord, p: number): ChaosRecord {
  const mine = (subject: string) => partitionOf(subject, record.partitions) === p;
  return {
    presence: record.presence.filter((r) => partitionOfItem(r) === p),
    heartbeats: record.heartbeats.filter((h) => partitionOfItem(h) === p),
    elections: record.elections.filter((e) => partitionOfItem(e) === p),
    actions: record.actions.filter((a) => mine(a.subject)),
    subjects: new Set([...record.subjects].filter(mine)),
    endAt: record.endAt,
    ...(record.harnessStalls ? { harnessStalls: record.harnessStalls } : {}),
    ...(record.leadershipFaults ? { leadershipFaults: record.leadershipFaults } : {}),
  };
}

/** One check's results over the partitions, as one result: counts added, each violation naming its partition. */
function merge(results: readonly CheckResult[]): CheckResult {
  const first = results[0]!;
  const violations: Violation[] = results
    .flatMap((c, p) => c.violations.map((v) => ({ at: v.at, message: `partition ${p}: ${v.message}` })))
    .sort((a, b) => a.at - b.at);
  const skipped = results.reduce((n, c) => n + (c.skipped ?? 0), 0);
  return {
    name: first.name,
    checked: results.reduce((n, c) => n + c.checked, 0),
    unit: first.unit,
    violations,
    ...(results.some((c) => c.skipped !== undefined) ? { skipped } : {}),
  };
}

/**
 * Every check of a partitioned run, in the order of run-checks.ts, then the three checks of
 * partitioned leadership.
 */
export function runPartitionedChecks(record: PartitionedRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult[] {
  const perPartition = Array.from({ length: record.partitions }, (_, p) => runChecks(partitionRecord(record, p), timings));
  const global = new Map([checkUnknownSubjects(record), checkRefusedIgnored(record), checkLeaderFaultsRan(record)].map((c) => [c.name, c]));
  return [
    ...perPartition[0]!.map((c, i) => global.get(c.name) ?? merge(perPartition.map((checks) => checks[i]!))),
    checkOneLeaderPerEpoch(record),
    checkReportsFromLeader(record, timings),
    checkPartitionsBalanced(record, timings),
  ];
}

/**
 * One leader per partition epoch: every heartbeat, BecameLeader and presence report that
 * names an epoch names the same partition and the same coordinator as the first that named
 * it. (An epoch is the revision of a lease's create in the one leadership bucket, so no two
 * partitions share one either.)
 */
export function checkOneLeaderPerEpoch(record: ChaosRecord): CheckResult {
  type Claim = { at: number; epoch: number; partition: number; coordinatorId: string; what: string };
  const claims: Claim[] = [
    ...record.heartbeats.map((h) => ({ ...h, partition: partitionOfItem(h), what: h.resigning ? "resigning heartbeat" : "heartbeat" })),
    ...record.elections
      .filter((e) => e.type === "BecameLeader")
      .map((e) => ({ ...e, partition: partitionOfItem(e), what: "BecameLeader" })),
    ...record.presence.map((r) => ({ ...r, partition: partitionOfItem(r), what: `${r.type} ${r.clientSubject}` })),
  ];
  const first = new Map<number, Claim>();
  const reported = new Set<string>();
  const violations: Violation[] = [];
  for (const c of byArrival(claims)) {
    const owner = first.get(c.epoch);
    if (!owner) {
      first.set(c.epoch, c);
      continue;
    }
    if (owner.partition === c.partition && owner.coordinatorId === c.coordinatorId) continue;
    const key = `${c.epoch}/${c.partition}/${c.coordinatorId}`;
    if (reported.has(key)) continue;
    reported.add(key);
    violations.push({
      at: c.at,
      message: `epoch ${c.epoch} claimed by ${c.coordinatorId} for partition ${c.partition} (${c.what} at ${fmt(c.at)}), but it was ${owner.coordinatorId}'s for partition ${owner.partition} (${owner.what} at ${fmt(owner.at)})`,
    });
  }
  return { name: "one leader per epoch", checked: first.size, unit: "partition epochs", violations };
}

/**
 * Reports from the partition's leader: a presence report of partition p names a client
 * whose subject hashes to p, under an epoch whose heartbeats for p come from the report's
 * publisher, and it arrives no later than the travel allowance after the first heartbeat of
 * a higher epoch of p (by then another coordinator leads p).
 */
export function checkReportsFromLeader(record: PartitionedRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const leaderOf = new Map<string, string>();
  const beatsOf = new Map<number, SeenHeartbeat[]>();
  for (const h of byArrival(record.heartbeats)) {
    const p = partitionOfItem(h);
    if (!leaderOf.has(`${p}/${h.epoch}`)) leaderOf.set(`${p}/${h.epoch}`, h.coordinatorId);
    let list = beatsOf.get(p);
    if (!list) {
      list = [];
      beatsOf.set(p, list);
    }
    list.push(h);
  }
  const takeoversOf = new Map([...beatsOf].map(([p, beats]) => [p, takeovers(beats)]));
  const violations: Violation[] = [];
  for (const r of byArrival(record.presence)) {
    const p = partitionOfItem(r);
    const belongs = partitionOf(r.clientSubject, record.partitions);
    const leader = leaderOf.get(`${p}/${r.epoch}`);
    const next = (takeoversOf.get(p) ?? []).find((t) => t.epoch > r.epoch);
    let why: string | undefined;
    if (belongs !== p) why = `its client is in partition ${belongs}`;
    else if (leader === undefined) why = `no heartbeat of partition ${p} at epoch ${r.epoch} was seen`;
    else if (leader !== r.coordinatorId) why = `${leader} leads partition ${p} at epoch ${r.epoch}`;
    else if (next && r.at > next.at + timings.travelMs)
      why = `${next.coordinatorId} took partition ${p} over at epoch ${next.epoch} at ${fmt(next.at)}`;
    if (why) violations.push({ at: r.at, message: `${describe(r)} (partition ${p}): ${why}` });
  }
  return { name: "reports from the leader", checked: record.presence.length, unit: "presence reports", violations };
}

/** Who leads each partition at `t`, as the heartbeats say, and whether that is balanced over the live coordinators. */
export function leadershipAt(
  record: PartitionedRecord,
  t: number,
  timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS,
): { balanced: boolean; led: Map<string, number>; unled: number[] } {
  const state = new Map<string, "up" | "down">();
  for (const e of byArrival(record.coordinatorEvents)) if (e.at <= t) state.set(e.coordinatorId, e.kind);
  const led = new Map([...state].filter(([, kind]) => kind === "up").map(([id]) => [id, 0]));
  const last = new Map<number, SeenHeartbeat>();
  for (const h of record.heartbeats) {
    const p = partitionOfItem(h);
    if (h.at <= t && h.at >= (last.get(p)?.at ?? -Infinity)) last.set(p, h);
  }
  // A leader's heartbeat may come a heartbeat late (a busy machine); two missed, it leads no more.
  const staleMs = 2 * timings.heartbeatIntervalMs + timings.travelMs;
  const unled: number[] = [];
  for (let p = 0; p < record.partitions; p++) {
    const h = last.get(p);
    const n = h && !h.resigning && t - h.at <= staleMs ? led.get(h.coordinatorId) : undefined;
    if (n === undefined) unled.push(p);
    else led.set(h!.coordinatorId, n + 1);
  }
  const counts = [...led.values()];
  const balanced = unled.length === 0 && counts.length > 0 && Math.max(...counts) - Math.min(...counts) <= 1;
  return { balanced, led, unled };
}

const showLeadership = (s: ReturnType<typeof leadershipAt>): string =>
  `${[...s.led]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, n]) => `${id} ${n}`)
    .join(", ")}${s.unled.length > 0 ? `; no live leader for partition(s) ${s.unled.join(",")}` : ""}`;

/**
 * Partitions balanced: for every membership change followed by BALANCE_BOUND_MS without
 * another (a change followed sooner is not the last, and is not judged), the leadership at
 * the change plus the bound is balanced: every partition led by a live coordinator, and
 * max - min <= 1 partitions led among the live coordinators.
 */
export function checkPartitionsBalanced(record: PartitionedRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const changes = [...new Set([...record.coordinatorEvents.map((e) => e.at), ...(record.serverEvents ?? [])])].sort((a, b) => a - b);
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  for (const [i, change] of changes.entries()) {
    const judgeAt = change + BALANCE_BOUND_MS;
    const next = changes[i + 1] ?? Infinity;
    if (next <= judgeAt || judgeAt > record.endAt) {
      skipped += 1;
      continue;
    }
    checked += 1;
    const s = leadershipAt(record, judgeAt, timings);
    if (s.balanced) continue;
    // When it did balance, if it did before the next change: evidence for the message.
    let balancedAt: number | undefined;
    for (let t = judgeAt; t <= Math.min(next, record.endAt) && balancedAt === undefined; t += 250)
      if (leadershipAt(record, t, timings).balanced) balancedAt = t;
    const what = record.coordinatorEvents
      .filter((e) => e.at === change)
      .map((e) => `${e.coordinatorId} ${e.kind}`)
      .join(", ");
    violations.push({
      at: judgeAt,
      message: `${BALANCE_BOUND_MS} ms after the change at ${fmt(change)} (${what || "a NATS server"}): ${showLeadership(s)}; ${balancedAt !== undefined ? `balanced only at ${fmt(balancedAt)}` : "not balanced before the next change or the end"}`,
    });
  }
  return { name: "partitions balanced", checked, unit: "membership changes", violations, skipped };
}
