/**
 * Capacity figures for `npm run bench`: how many clients one leader keeps alive at default
 * timings, what each costs, and the same wire work done by a bare loop written directly on
 * the NATS client (bench/bare-pinger.ts: pings, replies and one state message per client per
 * state interval), for the ratio coordinator / bare.
 *
 * Processes, all on loopback: one nats-server; a leader and a follower coordinator
 * started through the built CLI; the client simulator (harness/client-sim.ts) answering every
 * client's pings with one wildcard subscription; the bare pinger when its turn comes; and
 * this process, which observes every report. CPU and memory are read from /proc for each
 * process, so each is measured on its own.
 *
 * The leader's heap is given two ways: V8's heap in use from its /metrics, which counts
 * garbage not yet collected, and its live heap after a full GC, read through its inspector
 * (harness/live-heap.ts) before the first registration and at the end of each level's hold,
 * with no inspector session attached during the hold.
 *
 * The levels are climbed in order, and the climb stops at the first level that does not
 * hold (harness/capacity-judge.ts says why; `keepClimbing` goes on): a leader that cannot hold
 * N clients will not hold more, and each further level would only cost minutes. A level
 * whose registrations cannot finish (the leader is saturated) is given up early and held
 * only briefly, for its figures.
 */
import { cpus } from "node:os";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS } from "../src/config/config.js";
import { decodeReport, REPORT_HEADERS, type ReportType } from "../src/protocol/presence.js";
import { createLogger } from "../src/observe/logger.js";
import { NatsServer } from "../src/nats/server.js";
import { KvRegistrationStore } from "../src/presence/registration-store.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";
import { cpuSeconds, Helper, rssBytes } from "../harness/processes.js";
import { bareStateSubject, type BareStats } from "./bare-pinger.js";
import {
  DEFAULT_HOLD_CRITERIA,
  judgeLevel,
  judgeRegistrationWait,
  settledLeader,
  silencedAt,
  type HeardHeartbeat,
  type ProgressSample,
  type WaitPolicy,
} from "../harness/capacity-judge.js";
import { control, percentiles, type SilenceAnswer } from "../harness/client-sim.js";
import { inspectorUrlIn, liveHeapBytes, withInspector } from "../harness/live-heap.js";
import { describeLoad, machineLoadSince, sampleMachine, type MachineLoad } from "./machine-load.js";

const CORES = cpus().length;
const P = DEFAULT_MONITOR_TIMINGS;
/** The target for last reply → NodeDead: the dead timeout, one sweep, and 100 ms. */
export const DETECTION_BOUND_MS = P.deadTimeoutMs + P.sweepIntervalMs + 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Heartbeats the observer keeps: a minute's worth at the default interval, more than the settling window. */
const HEARTBEATS_KEPT = 64;
/** Leadership counts as settled for the takeover once one leader alone was heard for this long. */
const SETTLED = { windowMs: 2 * DEFAULT_TIMINGS.leaderTimeoutMs, heartbeatIntervalMs: DEFAULT_TIMINGS.heartbeatIntervalMs };

/**
 * Detection is measured once the leader reads its replies as they come: after the bare loop
 * shared the machine with it, the leader may be seconds behind, its replies waiting in the
 * server, and a client's last reply read that late moves its NodeDead as late. So the bench
 * first waits until no NodeState for SETTLED_MS said a ping's reply was read more than
 * SLOW_REPLY_MS after the ping went out (at most SETTLE_MAX_MS).
 */
const SLOW_REPLY_MS = 1000;
const SETTLED_MS = 2000;
const SETTLE_MAX_MS = 30_000;

/** Every presence report seen, counted by type, with first/last times per client where needed. */
class ReportCounter {
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

async function sampleStats(nc: NatsConnection, prefix: string, reset: boolean) {
  return control<{ answered: number; elapsedMs: number; cpuMs: number; intervalP50Ms: number; intervalP99Ms: number }>(nc, prefix, {
    op: "stats",
    reset,
  });
}

/** CPU seconds of a process, NaN once it is gone. */
function cpuOrNaN(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return Number.NaN;
  }
}

/**
 * Waits for `count()` to reach `policy.wanted`, sampling it, the leader's CPU and the leader
 * changes every 250 ms from `t0`; stops early on a saturated leader or a leader change
 * (judgeRegistrationWait).
 */
async function waitForProgress(
  t0: number,
  count: () => number,
  leaderCpu: () => number,
  leaderChanges: () => number,
  policy: WaitPolicy,
): Promise<{ done: boolean; reason: string }> {
  const samples: ProgressSample[] = [];
  for (;;) {
    samples.push({ atMs: performance.now() - t0, present: count(), leaderCpuSeconds: leaderCpu(), leaderChanges: leaderChanges() });
    const verdict = judgeRegistrationWait(samples, policy);
    if (!verdict.wait) return verdict;
    await sleep(250);
  }
}

const SATURATION = { windowMs: 5000, saturatedCores: 0.9 };

/**
 * Runs the capacity levels one after the other on one leader: each level registers the
 * clients that take the count up to it, lets them settle, holds for `holdSeconds` and
 * measures; then the bare pinger does the same wire work for the same clients for
 * `bareSeconds`. The climb stops at the first level that does not hold.
 */
export async function measureCapacity(options: CapacityOptions): Promise<CapacityResult> {
  const { log } = options;
  const server = await NatsServer.start({ name: "bench-capacity" });
  const cluster = "benchcap";
  const prefix = "cap";
  const nc = await connect({ servers: server.url, name: "bench observer" });
  const counter = new ReportCounter(nc, cluster, prefix);
  // The leader's own figures (event-loop delay, heap) come from its metrics endpoint, its
  // live heap from its inspector.
  const leader = spawnCoordinator({
    urls: [server.url],
    clusterId: cluster,
    id: "cap-a",
    // Past the default --max-clients: the bench measures where a leader stops holding.
    args: ["--metrics-port", "0", "--max-clients", String(Math.max(...options.levels, options.takeoverClients))],
    env: { NODE_OPTIONS: withInspector(process.env.NODE_OPTIONS) },
  });
  let follower: CoordinatorProcess | undefined;
  const sim = Helper.start(new URL("../harness/client-sim.ts", import.meta.url), [server.url, cluster, prefix]);
  const levels: CapacityLevel[] = [];
  const detection: DetectionFigure[] = [];
  const detectionNotMeasured: { clients: number; reason: string }[] = [];
  let stoppedAt: CapacityResult["stoppedAt"] = null;
  let takeover: TakeoverFigure | null = null;
  let liveStart: number | null = null;
  /** Clients silenced for a detection measurement: no longer expected to answer. */
  const silencedRanges: [number, number][] = [];
  const silencedCount = () => silencedRanges.reduce((k, [a, b]) => k + (b - a), 0);
  let registered = 0;
  const criteria = DEFAULT_HOLD_CRITERIA(P.pingIntervalMs, P.stateIntervalMs);
  try {
    await sim.ready;
    await waitFor("the leader", () => leader.logs().some((l) => l.message === "became leader"), 15_000);
    follower = spawnCoordinator({
      urls: [server.url],
      clusterId: cluster,
      id: "cap-b",
      args: ["--max-clients", String(Math.max(...options.levels, options.takeoverClients))],
    });
    await waitFor("the follower", () => follower!.logs().some((l) => l.message === "following the leader"), 15_000);
    const leaderPid = leader.child.pid!;
    const followerPid = follower.child.pid!;
    // Both coordinators' CPU: whichever leads, a saturated one shows, and a change of leader
    // does not mix two processes' counters.
    const coordinatorsCpu = () => cpuOrNaN(leaderPid) + cpuOrNaN(followerPid);
    const rssStart = rssBytes(leaderPid);
    const metricsUrl = await waitFor(
      "the leader's metrics URL",
      () => leader.logs().find((l) => l.message === "metrics listening")?.url as string | undefined,
      10_000,
    );
    const heapStart = (await scrape(metricsUrl)).heapBytes;
    const inspectorUrl = await waitFor("the leader's inspector URL", () => inspectorUrlIn(leader.lines), 10_000);
    /** The leader's live heap after a full GC; null (and a line saying why) when it cannot be read. */
    const liveHeap = () =>
      liveHeapBytes(inspectorUrl).catch((err: unknown) => {
        log(`    the leader's live heap could not be read: ${err instanceof Error ? err.message : String(err)}`);
        return null;
      });
    liveStart = await liveHeap();

    const wanted = [...options.levels].sort((a, b) => a - b);
    for (let i = 0; i < wanted.length; i++) {
      const n = wanted[i]!;
      if (n <= registered) continue;
      log(`  capacity: ${n.toLocaleString("en")} clients: registering ${(n - registered).toLocaleString("en")} more`);
      const t0 = performance.now();
      const elections0 = counter.becameLeader;
      const logFrom = { leader: leader.logs().length, follower: follower.logs().length };
      await control(nc, prefix, { op: "register", from: registered, to: n }, 300_000);
      const expected = n - silencedCount();
      const wait = await waitForProgress(
        t0,
        () => counter.present.size,
        coordinatorsCpu,
        () => counter.becameLeader - elections0,
        {
          wanted: n,
          maxWaitMs: options.registerWaitMs,
          ...SATURATION,
        },
      );
      const allPresent = wait.done;
      if (!allPresent) log(`    stopped waiting for registrations: ${wait.reason}`);
      const times: number[] = [];
      for (let k = registered; k < n; k++) {
        const at = counter.present.get(`${prefix}.${k}`);
        if (at !== undefined) times.push(at - t0);
      }
      const [p50, p99] = percentiles(times, [0.5, 0.99]);
      const allPresentMs = allPresent ? Math.round(Math.max(...times)) : null;
      registered = n;
      // Settle: let every client reach its ping rhythm, then measure from a clean state.
      // A level that did not register is measured at once, overloaded as it is.
      if (allPresent) await sleep(2 * P.pingIntervalMs + 1000);
      const dead0 = counter.count("NodeDead");
      const suspect0 = counter.count("NodeSuspect");
      const state0 = counter.count("NodeState");
      await sampleStats(nc, prefix, true);
      const before = await scrape(metricsUrl); // also starts the event-loop delay histogram afresh
      // Both coordinators: when an overloaded leader loses its lease, the other one leads.
      const cpu0 = cpuSeconds(leaderPid) + cpuSeconds(followerPid);
      const machine0 = sampleMachine();
      const t1 = performance.now();
      const holdSeconds = allPresent ? options.holdSeconds : Math.min(options.holdSeconds, options.shortHoldSeconds);
      log(`    holding ${expected.toLocaleString("en")} answering clients for ${holdSeconds} s`);
      await sleep(holdSeconds * 1000);
      const seconds = (performance.now() - t1) / 1000;
      const cpu = (cpuSeconds(leaderPid) + cpuSeconds(followerPid) - cpu0) / seconds;
      const machine = machineLoadSince(machine0, CORES);
      const nodeStates = counter.count("NodeState") - state0;
      const stats = await sampleStats(nc, prefix, true);
      const rss = rssBytes(leaderPid);
      const scraped = await scrape(metricsUrl);
      const falseDead = counter.count("NodeDead") - dead0;
      const falseSuspect = counter.count("NodeSuspect") - suspect0;
      const leaderChanges = counter.becameLeader - elections0;
      if (leaderChanges > 0) {
        // Why the leader changed is in the coordinators' warnings: the first few of the level.
        for (const [name, proc, from] of [
          ["cap-a", leader, logFrom.leader],
          ["cap-b", follower, logFrom.follower],
        ] as const) {
          const warnings = proc
            .logs()
            .slice(from)
            .filter((r) => r.level === "warn" || r.level === "error")
            .map((r) => `${String(r.timestamp ?? "")} ${String(r.level)} ${String(r.message)}`);
          for (const w of warnings.slice(0, 6)) log(`      ${name}: ${w}`);
          if (warnings.length > 6) log(`      ${name}: ... ${warnings.length - 6} more warnings`);
        }
      }
      // After every figure of the hold: the full GC pauses the leader.
      const live = await liveHeap();
      const pingsPerSecond = Math.round(stats.answered / (stats.elapsedMs / 1000));
      const nodeStatePerSecond = Math.round(nodeStates / seconds);
      const verdict = judgeLevel(
        {
          answering: expected,
          registered: n,
          present: counter.present.size,
          falseDead,
          falseSuspect,
          leaderChanges,
          pingsPerSecond,
          nodeStatePerSecond,
          pingIntervalP99Ms: stats.intervalP99Ms ?? Number.NaN,
        },
        criteria,
      );
      const level: CapacityLevel = {
        clients: n,
        holds: verdict.holds,
        reasons: verdict.reasons,
        leaderChanges,
        falseDead,
        falseSuspect,
        registerMs: { p50: p50!, p99: p99!, allPresentMs, presentWithin: times.length, gaveUp: allPresent ? null : wait.reason },
        leader: {
          cpuCores: round2(cpu),
          cpuMicrosPerClientSecond: round2((cpu * 1e6) / expected),
          rssBytes: rss,
          rssPerClientBytes: Math.round((rss - rssStart) / expected),
          heapBytes: scraped.heapBytes,
          heapPerClientBytes: Math.round((scraped.heapBytes - heapStart) / expected),
          liveHeapBytes: live,
          liveHeapPerClientBytes: live === null || liveStart === null ? null : Math.round((live - liveStart) / expected),
          eventLoopDelayP99Ms: scraped.loopDelayP99Ms,
          sweepStalls: scraped.sweepStalls - before.sweepStalls,
          sweepStalledMs: scraped.sweepStalledMs - before.sweepStalledMs,
        },
        pingsPerSecond,
        nodeStatePerSecond,
        configured: {
          pingsPerSecond: Math.round((expected * 1000) / P.pingIntervalMs),
          nodeStatePerSecond: Math.round((expected * 1000) / P.stateIntervalMs),
        },
        pingIntervalMs: { p50: stats.intervalP50Ms, p99: stats.intervalP99Ms },
        simulatorCpuCores: round2(stats.cpuMs / stats.elapsedMs),
        machine,
        bare: null,
        ratio: null,
        holdSeconds: Math.round(seconds),
      };
      log(
        `    ${level.holds ? "holds" : `DOES NOT HOLD: ${level.reasons.join("; ")}`}\n` +
          `    false dead ${falseDead}, false suspect ${falseSuspect}; leader ${level.leader.cpuCores} cores ` +
          `(${level.leader.cpuMicrosPerClientSecond} µs/s per client), live heap after GC ${mb(level.leader.liveHeapBytes)} (${String(level.leader.liveHeapPerClientBytes ?? "?")} B/client), ` +
          `heap in use with garbage ${mb(level.leader.heapBytes)} (${level.leader.heapPerClientBytes} B/client), ` +
          `event-loop delay p99 ${level.leader.eventLoopDelayP99Ms} ms, ${level.leader.sweepStalls} stalled sweeps (${level.leader.sweepStalledMs} ms credited); ${level.pingsPerSecond.toLocaleString("en")} pings/s and ` +
          `${level.nodeStatePerSecond.toLocaleString("en")} NodeState/s (configured ${level.configured.pingsPerSecond.toLocaleString("en")} and ` +
          `${level.configured.nodeStatePerSecond.toLocaleString("en")}), interval p50 ${level.pingIntervalMs.p50} ms p99 ${level.pingIntervalMs.p99} ms; ` +
          `simulator ${level.simulatorCpuCores} cores; machine: ${describeLoad(machine)}`,
      );

      if (options.bareSeconds > 0) {
        // The same wire work for the same clients, by a bare loop, while the coordinator keeps
        // running: the simulator counts both, so the bare loop's replies are counted by itself.
        const bare = Helper.start(new URL("./bare-pinger.ts", import.meta.url), [
          server.url,
          prefix,
          String(n),
          String(P.pingIntervalMs),
          String(P.stateIntervalMs),
        ]);
        try {
          await bare.ready;
          await sleep(1500);
          const bcpu0 = cpuSeconds(bare.pid);
          await control(nc, `${prefix}.bare`, { op: "stats" }); // starts its counts afresh
          const seen0 = counter.bareStates;
          const bareMachine0 = sampleMachine();
          const tb = performance.now();
          await sleep(options.bareSeconds * 1000);
          const bseconds = (performance.now() - tb) / 1000;
          const bcpu = (cpuSeconds(bare.pid) - bcpu0) / bseconds;
          const bareMachine = machineLoadSince(bareMachine0, CORES);
          const seen = counter.bareStates - seen0;
          await sampleStats(nc, prefix, true);
          const bareStats = await control<BareStats>(nc, `${prefix}.bare`, { op: "stats" });
          const barePings = Math.round(bareStats.replies / (bareStats.elapsedMs / 1000));
          level.bare = {
            cpuCores: round2(bcpu),
            cpuMicrosPerClientSecond: round2((bcpu * 1e6) / n),
            pingsPerSecond: barePings,
            statesPerSecond: Math.round(bareStats.statesSent / (bareStats.elapsedMs / 1000)),
            statesSeenPerSecond: Math.round(seen / bseconds),
            pingIntervalMs: { p50: bareStats.intervalP50Ms, p99: bareStats.intervalP99Ms },
            staleClients: bareStats.staleClients,
            machine: bareMachine,
          };
          level.ratio = {
            cpuPerClient: round2(level.leader.cpuMicrosPerClientSecond / level.bare.cpuMicrosPerClientSecond),
            pingRate: round2(level.pingsPerSecond / (barePings * (expected / n))),
          };
          log(
            `    bare loop: ${level.bare.cpuCores} cores (${level.bare.cpuMicrosPerClientSecond} µs/s per client), ${barePings.toLocaleString("en")} replies/s, ` +
              `${level.bare.statesPerSecond.toLocaleString("en")} states/s; coordinator/bare: CPU per client ${level.ratio.cpuPerClient}×, ping rate ${level.ratio.pingRate}×; ` +
              `machine: ${describeLoad(bareMachine)}`,
          );
        } catch (err) {
          // The box may not run the bare loop beside everything else at this size (it may
          // die): the level keeps its own figures, without a ratio.
          level.bare = null;
          level.bareNotMeasured = `the bare loop could not be measured: ${err instanceof Error ? err.message : String(err)}`;
          log(`    ${level.bareNotMeasured}`);
        } finally {
          await bare.stop().catch(() => undefined);
        }
      }
      levels.push(level);

      // Detection needs every client monitored; a level that holds only narrowly still has that.
      if (options.detectAt.includes(n)) {
        if (allPresent) detection.push(await measureDetectionAt(nc, counter, prefix, n, silencedAt(n), silencedRanges, metricsUrl, log));
        else
          detectionNotMeasured.push({
            clients: n,
            reason: `only ${times.length.toLocaleString("en")} of its clients were registered (${wait.reason})`,
          });
      }
      if (!level.holds && !options.keepClimbing) {
        const rest = wanted.slice(i + 1);
        if (rest.length > 0) {
          stoppedAt = { clients: n, reasons: level.reasons };
          log(`    the climb stops here: ${rest.map((k) => k.toLocaleString("en")).join(", ")} not measured`);
          for (const k of rest) {
            if (options.detectAt.includes(k))
              detectionNotMeasured.push({ clients: k, reason: `the climb stopped at ${n.toLocaleString("en")}, which did not hold` });
          }
        }
        break;
      }
    }

    const held = levels.filter((l) => l.holds);
    const largest = held.at(-1);
    if (largest !== undefined && !detection.some((d) => d.clients === largest.clients) && largest.clients === registered) {
      detection.push(
        await measureDetectionAt(nc, counter, prefix, largest.clients, silencedAt(largest.clients), silencedRanges, metricsUrl, log),
      );
    }

    // Takeover: the leader crashes; the follower loads every stored registration.
    if (registered > 0 && follower !== undefined) {
      let seeded = 0;
      if (options.takeoverClients > registered) {
        // The climb stopped below: store the rest straight into the bucket, as they would be.
        seeded = options.takeoverClients - registered;
        log(`  takeover: storing ${seeded.toLocaleString("en")} more registrations straight into the bucket`);
        const store = await KvRegistrationStore.open(nc, {
          clusterId: cluster,
          replicas: 1,
          ackWaitMs: 30_000,
          logger: createLogger({ format: "json", verbose: false, level: "warn", fields: { component: "bench" } }),
        });
        for (let k = registered; k < options.takeoverClients; k += 500) {
          const end = Math.min(options.takeoverClients, k + 500);
          await Promise.all(Array.from({ length: end - k }, (_, j) => store.put({ subject: `${prefix}.${k + j}`, metadata: {} })));
        }
        registered = options.takeoverClients;
      }
      const live = registered - silencedCount();
      takeover = await measureTakeover({ counter, coordinators: [leader, follower], live, seeded, maxWaitMs: options.registerWaitMs, log });
    }
  } finally {
    await Promise.allSettled([leader.kill(), follower?.kill(), sim.stop()]);
    await nc.close();
    await server.stop();
  }
  return { levels, liveHeapBaselineBytes: liveStart, detection, detectionNotMeasured, stoppedAt, takeover };
}

/**
 * Crashes the leader and measures how the other coordinator takes over: its first heartbeat
 * under a newer epoch, the load of the stored registrations, and a report from it for every
 * client. The leader is the one heard alone for a while (settledLeader): after an overload the
 * last heartbeat heard may be a deposed leader's, and crashing the wrong coordinator would
 * measure nothing. Nothing here throws on a slow takeover: the figure says what was seen,
 * with the new leader's own election log when it did not take over.
 */
async function measureTakeover(o: {
  counter: ReportCounter;
  coordinators: [CoordinatorProcess, CoordinatorProcess];
  live: number;
  seeded: number;
  maxWaitMs: number;
  log: (line: string) => void;
}): Promise<TakeoverFigure> {
  const { counter, coordinators, live, seeded, log } = o;
  const notMeasured = (reason: string): TakeoverFigure => {
    log(`    takeover not measured: ${reason}`);
    return {
      clients: live,
      seeded,
      crashed: null,
      newLeader: null,
      loadMs: null,
      firstHeartbeatMs: null,
      everyClientReportedMs: null,
      heartbeatToEveryClientMs: null,
      reported: 0,
      nodePresent: 0,
      gaveUp: reason,
    };
  };
  const settled = await waitFor(
    "settled leadership",
    () => settledLeader(counter.heartbeats, performance.now(), SETTLED) ?? undefined,
    o.maxWaitMs,
  ).catch(() => null);
  if (settled === null) {
    const ids = [
      ...new Set(
        counter.heartbeats.filter((h) => h.atMs > performance.now() - SETTLED.windowMs).map((h) => `${h.coordinatorId} (epoch ${h.epoch})`),
      ),
    ];
    return notMeasured(
      `leadership did not settle within ${Math.round(o.maxWaitMs / 1000)} s (heard lately: ${ids.join(", ") || "no heartbeat"})`,
    );
  }
  const victim = coordinators.find((c) => c.id === settled.coordinatorId);
  const survivor = coordinators.find((c) => c.id !== settled.coordinatorId);
  if (victim === undefined || survivor === undefined)
    return notMeasured(`the heartbeats name ${settled.coordinatorId}, which this bench did not start`);
  if (!survivor.running) return notMeasured(`${survivor.id}, which should take over, exited with ${String(survivor.exitCode)}`);

  log(
    `  takeover: SIGKILL of the leader ${victim.id} (epoch ${settled.epoch}) with ${live.toLocaleString("en")} stored clients; ${survivor.id} should take over`,
  );
  counter.watchEpoch = Math.max(counter.highestEpoch, settled.epoch);
  const survivorPid = survivor.child.pid!;
  const linesBefore = survivor.lines.length;
  const cpu0 = cpuOrNaN(survivorPid);
  const t0 = performance.now();
  /** When the survivor's first heartbeat under a newer epoch was heard (polled far more often than heartbeats drop off the kept list). */
  const newLeaderHeartbeat = () =>
    counter.heartbeats.find((h) => h.atMs >= t0 && h.coordinatorId === survivor.id && h.epoch > settled.epoch)?.atMs;
  victim.signal("SIGKILL");
  const firstHeartbeat = await waitFor("the new leader's heartbeat", newLeaderHeartbeat, o.maxWaitMs).catch(() => null);
  const survivorLogs = () =>
    survivor.lines.slice(linesBefore).flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  if (firstHeartbeat === null) {
    const waitedS = (performance.now() - t0) / 1000;
    const cores = (cpuOrNaN(survivorPid) - cpu0) / waitedS;
    const said = survivorLogs()
      .filter((l) => l.component === "election" || l.level === "warn" || l.level === "error")
      .slice(-8)
      .map(
        (l) =>
          `${String(l.level)} ${String(l.message)}${l.reason !== undefined ? ` (${String(l.reason)})` : ""}${l.error !== undefined ? `: ${String(l.error)}` : ""}`,
      );
    const reason =
      `no heartbeat from ${survivor.id} under an epoch above ${settled.epoch} within ${Math.round(waitedS)} s of the crash; ` +
      `${survivor.running ? `it is running and used ${cores.toFixed(2)} cores meanwhile` : `it exited with ${String(survivor.exitCode)}`}; ` +
      `its log since the crash: ${said.length > 0 ? said.join(" | ") : "nothing about the election"}`;
    log(`    ${reason}`);
    return {
      clients: live,
      seeded,
      crashed: victim.id,
      newLeader: survivor.id,
      loadMs: null,
      firstHeartbeatMs: null,
      everyClientReportedMs: null,
      heartbeatToEveryClientMs: null,
      reported: Math.min(live, counter.reportedAfter.size),
      nodePresent: Math.min(live, counter.presentAfter.size),
      gaveUp: reason,
    };
  }
  // The survivor is the only coordinator left: its own BecameLeader is no change to judge.
  const wait = await waitForProgress(
    firstHeartbeat,
    () => counter.reportedAfter.size,
    () => cpuOrNaN(survivorPid),
    () => 0,
    {
      wanted: live,
      counted: "reported",
      maxWaitMs: o.maxWaitMs,
      ...SATURATION,
    },
  );
  let everyMs: number | null = null;
  if (wait.done) everyMs = Math.round(Math.max(...counter.reportedAfter.values()) - t0);
  else log(`    stopped waiting for the new leader's reports: ${wait.reason}`);
  const loaded = survivorLogs().find((l) => l.message === "loaded stored registrations");
  const figure: TakeoverFigure = {
    clients: live,
    seeded,
    crashed: victim.id,
    newLeader: survivor.id,
    loadMs: typeof loaded?.ms === "number" ? loaded.ms : null,
    firstHeartbeatMs: Math.round(firstHeartbeat - t0),
    everyClientReportedMs: everyMs,
    heartbeatToEveryClientMs: everyMs === null ? null : Math.round(everyMs - (firstHeartbeat - t0)),
    reported: Math.min(live, counter.reportedAfter.size),
    nodePresent: Math.min(live, counter.presentAfter.size),
    gaveUp: wait.done ? null : wait.reason,
  };
  log(
    `    ${survivor.id}'s first heartbeat as leader after ${figure.firstHeartbeatMs} ms; it loaded ${live.toLocaleString("en")} registrations in ${String(figure.loadMs)} ms; ` +
      (everyMs !== null
        ? `every client reported ${String(figure.heartbeatToEveryClientMs)} ms after that heartbeat`
        : `${figure.reported.toLocaleString("en")} reported`) +
      `; ${figure.nodePresent.toLocaleString("en")} of them with a NodePresent`,
  );
  return figure;
}

/**
 * Silences `count` of the registered clients at once and measures silence → NodeDead, and
 * each client's last reply → its NodeDead.
 */
async function measureDetectionAt(
  nc: NatsConnection,
  counter: ReportCounter,
  prefix: string,
  n: number,
  count: number,
  silencedRanges: [number, number][],
  metricsUrl: string,
  log: (line: string) => void,
): Promise<DetectionFigure> {
  const settleFrom = performance.now();
  const settled = await waitFor(
    "the leader reading its replies as they come",
    () => (performance.now() - Math.max(counter.lastSlowReply, settleFrom) >= SETTLED_MS ? true : undefined),
    SETTLE_MAX_MS,
  ).catch(() => false);
  const settledAfterMs = settled ? Math.round(performance.now() - settleFrom) : null;
  const before = await scrape(metricsUrl);
  const from = n - count;
  log(
    `  detection: silencing ${count} of ${n.toLocaleString("en")} clients (` +
      (settledAfterMs !== null
        ? `after ${settledAfterMs} ms, once no NodeState for ${SETTLED_MS} ms reported a reply read more than ${SLOW_REPLY_MS} ms after its ping`
        : `the leader still read replies more than ${SLOW_REPLY_MS} ms late after ${SETTLE_MAX_MS} ms; measured anyway`) +
      ")",
  );
  const machine0 = sampleMachine();
  const t0 = performance.now();
  const answer = await control<SilenceAnswer>(nc, prefix, { op: "silence", from, to: n });
  silencedRanges.push([from, n]);
  const bound = P.deadTimeoutMs + P.pingIntervalMs;
  const subjects = Array.from({ length: count }, (_, i) => `${prefix}.${from + i}`);
  await waitFor("NodeDead for the silenced clients", () => subjects.every((s) => counter.dead.has(s)), bound + 10_000).catch(
    () => undefined,
  );
  const machine = machineLoadSince(machine0, CORES);
  const latencies = subjects.filter((s) => counter.dead.has(s)).map((s) => counter.dead.get(s)! - t0);
  // Both clocks are the machine's: the simulator's times are ms since the Unix epoch.
  const sinceLastReply = subjects.flatMap((s, i) => {
    const dead = counter.dead.get(s);
    const last = answer.lastReplyAt[i];
    return dead === undefined || last === null || last === undefined ? [] : [performance.timeOrigin + dead - last];
  });
  const toPublish = subjects.flatMap((s, i) => {
    const ts = counter.deadPublished.get(s);
    const last = answer.lastReplyAt[i];
    return ts === undefined || last === null || last === undefined ? [] : [ts - last];
  });
  const [p50, p99] = percentiles(latencies, [0.5, 0.99]);
  const [l50, l99] = percentiles(sinceLastReply, [0.5, 0.99]);
  const [t50, t99] = percentiles(toPublish, [0.5, 0.99]);
  const readLag = subjects.flatMap((s, i) => {
    const seen = counter.deadLastSeen.get(s);
    const last = answer.lastReplyAt[i];
    return seen === undefined || last === null || last === undefined ? [] : [seen - last];
  });
  const pastDeadline = subjects.flatMap((s) => {
    const ts = counter.deadPublished.get(s);
    const seen = counter.deadLastSeen.get(s);
    return ts === undefined || seen === undefined ? [] : [ts - (seen + P.deadTimeoutMs)];
  });
  const [r50, r99] = percentiles(readLag, [0.5, 0.99]);
  const [d50, d99] = percentiles(pastDeadline, [0.5, 0.99]);
  const figure: DetectionFigure = {
    clients: n,
    silenced: count,
    p50Ms: Math.round(p50!),
    p99Ms: Math.round(p99!),
    maxMs: Math.round(Math.max(...latencies)),
    lastReply: { p50Ms: Math.round(l50!), p99Ms: Math.round(l99!), maxMs: Math.round(Math.max(...sinceLastReply)) },
    lastReplyToPublish: { p50Ms: Math.round(t50!), p99Ms: Math.round(t99!), maxMs: Math.round(Math.max(...toPublish)) },
    replyReadLag: { p50Ms: Math.round(r50!), p99Ms: Math.round(r99!) },
    pastDeadline: { p50Ms: Math.round(d50!), p99Ms: Math.round(d99!) },
    missed: count - latencies.length,
    boundMs: DETECTION_BOUND_MS,
    sweepStalls: 0,
    sweepStalledMs: 0,
    settledAfterMs,
    machine,
  };
  const after = await scrape(metricsUrl);
  figure.sweepStalls = after.sweepStalls - before.sweepStalls;
  figure.sweepStalledMs = after.sweepStalledMs - before.sweepStalledMs;
  log(
    `    silence → NodeDead: p50 ${figure.p50Ms} ms, p99 ${figure.p99Ms} ms, max ${figure.maxMs} ms; last reply → NodeDead published: ` +
      `p50 ${figure.lastReplyToPublish.p50Ms} ms, p99 ${figure.lastReplyToPublish.p99Ms} ms, max ${figure.lastReplyToPublish.maxMs} ms (bound ${figure.boundMs} ms); ` +
      `of which the leader read the last reply after p50 ${figure.replyReadLag.p50Ms} ms, p99 ${figure.replyReadLag.p99Ms} ms and published past its deadline by p50 ${figure.pastDeadline.p50Ms} ms, ` +
      `p99 ${figure.pastDeadline.p99Ms} ms; received here: p50 ${figure.lastReply.p50Ms} ms, p99 ${figure.lastReply.p99Ms} ms, max ${figure.lastReply.maxMs} ms; missed ${figure.missed}; ${figure.sweepStalls} stalled sweeps (${figure.sweepStalledMs} ms credited); machine: ${describeLoad(machine)}`,
  );
  return figure;
}

/** The figures this benchmark reads from a coordinator's Prometheus endpoint. */
async function scrape(url: string): Promise<{ heapBytes: number; loopDelayP99Ms: number; sweepStalls: number; sweepStalledMs: number }> {
  // A saturated leader may answer late, or not at all: its figures are then unknown.
  const text = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    .then((r) => r.text())
    .catch(() => "");
  const value = (pattern: RegExp) => {
    const m = pattern.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  return {
    heapBytes: value(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+-]+)$/m),
    loopDelayP99Ms: round2(value(/^presence_event_loop_delay_seconds\{[^}]*quantile="0\.99"[^}]*\} ([\d.e+-]+)$/m) * 1000),
    sweepStalls: value(/^presence_sweep_stalls_total(?:\{[^}]*\})? ([\d.e+-]+)$/m),
    sweepStalledMs: Math.round(value(/^presence_sweep_stalled_seconds_total(?:\{[^}]*\})? ([\d.e+-]+)$/m) * 1000),
  };
}

const mb = (bytes: number | null) => (bytes === null || Number.isNaN(bytes) ? "?" : `${(bytes / 1e6).toFixed(0)} MB`);

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
