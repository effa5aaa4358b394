/**
 * Capacity figures for `npm run bench`: how many clients one leader keeps alive at default
 * timings, what each costs, and the same load driven by a bare pinger written directly on
 * the NATS client, for the ratio coordinator / bare.
 *
 * Processes, all on loopback: one nats-server; a leader and a follower coordinator
 * started through the built CLI; the client simulator (bench/client-sim.ts) answering every
 * client's pings with one wildcard subscription; the bare pinger (bench/bare-pinger.ts)
 * when its turn comes; and this process, which observes every report. CPU and memory are
 * read from /proc for each process, so each is measured on its own.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../src/config.js";
import { decodeReport, REPORT_HEADERS, type ReportType } from "../src/protocol/presence.js";
import { NatsServer } from "../src/services/nats-server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../test/helpers/coordinators.js";
import { control, percentiles } from "./client-sim.js";

const CLK_TCK = 100; // Linux's USER_HZ; /proc/<pid>/stat counts CPU in these ticks
const P = DEFAULT_MONITOR_TIMINGS;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may hold spaces: the fields after it start past the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident memory of a process in bytes, from /proc. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** A helper process of the benchmark (tsx), killed when this process exits. */
export class Helper {
  private static readonly live = new Set<ChildProcess>();
  static {
    process.once("exit", () => {
      for (const c of Helper.live) c.kill("SIGKILL");
    });
  }
  readonly ready: Promise<void>;
  constructor(readonly child: ChildProcess) {
    Helper.live.add(child);
    child.once("exit", () => Helper.live.delete(child));
    let err = "";
    child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    this.ready = new Promise((resolve, reject) => {
      child.stdout?.on("data", (c: Buffer) => {
        if (c.toString().includes("ready")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`helper exited with ${String(code)} before it was ready: ${err}`)));
    });
  }
  static start(script: string, args: string[]): Helper {
    const path = fileURLToPath(new URL(script, import.meta.url));
    return new Helper(spawn(process.execPath, ["--import", "tsx", path, ...args], { stdio: ["ignore", "pipe", "pipe"] }));
  }
  get pid(): number {
    return this.child.pid!;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/** Every presence report seen, counted by type, with first/last times per client where needed. */
class ReportCounter {
  readonly byType = new Map<ReportType, number>();
  readonly present = new Map<string, number>();
  readonly dead = new Map<string, number>();
  readonly suspects: string[] = [];
  /** Clients that got any report from a coordinator with `epoch` > `watchEpoch`: first time seen. */
  readonly reportedAfter = new Map<string, number>();
  watchEpoch = Number.POSITIVE_INFINITY;
  highestEpoch = 0;
  /** Election reports: a coordinator took the lease (overload shows as leadership passing back and forth). */
  becameLeader = 0;
  /** The coordinator whose heartbeat was heard last. */
  leaderId: string | null = null;
  constructor(nc: NatsConnection, cluster: string) {
    nc.subscribe(`coordinator.leader.heartbeat.${cluster}`, {
      callback: (_e, m) => {
        const h = JSON.parse(m.string()) as { coordinatorId: string; resigning?: boolean };
        if (h.resigning !== true) this.leaderId = h.coordinatorId;
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
        else if (r.type === "NodeDead" && !this.dead.has(r.clientSubject)) this.dead.set(r.clientSubject, now);
        else if (r.type === "NodeSuspect") this.suspects.push(r.clientSubject);
        if (r.epoch > this.watchEpoch && !this.reportedAfter.has(r.clientSubject)) this.reportedAfter.set(r.clientSubject, now);
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
  };
  leader: {
    cpuCores: number;
    cpuMicrosPerClientSecond: number;
    rssBytes: number;
    rssPerClientBytes: number;
    /** V8 heap in use at the end of the hold, and its growth per client since the start. */
    heapBytes: number;
    heapPerClientBytes: number;
    /** p99 of the leader's event-loop delay over the hold. */
    eventLoopDelayP99Ms: number;
  };
  pingsPerSecond: number;
  pingIntervalMs: { p50: number; p99: number };
  simulatorCpuCores: number;
  bare: { cpuCores: number; cpuMicrosPerClientSecond: number; pingsPerSecond: number; pingIntervalMs: { p50: number; p99: number } } | null;
  ratio: { cpuPerClient: number; pingRate: number } | null;
  holdSeconds: number;
}

export interface DetectionFigure {
  clients: number;
  silenced: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  missed: number;
  boundMs: number;
}

export interface TakeoverFigure {
  clients: number;
  loadMs: number | null;
  firstHeartbeatMs: number;
  everyClientReportedMs: number | null;
}

export interface CapacityOptions {
  levels: number[];
  /** Keep going past the last level, doubling, while the leader holds (up to this many clients). */
  beyondUpTo: number;
  holdSeconds: number;
  bareSeconds: number;
  /** How long a level waits for NodePresent of every client it registered. */
  registerWaitMs: number;
  /** Levels at which detection latency is measured (besides the largest that holds). */
  detectAt: number[];
  log: (line: string) => void;
}

export interface CapacityResult {
  levels: CapacityLevel[];
  detection: DetectionFigure[];
  takeover: TakeoverFigure | null;
}

async function sampleStats(nc: NatsConnection, prefix: string, reset: boolean) {
  return control<{ answered: number; elapsedMs: number; cpuMs: number; intervalP50Ms: number; intervalP99Ms: number }>(nc, prefix, {
    op: "stats",
    reset,
  });
}

/**
 * Runs the capacity levels one after the other on one leader: each level registers the
 * clients that take the count up to it, lets them settle, holds for `holdSeconds` and
 * measures; then the bare pinger drives the same clients for `bareSeconds`.
 */
export async function measureCapacity(options: CapacityOptions): Promise<CapacityResult> {
  const { log } = options;
  const server = await NatsServer.start({ name: "bench-capacity" });
  const cluster = "benchcap";
  const prefix = "cap";
  const nc = await connect({ servers: server.url, name: "bench observer" });
  const counter = new ReportCounter(nc, cluster);
  // The leader's own figures (event-loop delay, heap) come from its metrics endpoint.
  const leader = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "cap-a", args: ["--metrics-port", "0"] });
  let follower: CoordinatorProcess | undefined;
  const sim = Helper.start("./client-sim.ts", [server.url, cluster, prefix]);
  const levels: CapacityLevel[] = [];
  const detection: DetectionFigure[] = [];
  let takeover: TakeoverFigure | null = null;
  /** Clients silenced for a detection measurement: no longer expected to answer. */
  const silencedRanges: [number, number][] = [];
  let registered = 0;
  try {
    await sim.ready;
    await waitFor("the leader", () => leader.logs().some((l) => l.message === "became leader"), 15_000);
    follower = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "cap-b" });
    await waitFor("the follower", () => follower!.logs().some((l) => l.message === "following the leader"), 15_000);
    const leaderPid = leader.child.pid!;
    const rssStart = rssBytes(leaderPid);
    const metricsUrl = await waitFor("the leader's metrics URL", () => leader.logs().find((l) => l.message === "metrics listening")?.url as string | undefined, 10_000);
    const heapStart = (await scrape(metricsUrl)).heapBytes;

    const wanted = [...options.levels];
    for (let i = 0; i < wanted.length; i++) {
      const n = wanted[i]!;
      if (n <= registered) continue;
      log(`  capacity: ${n.toLocaleString("en")} clients: registering ${(n - registered).toLocaleString("en")} more`);
      const t0 = performance.now();
      const elections0 = counter.becameLeader;
      await control(nc, prefix, { op: "register", from: registered, to: n }, 300_000);
      const expected = n - silencedRanges.reduce((k, [a, b]) => k + (b - a), 0);
      let allPresent = true;
      try {
        await waitFor("NodePresent for every client", () => counter.present.size >= n, options.registerWaitMs);
      } catch {
        // The leader cannot keep up: measure it anyway, overloaded as it is.
        allPresent = false;
        log(`    only ${counter.present.size.toLocaleString("en")} of ${n.toLocaleString("en")} clients were reported present after ${options.registerWaitMs / 1000} s`);
      }
      const times: number[] = [];
      for (let k = registered; k < n; k++) {
        const at = counter.present.get(`${prefix}.${k}`);
        if (at !== undefined) times.push(at - t0);
      }
      const [p50, p99] = percentiles(times, [0.5, 0.99]);
      const allPresentMs = allPresent ? Math.round(Math.max(...times)) : null;
      registered = n;
      // Settle: let every client reach its ping rhythm, then measure from a clean state.
      await sleep(2 * P.pingIntervalMs + 1000);
      const dead0 = counter.count("NodeDead");
      const suspect0 = counter.count("NodeSuspect");
      await sampleStats(nc, prefix, true);
      await scrape(metricsUrl); // starts the event-loop delay histogram afresh
      // Both coordinators: when an overloaded leader loses its lease, the other one leads.
      const followerPid = follower.child.pid!;
      const cpu0 = cpuSeconds(leaderPid) + cpuSeconds(followerPid);
      const t1 = performance.now();
      log(`    holding ${expected.toLocaleString("en")} answering clients for ${options.holdSeconds} s`);
      await sleep(options.holdSeconds * 1000);
      const seconds = (performance.now() - t1) / 1000;
      const cpu = (cpuSeconds(leaderPid) + cpuSeconds(followerPid) - cpu0) / seconds;
      const stats = await sampleStats(nc, prefix, true);
      const rss = rssBytes(leaderPid);
      const scraped = await scrape(metricsUrl);
      const falseDead = counter.count("NodeDead") - dead0;
      const falseSuspect = counter.count("NodeSuspect") - suspect0;
      const level: CapacityLevel = {
        clients: n,
        holds: allPresent && falseDead === 0 && falseSuspect === 0 && counter.becameLeader === elections0,
        leaderChanges: counter.becameLeader - elections0,
        falseDead,
        falseSuspect,
        registerMs: { p50: p50!, p99: p99!, allPresentMs, presentWithin: times.length },
        leader: {
          cpuCores: round2(cpu),
          cpuMicrosPerClientSecond: round2((cpu * 1e6) / expected),
          rssBytes: rss,
          rssPerClientBytes: Math.round((rss - rssStart) / expected),
          heapBytes: scraped.heapBytes,
          heapPerClientBytes: Math.round((scraped.heapBytes - heapStart) / expected),
          eventLoopDelayP99Ms: scraped.loopDelayP99Ms,
        },
        pingsPerSecond: Math.round(stats.answered / (stats.elapsedMs / 1000)),
        pingIntervalMs: { p50: stats.intervalP50Ms, p99: stats.intervalP99Ms },
        simulatorCpuCores: round2(stats.cpuMs / stats.elapsedMs),
        bare: null,
        ratio: null,
        holdSeconds: Math.round(seconds),
      };
      log(
        `    ${level.holds ? "holds" : "DOES NOT HOLD"}${allPresent ? "" : " (not every client registered)"}${level.leaderChanges > 0 ? ` (leadership changed ${level.leaderChanges} times)` : ""}: false dead ${falseDead}, false suspect ${falseSuspect}; leader ${level.leader.cpuCores} cores ` +
          `(${level.leader.cpuMicrosPerClientSecond} µs/s per client), heap ${(level.leader.heapBytes / 1e6).toFixed(0)} MB (${level.leader.heapPerClientBytes} B/client), ` +
          `event-loop delay p99 ${level.leader.eventLoopDelayP99Ms} ms; ${level.pingsPerSecond.toLocaleString("en")} pings/s, ` +
          `interval p50 ${level.pingIntervalMs.p50} ms p99 ${level.pingIntervalMs.p99} ms`,
      );

      if (options.bareSeconds > 0) {
        // The same clients, pinged by a bare loop, while the coordinator keeps running: the
        // simulator counts both, so subtract the coordinator's rate measured just before.
        const bare = Helper.start("./bare-pinger.ts", [server.url, prefix, String(n), String(P.pingIntervalMs)]);
        await bare.ready;
        await sleep(1500);
        const bcpu0 = cpuSeconds(bare.pid);
        await control(nc, `${prefix}.bare`, { op: "stats" }); // starts its counts afresh
        const tb = performance.now();
        await sleep(options.bareSeconds * 1000);
        const bseconds = (performance.now() - tb) / 1000;
        const bcpu = (cpuSeconds(bare.pid) - bcpu0) / bseconds;
        await sampleStats(nc, prefix, true);
        const bareStats = await control<{ sent: number; replies: number; elapsedMs: number; intervalP50Ms: number; intervalP99Ms: number }>(
          nc,
          `${prefix}.bare`,
          { op: "stats" },
        );
        await bare.stop();
        const barePings = Math.round(bareStats.replies / (bareStats.elapsedMs / 1000));
        level.bare = {
          cpuCores: round2(bcpu),
          cpuMicrosPerClientSecond: round2((bcpu * 1e6) / n),
          pingsPerSecond: barePings,
          pingIntervalMs: { p50: bareStats.intervalP50Ms, p99: bareStats.intervalP99Ms },
        };
        level.ratio = {
          cpuPerClient: round2(level.leader.cpuMicrosPerClientSecond / level.bare.cpuMicrosPerClientSecond),
          pingRate: round2(level.pingsPerSecond / (barePings * (expected / n))),
        };
        log(
          `    bare pinger: ${level.bare.cpuCores} cores (${level.bare.cpuMicrosPerClientSecond} µs/s per client), ${barePings.toLocaleString("en")} replies/s; ` +
            `coordinator/bare: CPU per client ${level.ratio.cpuPerClient}×, ping rate ${level.ratio.pingRate}×`,
        );
      }
      levels.push(level);

      if (options.detectAt.includes(n)) {
        detection.push(await measureDetectionAt(nc, counter, prefix, n, Math.max(20, Math.round(n / 100)), silencedRanges, log));
      }
      const last = i === wanted.length - 1;
      if (last && level.holds && n * 2 <= options.beyondUpTo) wanted.push(n * 2);
    }

    const held = levels.filter((l) => l.holds);
    const largest = held.at(-1);
    if (largest !== undefined && !detection.some((d) => d.clients === largest.clients) && largest.clients === registered) {
      detection.push(await measureDetectionAt(nc, counter, prefix, largest.clients, Math.max(20, Math.round(largest.clients / 100)), silencedRanges, log));
    }

    // Takeover: the leader crashes; the follower loads every stored registration.
    if (registered > 0 && follower !== undefined) {
      const live = registered - silencedRanges.reduce((k, [a, b]) => k + (b - a), 0);
      // The one that leads now crashes (after an overload it may be the second one).
      const [victim, survivor] = counter.leaderId === "cap-b" ? [follower, leader] : [leader, follower];
      log(`  takeover: SIGKILL of the leader ${victim.id} with ${live.toLocaleString("en")} stored clients`);
      counter.watchEpoch = counter.highestEpoch;
      const hb = nc.subscribe(`coordinator.leader.heartbeat.${cluster}`, { max: 1000 });
      let firstHeartbeat = Number.NaN;
      void (async () => {
        for await (const m of hb) {
          const h = JSON.parse(m.string()) as { coordinatorId: string };
          if (h.coordinatorId === survivor.id) {
            firstHeartbeat = performance.now();
            hb.unsubscribe();
          }
        }
      })();
      const t0 = performance.now();
      const linesBefore = survivor.lines.length;
      victim.signal("SIGKILL");
      await waitFor("the new leader's heartbeat", () => !Number.isNaN(firstHeartbeat), 20_000);
      let everyMs: number | null = null;
      try {
        await waitFor("a report from the new leader for every live client", () => counter.reportedAfter.size >= live, options.registerWaitMs);
        everyMs = Math.round(Math.max(...counter.reportedAfter.values()) - t0);
      } catch {
        log(`    only ${counter.reportedAfter.size} of ${live} clients were reported by the new leader within ${options.registerWaitMs / 1000} s`);
      }
      const loaded = survivor.lines
        .slice(linesBefore)
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        })
        .find((l) => l.message === "loaded stored registrations");
      takeover = {
        clients: live,
        loadMs: typeof loaded?.ms === "number" ? loaded.ms : null,
        firstHeartbeatMs: Math.round(firstHeartbeat - t0),
        everyClientReportedMs: everyMs,
      };
      log(
        `    new leader's first heartbeat after ${takeover.firstHeartbeatMs} ms; it loaded ${live.toLocaleString("en")} registrations in ${String(takeover.loadMs)} ms; ` +
          `every client reported after ${String(everyMs)} ms`,
      );
    }
  } finally {
    await Promise.allSettled([leader.kill(), follower?.kill(), sim.stop()]);
    await nc.close();
    await server.stop();
  }
  return { levels, detection, takeover };
}

/** Silences `count` of the registered clients at once and measures silence → NodeDead. */
async function measureDetectionAt(
  nc: NatsConnection,
  counter: ReportCounter,
  prefix: string,
  n: number,
  count: number,
  silencedRanges: [number, number][],
  log: (line: string) => void,
): Promise<DetectionFigure> {
  const from = n - count;
  log(`  detection: silencing ${count} of ${n.toLocaleString("en")} clients`);
  const t0 = performance.now();
  await control(nc, prefix, { op: "silence", from, to: n });
  silencedRanges.push([from, n]);
  const bound = P.deadTimeoutMs + P.pingIntervalMs;
  const subjects = Array.from({ length: count }, (_, i) => `${prefix}.${from + i}`);
  await waitFor("NodeDead for the silenced clients", () => subjects.every((s) => counter.dead.has(s)), bound + 10_000).catch(() => undefined);
  const latencies = subjects.filter((s) => counter.dead.has(s)).map((s) => counter.dead.get(s)! - t0);
  const [p50, p99] = percentiles(latencies, [0.5, 0.99]);
  const figure: DetectionFigure = {
    clients: n,
    silenced: count,
    p50Ms: Math.round(p50!),
    p99Ms: Math.round(p99!),
    maxMs: Math.round(Math.max(...latencies)),
    missed: count - latencies.length,
    boundMs: bound + 250,
  };
  log(`    silence → NodeDead: p50 ${figure.p50Ms} ms, p99 ${figure.p99Ms} ms, max ${figure.maxMs} ms (bound ${figure.boundMs} ms), missed ${figure.missed}`);
  return figure;
}

/** The figures this benchmark reads from a coordinator's Prometheus endpoint. */
async function scrape(url: string): Promise<{ heapBytes: number; loopDelayP99Ms: number }> {
  const text = await (await fetch(url)).text();
  const value = (pattern: RegExp) => {
    const m = pattern.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  return {
    heapBytes: value(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+-]+)$/m),
    loopDelayP99Ms: round2(value(/^presence_event_loop_delay_seconds\{[^}]*quantile="0\.99"[^}]*\} ([\d.e+-]+)$/m) * 1000),
  };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
