/**
 * Judges a chaos run: the record of what the observer saw and what the harness did goes
 * through every invariant (harness/chaos-invariants/), and the run's own checks are added:
 * no coordinator crashed, and every message decoded. Also the failovers, with their causes.
 * A partitioned run is judged per partition (harness/chaos-invariants/partitions.ts), with
 * the checks of partitioned leadership, and its failovers are counted per partition.
 */
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_PING_INTERVAL_MS } from "../../src/config/config.js";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord } from "../../harness/chaos-invariants/record.js";
import { partitionRecord, runPartitionedChecks, type PartitionedRecord } from "../../harness/chaos-invariants/partitions.js";
import { runChecks } from "../../harness/chaos-invariants/run-checks.js";
import { failovers, type Failover } from "../../harness/chaos-invariants/timeline.js";
import type { CheckResult } from "../../harness/chaos-invariants/verdict.js";
import type { ChaosObserver } from "./observer.js";
import type { ChaosRig } from "./rig.js";

export interface Judgement {
  checks: CheckResult[];
  /** Every failover (of every partition). */
  failovers: Failover[];
  /** In a partitioned run, the failovers of each partition, by partition. */
  failoversByPartition?: Failover[][];
  /** What was judged (for `--record`). */
  record: ChaosRecord | PartitionedRecord;
}

export function judgeRun(rig: ChaosRig, observer: ChaosObserver, endAt: number): Judgement {
  const record: ChaosRecord = {
    presence: observer.presence,
    heartbeats: observer.heartbeats,
    elections: observer.elections,
    actions: rig.actions,
    subjects: new Set([...rig.used].map(rig.subjectOf)),
    endAt,
    harnessStalls: rig.harnessStalls,
    refused: rig.refused,
    trappedPings: [...rig.sim!.trapped()],
    leadershipFaults: rig.leadershipFaults,
  };
  const timings = { ...DEFAULT_CHAOS_TIMINGS, deadTimeoutMs: DEFAULT_DEAD_TIMEOUT_MS, pingIntervalMs: DEFAULT_PING_INTERVAL_MS };
  const partitioned: PartitionedRecord | undefined =
    rig.partitions > 1
      ? { ...record, partitions: rig.partitions, coordinatorEvents: rig.coordinatorEvents, serverEvents: rig.serverEvents }
      : undefined;
  const checks: CheckResult[] = [
    ...(partitioned ? runPartitionedChecks(partitioned, timings) : runChecks(record, timings)),
    { name: "no coordinator crash", checked: rig.lifetimes, unit: "coordinator processes", violations: rig.crashes },
    {
      name: "reports decodable",
      checked: observer.presence.length + observer.heartbeats.length + observer.elections.length + observer.undecodable.length,
      unit: "messages",
      violations: observer.undecodable.map((message) => ({ at: endAt, message })),
    },
  ];
  if (!partitioned)
    return { checks, failovers: failovers(observer.heartbeats, rig.leadershipFaults, DEFAULT_HEARTBEAT_INTERVAL_MS), record };
  const byPartition = Array.from({ length: rig.partitions }, (_, p) =>
    failovers(partitionRecord(partitioned, p).heartbeats, rig.leadershipFaults, DEFAULT_HEARTBEAT_INTERVAL_MS),
  );
  return { checks, failovers: byPartition.flat(), failoversByPartition: byPartition, record: partitioned };
}
