/**
 * The figures the capacity run gives back to `npm run bench`: one CapacityLevel per level
 * climbed, the detection latency where it was measured, and the takeover of the stored
 * clients; CapacityOptions are what bench/run.ts asks of it.
 */
import type { MachineLoad } from "../machine-load.js";

export interface CapacityLevel {
  clients: number;
  holds: boolean;
  /** Why the level does not hold (empty when it holds). */
  reasons: string[];
  /** Times a coordinator took the lease while this level registered and held its clients (0 when stable). */
  leaderChanges: number;
  falseDead: number;
  falseSuspect: number;
  /** Registration published → NodePresent, for the clients added at this level. */
  registerMs: {
    p50: number;
    p99: number;
    /** When the last of them was reported present; null when some were not within the wait. */
    allPresentMs: number | null;
    /** How many of the clients added at this level were reported present within the wait. */
    presentWithin: number;
    /** Why the bench stopped waiting before every client was present; null when all were. */
    gaveUp: string | null;
  };
  leader: {
    cpuCores: number;
    cpuMicrosPerClientSecond: number;
    rssBytes: number;
    rssPerClientBytes: number;
    /**
     * V8 heap in use at the end of the hold (nodejs_heap_size_used_bytes), and its growth per
     * client since before the first registration. Both include garbage not yet collected.
     */
    heapBytes: number;
    heapPerClientBytes: number;
    /**
     * The live heap after a full GC at the end of the hold, and its growth per client since
     * the same reading before the first registration; null when the inspector did not answer.
     */
    liveHeapBytes: number | null;
    liveHeapPerClientBytes: number | null;
    /** p99 of the leader's event-loop delay over the hold. */
    eventLoopDelayP99Ms: number;
    /** Sweeps that found the event loop stalled during the hold, and the stall time credited (verdicts deferred). */
    sweepStalls: number;
    sweepStalledMs: number;
  };
  pingsPerSecond: number;
  /** NodeState reports seen per second during the hold. */
  nodeStatePerSecond: number;
  /** The rates the default timings ask for with this many answering clients. */
  configured: { pingsPerSecond: number; nodeStatePerSecond: number };
  pingIntervalMs: { p50: number; p99: number };
  simulatorCpuCores: number;
  /** The whole machine during the hold: every process on it, this one included. */
  machine: MachineLoad;
  /** Why `bare` is null at a level that was held, if it could not be measured. */
  bareNotMeasured?: string;
  bare: {
    cpuCores: number;
    cpuMicrosPerClientSecond: number;
    pingsPerSecond: number;
    statesPerSecond: number;
    /** Its state messages that reached this process, per second (the reports reach it too). */
    statesSeenPerSecond: number;
    pingIntervalMs: { p50: number; p99: number };
    /** Clients the bare loop had no reply from within the dead timeout (silenced ones included). */
    staleClients: number;
    /** The whole machine while the bare loop ran (beside the coordinator, which keeps pinging). */
    machine: MachineLoad;
  } | null;
  ratio: { cpuPerClient: number; pingRate: number } | null;
  holdSeconds: number;
}

export interface DetectionFigure {
  clients: number;
  silenced: number;
  /** Silence (the simulator stops answering) → NodeDead. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Each client's last reply → its NodeDead as this bench received it (its own lag included). */
  lastReply: { p50Ms: number; p99Ms: number; maxMs: number };
  /**
   * Each client's last reply → its NodeDead as the leader published it (the report's `ts`):
   * what the dead timeout bounds, and what the target is judged on.
   */
  lastReplyToPublish: { p50Ms: number; p99Ms: number; maxMs: number };
  /** Of that: the client's last reply → the leader read it (the NodeDead's `lastSeenMs`). */
  replyReadLag: { p50Ms: number; p99Ms: number };
  /** And: the leader's deadline (last reply read + dead timeout) → the NodeDead published. */
  pastDeadline: { p50Ms: number; p99Ms: number };
  missed: number;
  boundMs: number;
  /** Sweeps that found the leader's event loop stalled while it was measured, and the stall time credited (deadlines moved by it). */
  sweepStalls: number;
  sweepStalledMs: number;
  /** How long the bench waited for the leader to read its replies as they come (see SLOW_REPLY_MS); null: it did not within SETTLE_MAX_MS, and was measured anyway. */
  settledAfterMs: number | null;
  /** The whole machine from the silencing to the last NodeDead. */
  machine: MachineLoad;
}

export interface TakeoverFigure {
  clients: number;
  /** Of them, stored straight into the registration bucket for this measurement (levels stopped below). */
  seeded: number;
  /** The leader that was crashed and the coordinator expected to take over (null: none was crashed). */
  crashed: string | null;
  newLeader: string | null;
  loadMs: number | null;
  /** SIGKILL of the leader → the new leader's first heartbeat (under a newer epoch); null when none came within the wait. */
  firstHeartbeatMs: number | null;
  /** SIGKILL → a report from the new leader for every client; null when not within the wait. */
  everyClientReportedMs: number | null;
  /** The new leader's first heartbeat → a report from it for every client. */
  heartbeatToEveryClientMs: number | null;
  /** How many were reported by the new leader, and why the bench stopped waiting if not all. */
  reported: number;
  /**
   * How many got a NodePresent from the new leader: every loaded client should. Fewer means
   * that some came only with a later report (NodeState), their NodePresent withheld.
   */
  nodePresent: number;
  gaveUp: string | null;
}

export interface CapacityOptions {
  levels: number[];
  holdSeconds: number;
  /** Measure every level, even above one that does not hold (the climb stops there otherwise). */
  keepClimbing: boolean;
  /** The hold of a level whose registrations did not all arrive: long enough for its figures. */
  shortHoldSeconds: number;
  bareSeconds: number;
  /** How long a level waits for NodePresent of every client it registered (less when the leader saturates). */
  registerWaitMs: number;
  /** Levels at which detection latency is measured (besides the largest that holds), if every client registered. */
  detectAt: number[];
  /** Stored clients for the takeover; the ones no level registered are stored straight into the bucket. */
  takeoverClients: number;
  log: (line: string) => void;
}

export interface CapacityResult {
  levels: CapacityLevel[];
  /** The leader's live heap after a full GC before the first registration (null: not read). */
  liveHeapBaselineBytes: number | null;
  /** Why the climb stopped before the last level, or null. */
  stoppedAt: { clients: number; reasons: string[] } | null;
  detection: DetectionFigure[];
  detectionNotMeasured: { clients: number; reason: string }[];
  takeover: TakeoverFigure | null;
}
