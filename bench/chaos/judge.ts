/**
 * Judges a chaos run: the record of what the observer saw and what the harness did goes
 * through every invariant (harness/chaos-invariants/), and the run's own checks are added:
 * no coordinator crashed, and every message decoded. Also the failovers, with their causes.
 */
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_PING_INTERVAL_MS } from "../../src/config/config.js";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord } from "../../harness/chaos-invariants/record.js";
import { runChecks } from "../../harness/chaos-invariants/run-checks.js";
import { failovers, type Failover } from "../../harness/chaos-invariants/timeline.js";
import type { CheckResult } from "../../harness/chaos-invariants/verdict.js";
import type { ChaosObserver } from "./observer.js";
import type { ChaosRig } from "./rig.js";

export function judgeRun(rig: ChaosRig, observer: ChaosObserver, endAt: number): { checks: CheckResult[]; failovers: Failover[] } {
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
  const checks: CheckResult[] = [
    ...runChecks(record, timings),
    { name: "no coordinator crash", checked: rig.lifetimes, unit: "coordinator processes", violations: rig.crashes },
    {
      name: "reports decodable",
      checked: observer.presence.length + observer.heartbeats.length + observer.elections.length + observer.undecodable.length,
      unit: "messages",
      violations: observer.undecodable.map((message) => ({ at: endAt, message })),
    },
  ];
  return { checks, failovers: failovers(observer.heartbeats, rig.leadershipFaults, DEFAULT_HEARTBEAT_INTERVAL_MS) };
}
