/**
 * `npm run soak`: a long run that looks for leaks. One nats-server, a leader and a follower
 * (the built CLI, default timings, `--metrics-port`), and simulated clients that churn all
 * the time: every second some die (stop answering, so that the leader reports them dead
 * and removes them), some leave, and the dead and the left register again.
 *
 * Every `--sample` seconds it reads the leader's /metrics (heap used, resident memory,
 * active handles and requests, event-loop delay, clients monitored), and it sums them up
 * per minute with the reports seen in it. Heap used swings by tens of MB between two
 * collections, so each minute keeps its lowest reading, the heap floor: what is left after
 * a collection, which is what grows when something leaks. At the end it drops the warm-up,
 * fits a line through the floors, and writes `bench/results/soak-<date>.json` with every
 * minute and the verdict:
 *   - heap flat: the fitted growth of the floor over the measured span is under 10 % of its
 *     median, and the last quarter's median floor is not above the first quarter's by more
 *     than 10 %;
 *   - rss bounded: the last quarter's median resident memory is at most 25 % above the first's;
 *   - handles flat: the most and the fewest handles differ by at most 5 after warm-up.
 * It also checks what a churn run must never show: a client that kept answering reported
 * dead, a death later than dead timeout + ping interval + slack, a client that answers
 * reported suspect, a leave without a NodeLeft in time, a report of a client after it left,
 * and a leader change (there is no fault here). Suspects and leaves are judged per client
 * with the chaos run's checks.
 *
 * Exit 0 when everything holds, 1 when something does not, 2 for bad flags.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../src/config/config.js";
import { parseHeartbeat, subjects } from "../src/protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS } from "../src/protocol/presence.js";
import { createRandom, newSeed } from "../src/machines/random.js";
import { NatsServer } from "../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";
import { DEFAULT_CHAOS_TIMINGS, type ClientAction, type SeenHeartbeat, type SeenPresence } from "../harness/chaos-invariants/record.js";
import { blindWindows } from "../harness/chaos-invariants/timeline.js";
import { verdictOf } from "../harness/chaos-invariants/verdict.js";
import { SimulatedClients } from "../harness/client-sim.js";
import { judgeChurn, judgeDeaths, SOAK_DEATH_SLACK_MS, type Silence } from "../harness/soak-checks.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    warmup: { type: "string" },
    sample: { type: "string", default: "5" },
    clients: { type: "string", default: "500" },
    churn: { type: "string", default: "10" },
    json: { type: "string" },
  },
});
const usage = (message: string): never => {
  process.stderr.write(
    `soak: ${message}\nusage: npm run soak -- [--minutes <n>] [--warmup <minutes>] [--sample <s>] [--clients <n>] [--churn <per second>] [--json <file>]\n`,
  );
  process.exit(2);
};
const minutes = Number(values.minutes);
if (!Number.isFinite(minutes) || minutes < 1) usage("--minutes must be a number, at least 1");
const warmupMinutes = values.warmup !== undefined ? Number(values.warmup) : Math.min(5, minutes / 4);
if (!Number.isFinite(warmupMinutes) || warmupMinutes < 0 || warmupMinutes >= minutes) usage("--warmup must be under --minutes");
const sampleS = Number(values.sample);
if (!Number.isFinite(sampleS) || sampleS < 1) usage("--sample must be a number of seconds, at least 1");
const clientCount = Number(values.clients);
if (!Number.isInteger(clientCount) || clientCount < 10) usage("--clients must be a whole number of at least 10");
const churnPerS = Number(values.churn);
if (!Number.isInteger(churnPerS) || churnPerS < 1 || churnPerS > clientCount / 5)
  usage("--churn must be a whole number from 1 to a fifth of --clients");

const CLUSTER = "soak";
const PREFIX = "soak";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One reading of the leader's /metrics. */
interface Reading {
  heapUsedMB: number;
  rssMB: number;
  handles: number;
  /** Active timers (setTimeout/setInterval, not counted among handles since Node 11). */
  timers: number;
  requests: number;
  eventLoopP99Ms: number;
  /** Clients alive. */
  clients: number;
  /** Clients alive or suspect: every one the leader pings. */
  monitored: number;
}

/** One minute of the run. */
interface Minute {
  /** Minutes since the clients registered, at the end of this one. */
  atMin: number;
  /** The lowest heap used of the minute's readings: the heap after a collection. */
  heapFloorMB: number;
  heapPeakMB: number;
  rssPeakMB: number;
  /** The most active handles, timers and requests of the minute's readings. */
  handles: number;
  timers: number;
  requests: number;
  eventLoopP99Ms: number;
  /** Clients alive at the minute's last reading. */
  clients: number;
  /** Active timers per monitored (alive or suspect) client, the most of the minute's readings. */
  timersPerClient: number;
  /** Reports seen in the minute, by type. */
  reports: Record<string, number>;
}

/** One value of a Prometheus text exposition, by metric name: the first series, or the first whose labels include `label`. */
function metric(text: string, name: string, label?: string): number {
  const series = label === undefined ? "(?:\\{[^}]*\\})?" : `\\{(?:[^}]*,)?${label}(?:,[^}]*)?\\}`;
  const m = new RegExp(`^${name}${series} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
};
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Ctrl-C or SIGTERM: the run ends at the next reading, and its servers and coordinators are stopped. */
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => (interrupted = true));

async function main(): Promise<number> {
  const seed = newSeed();
  const random = createRandom(seed);
  const server = await NatsServer.start();
  const coordinators: CoordinatorProcess[] = [];
  const nc = await connect({ servers: server.url, name: "soak" });
  try {
    for (const id of ["soak-a", "soak-b"]) {
      coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: CLUSTER, id, args: ["--metrics-port", "0"] }));
    }
    const leaderIds = new Set<string>();
    const counts = new Map<string, number>();
    const deaths: { subject: string; at: number }[] = [];
    /** Every report and heartbeat with its arrival time, and what the soak did to each client: judged per client at the end. */
    const presence: SeenPresence[] = [];
    const heartbeats: SeenHeartbeat[] = [];
    const actions: ClientAction[] = [];
    nc.subscribe(subjects.heartbeat(CLUSTER), {
      callback: (_e, m) => {
        try {
          const hb = parseHeartbeat(m.data);
          leaderIds.add(`${hb.coordinatorId}@${hb.epoch}`);
          heartbeats.push({ at: performance.now(), coordinatorId: hb.coordinatorId, epoch: hb.epoch });
        } catch {
          // not a heartbeat of ours
        }
      },
    });
    nc.subscribe(presenceSubjects.report(CLUSTER), {
      callback: (_e, m) => {
        const r = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding));
        const at = performance.now();
        counts.set(r.type, (counts.get(r.type) ?? 0) + 1);
        if (r.type === "NodeDead") deaths.push({ subject: r.clientSubject, at });
        presence.push({ at, type: r.type, clientSubject: r.clientSubject, coordinatorId: r.coordinatorId, epoch: r.epoch, seq: r.seq });
      },
    });
    await waitFor("a leader", () => leaderIds.size > 0, 20_000);
    const [first] = [...leaderIds];
    const leader = coordinators.find((c) => first!.startsWith(`${c.id}@`))!;
    const metricsUrl = await waitFor(
      "the leader's metrics URL",
      () => leader.logs().find((l) => l.message === "metrics listening")?.url as string | undefined,
      10_000,
    );

    const sim = new SimulatedClients(nc, CLUSTER, PREFIX);
    const subject = (n: number) => SimulatedClients.subject(PREFIX, n);
    await sim.register(0, clientCount);
    const registeredAt = performance.now();
    for (let n = 0; n < clientCount; n++) actions.push({ at: registeredAt, subject: subject(n), kind: "register" });
    process.stdout.write(
      `soak: ${clientCount} clients, churn ${churnPerS}/s, ${minutes} min (${warmupMinutes} warm-up), leader ${leader.id}, seed ${seed}\n`,
    );

    // The churn: each second, `churnPerS` live clients are silenced (they will be reported
    // dead) or leave, and those silenced or gone for 8 s (dead by then) register again.
    type Away = { n: number; since: number; how: "die" | "leave" };
    const away: Away[] = [];
    const awaySet = new Set<number>();
    /** Every silence of every client: a NodeDead outside one is false. */
    const silences = new Map<string, Silence[]>();
    const started = performance.now();
    const endAt = started + minutes * 60_000;
    let churned = 0;
    const churn = setInterval(() => {
      const now = performance.now();
      while (away.length > 0 && now - away[0]!.since >= 8000) {
        const a = away.shift()!;
        awaySet.delete(a.n);
        if (a.how === "die") {
          silences.get(subject(a.n))!.at(-1)!.to = now;
          actions.push({ at: now, subject: subject(a.n), kind: "revive" });
        }
        sim.revive([subject(a.n)]);
        void sim.register(a.n, a.n + 1).then(() => actions.push({ at: performance.now(), subject: subject(a.n), kind: "register" }));
      }
      for (let i = 0; i < churnPerS; i++) {
        const n = random.int(0, clientCount - 1);
        if (awaySet.has(n)) continue;
        const how = random.int(0, 3) === 0 ? "leave" : "die";
        awaySet.add(n);
        away.push({ n, since: now, how });
        churned += 1;
        if (how === "die") {
          const list = silences.get(subject(n)) ?? [];
          list.push({ from: now, to: undefined });
          silences.set(subject(n), list);
          sim.silence([subject(n)]);
          actions.push({ at: now, subject: subject(n), kind: "silence" });
        } else {
          void sim.unregister([subject(n)]).then(() => actions.push({ at: performance.now(), subject: subject(n), kind: "unregister" }));
        }
      }
    }, 1000);

    const minutesSeen: Minute[] = [];
    let readings: Reading[] = [];
    let lastCounts = new Map<string, number>();
    let minuteEndsAt = started + 60_000;
    const endMinute = () => {
      const reports: Record<string, number> = {};
      for (const [type, n] of counts) reports[type] = n - (lastCounts.get(type) ?? 0);
      lastCounts = new Map(counts);
      const last = readings[readings.length - 1]!;
      const m: Minute = {
        atMin: round((performance.now() - started) / 60_000, 2),
        heapFloorMB: Math.min(...readings.map((r) => r.heapUsedMB)),
        heapPeakMB: Math.max(...readings.map((r) => r.heapUsedMB)),
        rssPeakMB: Math.max(...readings.map((r) => r.rssMB)),
        handles: Math.max(...readings.map((r) => r.handles)),
        timers: Math.max(...readings.map((r) => r.timers)),
        timersPerClient: round(Math.max(...readings.map((r) => r.timers / Math.max(1, r.monitored))), 2),
        requests: Math.max(...readings.map((r) => r.requests)),
        eventLoopP99Ms: Math.max(...readings.map((r) => r.eventLoopP99Ms)),
        clients: last.clients,
        reports,
      };
      readings = [];
      minutesSeen.push(m);
      process.stdout.write(
        `  ${m.atMin.toFixed(1).padStart(5)} min  heap ${m.heapFloorMB}–${m.heapPeakMB} MB  rss ${m.rssPeakMB} MB  handles ${m.handles}  timers ${m.timers}  requests ${m.requests}  loop p99 ${m.eventLoopP99Ms} ms  clients ${m.clients}  dead ${reports.NodeDead ?? 0}  left ${reports.NodeLeft ?? 0}  present ${reports.NodePresent ?? 0}\n`,
      );
    };
    try {
      while (performance.now() < endAt && !interrupted) {
        await sleep(Math.max(0, Math.min(sampleS * 1000, endAt - performance.now())));
        const text = await (await fetch(metricsUrl)).text();
        readings.push({
          heapUsedMB: round(metric(text, "nodejs_heap_size_used_bytes") / 2 ** 20),
          rssMB: round(metric(text, "process_resident_memory_bytes") / 2 ** 20),
          handles: metric(text, "nodejs_active_handles_total"),
          timers: metric(text, "nodejs_active_resources", 'type="Timeout"'),
          monitored: metric(text, "presence_clients", 'state="alive"') + metric(text, "presence_clients", 'state="suspect"'),
          requests: metric(text, "nodejs_active_requests_total"),
          eventLoopP99Ms: round(metric(text, "nodejs_eventloop_lag_p99_seconds") * 1000, 2),
          clients: metric(text, "presence_clients"),
        });
        if (performance.now() >= minuteEndsAt || performance.now() >= endAt) {
          endMinute();
          minuteEndsAt += 60_000;
        }
      }
    } finally {
      clearInterval(churn);
    }

    if (interrupted) {
      process.stdout.write(`soak: interrupted after ${minutesSeen.length} minutes; no verdict, nothing written\n`);
      return 130;
    }
    const measured = minutesSeen.filter((m) => m.atMin > warmupMinutes);
    if (measured.length < 4) throw new Error(`only ${measured.length} minutes after warm-up: run longer`);
    const xs = measured.map((m) => m.atMin);
    const heaps = measured.map((m) => m.heapFloorMB);
    const handles = measured.map((m) => m.handles);
    const spanMin = xs[xs.length - 1]! - xs[0]!;
    const heapGrowthMB = slope(xs, heaps) * spanMin;
    const quarter = Math.max(1, Math.floor(measured.length / 4));
    const firstQuarter = median(heaps.slice(0, quarter));
    const lastQuarter = median(heaps.slice(-quarter));
    const medianHeap = median(heaps);
    const rss = measured.map((m) => m.rssPeakMB);
    const rssFirst = median(rss.slice(0, quarter));
    const rssLast = median(rss.slice(-quarter));
    const endedAt = performance.now();
    const record = { presence, heartbeats, elections: [], actions, subjects: new Set<string>(), endAt: endedAt };
    const timings = { ...DEFAULT_CHAOS_TIMINGS, ...DEFAULT_MONITOR_TIMINGS };
    const judged = judgeDeaths(silences, deaths, DEFAULT_MONITOR_TIMINGS, blindWindows(record, timings));
    const churnChecks = judgeChurn(record, timings);
    // Timers follow the clients (each has its ping and state timers): compared per client.
    const timersPerClient = measured.map((m) => m.timersPerClient);
    const timersFirst = median(timersPerClient.slice(0, quarter));
    const timersLast = median(timersPerClient.slice(-quarter));
    const timers = measured.map((m) => m.timers);
    const checks = [
      {
        name: "heap flat",
        ok: heapGrowthMB < 0.1 * medianHeap && lastQuarter <= firstQuarter * 1.1,
        detail: `heap floor: fitted growth ${round(heapGrowthMB)} MB over ${round(spanMin)} min (median ${medianHeap} MB); first quarter ${firstQuarter} MB, last quarter ${lastQuarter} MB`,
      },
      {
        // Resident memory also holds what V8 has not given back yet: shown, and held to a looser bound.
        name: "rss bounded",
        ok: rssLast <= rssFirst * 1.25,
        detail: `resident memory: first quarter ${rssFirst} MB, last quarter ${rssLast} MB (peak of each minute, median)`,
      },
      {
        name: "handles flat",
        ok: Math.max(...handles) - Math.min(...handles) <= 5,
        detail: `${Math.min(...handles)}–${Math.max(...handles)} active handles`,
      },
      {
        name: "timers flat",
        ok: timers.every((t) => t > 0) && timersLast <= timersFirst * 1.1,
        detail: `${Math.min(...timers)}–${Math.max(...timers)} active timers; per client, median: first quarter ${round(timersFirst, 2)}, last quarter ${round(timersLast, 2)}`,
      },
      {
        name: "no false deaths",
        ok: judged.falseDeaths.length === 0,
        detail: `${deaths.length} NodeDead, ${judged.falseDeaths.length} of a client that was not silent for the dead timeout${judged.falseDeaths.length > 0 ? `: ${judged.details.slice(0, 5).join("; ")}` : ""}`,
      },
      {
        name: "deaths in time",
        ok: judged.late.length === 0,
        detail: `${judged.late.length} NodeDead later than dead timeout + ping interval + ${SOAK_DEATH_SLACK_MS} ms after the silence began${
          judged.late.length > 0
            ? `: ${judged.details
                .filter((d) => d.includes("due by"))
                .slice(0, 5)
                .join("; ")}`
            : ""
        }`,
      },
      ...churnChecks.map((c) => ({
        name: c.name,
        ok: verdictOf(c) === "PASS",
        detail: `${verdictOf(c)}: ${c.checked} ${c.unit}${c.skipped ? ` (+${c.skipped} not judgeable)` : ""}, ${c.violations.length} violations${
          c.violations.length > 0
            ? `: ${c.violations
                .slice(0, 3)
                .map((v) => v.message)
                .join("; ")}`
            : ""
        }`,
      })),
      {
        name: "every death once",
        ok: judged.missed.length === 0 && judged.twice.length === 0,
        detail: `${judged.silences} silences: ${judged.missed.length} ended without a NodeDead, ${judged.twice.length} reported dead twice${[...judged.missed, ...judged.twice].length > 0 ? `: ${[...judged.missed, ...judged.twice].slice(0, 5).join(", ")}` : ""}`,
      },
      { name: "one leader", ok: leaderIds.size === 1, detail: `${leaderIds.size} leader epochs: ${[...leaderIds].join(", ")}` },
      {
        name: "churn reported",
        ok: (counts.get("NodeDead") ?? 0) > 0 && (counts.get("NodeLeft") ?? 0) > 0,
        detail: `${churned} churn steps; NodeDead ${counts.get("NodeDead") ?? 0}, NodeLeft ${counts.get("NodeLeft") ?? 0}`,
      },
    ];
    const result = {
      kind: "soak",
      date: new Date().toISOString(),
      seed,
      runMinutes: minutes,
      warmupMinutes,
      clients: clientCount,
      churnPerSecond: churnPerS,
      sampleSeconds: sampleS,
      checks,
      minutes: minutesSeen,
    };
    const file = values.json ?? `bench/results/soak-${result.date.slice(0, 19).replace(/:/g, "-")}.json`;
    await mkdir("bench/results", { recursive: true });
    await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write("\n");
    for (const c of checks) process.stdout.write(`${c.ok ? "pass" : "FAIL"}  ${c.name.padEnd(16)} ${c.detail}\n`);
    process.stdout.write(`\nwrote ${file}\n`);
    return checks.every((c) => c.ok) ? 0 : 1;
  } finally {
    await nc.close();
    await Promise.all(coordinators.map((c) => c.kill()));
    await server.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
