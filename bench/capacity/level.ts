/**
 * One level of the capacity climb: registers the clients that take the count up to it,
 * waits for their NodePresent (giving up early on a saturated leader), lets them settle,
 * holds them for the hold time and measures the leader, the simulator and the machine;
 * harness/capacity-judge.ts says whether the level holds.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config/config.js";
import { judgeLevel, type HoldCriteria } from "../../harness/capacity-judge.js";
import { control, percentiles } from "../../harness/client-sim.js";
import type { CoordinatorProcess } from "../../harness/coordinators.js";
import { cpuSeconds, rssBytes } from "../../harness/processes.js";
import { describeLoad, machineLoadSince, sampleMachine } from "../machine-load.js";
import type { CapacityLevel, CapacityOptions } from "./figures.js";
import type { ReportCounter } from "./observer.js";
import { CORES, mb, round2, SATURATION, sampleStats, scrape, sleep, waitForProgress } from "./readings.js";

const P = DEFAULT_MONITOR_TIMINGS;

/** What every level of the climb measures with: the processes, the observer, and the leader's readings before the first registration. */
export interface CapacityRig {
  nc: NatsConnection;
  serverUrl: string;
  prefix: string;
  counter: ReportCounter;
  leader: CoordinatorProcess;
  follower: CoordinatorProcess;
  leaderPid: number;
  followerPid: number;
  /** Both coordinators' CPU seconds (NaN once one is gone): whichever leads, a saturated one shows. */
  coordinatorsCpu: () => number;
  metricsUrl: string;
  rssStart: number;
  heapStart: number;
  liveStart: number | null;
  /** The leader's live heap after a full GC; null (and a line saying why) when it cannot be read. */
  liveHeap: () => Promise<number | null>;
  criteria: HoldCriteria;
  options: CapacityOptions;
}

/**
 * Registers clients `from` .. `n - 1` and measures the level of `n` clients, of which
 * `expected` answer (the others were silenced for a detection measurement). `allPresent`
 * says whether every client added was reported present within the wait, and if not,
 * `waitReason` why the wait stopped.
 */
export async function measureLevel(
  rig: CapacityRig,
  from: number,
  n: number,
  expected: number,
): Promise<{ level: CapacityLevel; allPresent: boolean; waitReason: string }> {
  const { nc, prefix, counter, leader, follower, leaderPid, followerPid, coordinatorsCpu, metricsUrl, options } = rig;
  const { rssStart, heapStart, liveStart, liveHeap, criteria } = rig;
  const { log } = options;
  log(`  capacity: ${n.toLocaleString("en")} clients: registering ${(n - from).toLocaleString("en")} more`);
  const t0 = performance.now();
  const elections0 = counter.becameLeader;
  const logFrom = { leader: leader.logs().length, follower: follower.logs().length };
  await control(nc, prefix, { op: "register", from, to: n }, 300_000);
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
  for (let k = from; k < n; k++) {
    const at = counter.present.get(`${prefix}.${k}`);
    if (at !== undefined) times.push(at - t0);
  }
  const [p50, p99] = percentiles(times, [0.5, 0.99]);
  const allPresentMs = allPresent ? Math.round(Math.max(...times)) : null;
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
  return { level, allPresent, waitReason: wait.reason };
}
