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
 *
 * This file runs the climb; its parts are in bench/capacity/: the observer (observer.ts),
 * one level (level.ts), the bare loop beside it (bare.ts), detection (detection.ts), the
 * takeover (takeover.ts), what is read from the processes (readings.ts) and the figures
 * returned (figures.ts).
 */
import { connect } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../src/config/config.js";
import { createLogger } from "../src/observe/logger.js";
import { NatsServer } from "../src/nats/server.js";
import { KvRegistrationStore } from "../src/presence/registration-store.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";
import { Helper, rssBytes } from "../harness/processes.js";
import { DEFAULT_HOLD_CRITERIA, silencedAt } from "../harness/capacity-judge.js";
import { inspectorUrlIn, liveHeapBytes, withInspector } from "../harness/live-heap.js";
import { measureBare } from "./capacity/bare.js";
import { measureDetectionAt } from "./capacity/detection.js";
import type { CapacityLevel, CapacityOptions, CapacityResult, DetectionFigure, TakeoverFigure } from "./capacity/figures.js";
import { measureLevel, type CapacityRig } from "./capacity/level.js";
import { ReportCounter } from "./capacity/observer.js";
import { cpuOrNaN, scrape } from "./capacity/readings.js";
import { measureTakeover } from "./capacity/takeover.js";

const P = DEFAULT_MONITOR_TIMINGS;

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

    const rig: CapacityRig = {
      nc,
      serverUrl: server.url,
      prefix,
      counter,
      leader,
      follower,
      leaderPid,
      followerPid,
      coordinatorsCpu,
      metricsUrl,
      rssStart,
      heapStart,
      liveStart,
      liveHeap,
      criteria,
      options,
    };

    const wanted = [...options.levels].sort((a, b) => a - b);
    for (let i = 0; i < wanted.length; i++) {
      const n = wanted[i]!;
      if (n <= registered) continue;
      const expected = n - silencedCount();
      const { level, allPresent, waitReason } = await measureLevel(rig, registered, n, expected);
      registered = n;
      if (options.bareSeconds > 0) await measureBare(rig, level, n, expected);
      levels.push(level);

      // Detection needs every client monitored; a level that holds only narrowly still has that.
      if (options.detectAt.includes(n)) {
        if (allPresent) detection.push(await measureDetectionAt(nc, counter, prefix, n, silencedAt(n), silencedRanges, metricsUrl, log));
        else
          detectionNotMeasured.push({
            clients: n,
            reason: `only ${level.registerMs.presentWithin.toLocaleString("en")} of its clients were registered (${waitReason})`,
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
