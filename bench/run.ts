/**
 * `npm run bench`: measures what the coordinator promises, prints a table, and writes the
 * figures to bench/results/<date>.json. It reports; it never passes or fails on wall time.
 *
 * - failover (here): SIGKILL of the leader → the new leader's first heartbeat, and → a
 *   report from it for every client; SIGTERM handoff the same way; N rounds each, against
 *   its own nats-server, three coordinator processes and simulated clients;
 * - capacity (bench/capacity.ts): 1k, 10k, 25k, 50k, 75k, 100k clients on one leader with
 *   default timings, climbing until a level does not hold (harness/capacity-judge.ts: every
 *   client present, no false suspect or dead, no leader change, pings and NodeState at
 *   >= 90 % of the configured rates, ping interval p99 <= 1 s). Per level: the leader's CPU
 *   per client, its live heap per client after a full GC (and V8's heap in use, which counts
 *   garbage too), its event-loop delay p99, and the same wire work (pings, replies,
 *   a state message per client per state interval) on a bare loop written directly on the
 *   NATS client, for the ratio coordinator / bare; registration → NodePresent; detection
 *   (silence and last reply → NodeDead) at 1k, at 50k and at the largest count that holds;
 *   takeover of 50k stored clients: SIGKILL → the new leader's first heartbeat → a report
 *   from it for every client;
 * - scale-out (bench/scale-out.ts): the same clients on 1, 2 and 3 coordinators with
 *   --partitions 12: each coordinator's CPU over a steady window and its share of the single
 *   leader's (target about 1/n), every client kept present (judged as a capacity level);
 *   the time until the partitions balance when a coordinator joins; SIGKILL of one of three
 *   → the first heartbeat of each of its partitions' new leaders (target <= 2.5 s);
 * - spawn (bench/presence.ts): the time and heap of spawning client actors in-process.
 *
 *   npm run bench [-- --quick] [--rounds N] [--levels 1000,10000] [--hold S] [--takeover N] [--keep-climbing]
 *                 [--scale-clients N] [--scale-window S]
 *
 * --quick (about 6 minutes): 3 rounds, 1k and 10k clients held 15 s each (a level waits
 * at most 20 s for its registrations, 60 s in the full run, less once the leader is
 * saturated); takeover of as many clients as the largest level; scale-out with 6,000 clients,
 * windows of 10 s.
 * Full: 10 rounds, the six levels held 60 s each while they hold (about 3 minutes a level);
 * takeover of 50k stored clients; scale-out with 30,000 clients, windows of 30 s. The climb stops at the first level that does not hold,
 * unless --keep-climbing.
 */
import "../src/cli/v8-flags.js"; // the daemon's V8 settings, for what is measured in this process (spawn)
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../src/config/config.js";
import { decodeReport, REPORT_HEADERS } from "../src/protocol/presence.js";
import { NatsServer } from "../src/nats/server.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";
import { measureCapacity } from "./capacity.js";
import { DETECTION_BOUND_MS } from "./capacity/detection.js";
import { DEFAULT_HOLD_CRITERIA } from "../harness/capacity-judge.js";
import { SimulatedClients } from "../harness/client-sim.js";
import { measureSpawn } from "./presence.js";
import { describeScaleOut, FAILOVER_TARGET_MS, measureScaleOut, scaleOutVerdicts } from "./scale-out.js";
import { SHARE_TOLERANCE } from "../harness/scale-out-judge.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    levels: { type: "string" },
    hold: { type: "string" },
    takeover: { type: "string" },
    "keep-climbing": { type: "boolean", default: false },
    "scale-clients": { type: "string" },
    "scale-window": { type: "string" },
  },
});
const quick = values.quick === true;
const rounds = values.rounds !== undefined ? Number(values.rounds) : quick ? 3 : 10;
const levels =
  values.levels !== undefined
    ? values.levels.split(",").map(Number)
    : quick
      ? [1000, 10_000]
      : [1000, 10_000, 25_000, 50_000, 75_000, 100_000];
const holdSeconds = values.hold !== undefined ? Number(values.hold) : quick ? 15 : 60;
const takeoverClients = values.takeover !== undefined ? Number(values.takeover) : quick ? Math.max(...levels) : 50_000;
const scaleClients = values["scale-clients"] !== undefined ? Number(values["scale-clients"]) : quick ? 6000 : 30_000;
const scaleWindowSeconds = values["scale-window"] !== undefined ? Number(values["scale-window"]) : quick ? 10 : 30;
/** The partitions of the scale-out run (the issue's P). */
const SCALE_PARTITIONS = 12;
if (!Number.isInteger(rounds) || rounds < 1) fail("--rounds must be a whole number of at least 1");
if (levels.some((n) => !Number.isInteger(n) || n < 1)) fail("--levels must be whole numbers, comma-separated");
if (!Number.isFinite(holdSeconds) || holdSeconds < 1) fail("--hold must be a number of seconds");
if (!Number.isInteger(takeoverClients) || takeoverClients < 1) fail("--takeover must be a whole number of clients");
if (!Number.isInteger(scaleClients) || scaleClients < 1) fail("--scale-clients must be a whole number of clients");
if (!Number.isFinite(scaleWindowSeconds) || scaleWindowSeconds < 1) fail("--scale-window must be a number of seconds");

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => process.stdout.write(`${line}\n`);
const started = performance.now();

function summary(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return {
    n: sorted.length,
    minMs: Math.round(sorted[0]!),
    medianMs: Math.round(at(0.5)),
    p99Ms: Math.round(at(0.99)),
    maxMs: Math.round(sorted[sorted.length - 1]!),
    samplesMs: samples.map((s) => Math.round(s)),
  };
}

/**
 * Failover rounds with `clientCount` simulated clients: the leader gets `kind`; measured are
 * the new leader's first heartbeat and the first report from it for every client.
 */
async function measureFailovers(kind: "SIGKILL" | "SIGTERM", clientCount: number) {
  const server = await NatsServer.start();
  const clusterId = `bench${kind.toLowerCase()}`;
  const observer = await Observer.start([server.url], clusterId);
  const app = await connect({ servers: server.url, name: "bench clients" });
  const sim = new SimulatedClients(app, clusterId, "fo");
  const lastReport = new Map<string, { epoch: number; at: number }>();
  app.subscribe(`presence.report.${clusterId}`, {
    callback: (_e, m) => {
      const r = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding));
      const seen = lastReport.get(r.clientSubject);
      if (seen === undefined || seen.epoch < r.epoch) lastReport.set(r.clientSubject, { epoch: r.epoch, at: performance.now() });
    },
  });
  const procs = new Map<string, CoordinatorProcess>();
  const start = (id: string) => procs.set(id, spawnCoordinator({ urls: [server.url], clusterId, id }));
  const heartbeat: number[] = [];
  const everyClient: number[] = [];
  try {
    for (const id of ["b1", "b2", "b3"]) start(id);
    await observer.waitForHeartbeat("a leader", (h) => !h.resigning, 20_000);
    await sim.register(0, clientCount);
    await waitFor("every client reported", () => lastReport.size === clientCount, 30_000);
    for (let round = 1; round <= rounds; round++) {
      const leader = await observer.waitForHeartbeat("a leader", (h) => !h.resigning, 20_000, performance.now() - 900);
      const victim = procs.get(leader.msg.coordinatorId)!;
      // Strike at a random point of the heartbeat cycle, as a real crash would.
      await sleep(1000 + Math.random() * 1000);
      await waitFor("all coordinators running", () => [...procs.values()].every((p) => p.running), 5000);
      const t0 = performance.now();
      victim.signal(kind);
      const next = await observer.waitForHeartbeat("the new leader", (h) => !h.resigning && h.coordinatorId !== victim.id, 20_000, t0);
      heartbeat.push(next.at - t0);
      const epoch = next.msg.epoch;
      const all = await waitFor(
        "a report from the new leader for every client",
        () => {
          let latest = 0;
          for (const seen of lastReport.values()) {
            if (seen.epoch < epoch) return undefined;
            latest = Math.max(latest, seen.at);
          }
          return latest;
        },
        20_000,
      );
      everyClient.push(all - t0);
      log(
        `  ${kind} round ${round}/${rounds}: ${victim.id} -> ${next.msg.coordinatorId}: heartbeat after ${(next.at - t0).toFixed(0)} ms, ` +
          `every one of ${clientCount} clients reported after ${(all - t0).toFixed(0)} ms`,
      );
      await victim.exited;
      start(victim.id); // it comes back as a follower
      await observer.waitForReport(
        `${victim.id} following again`,
        (r) => r.coordinatorId === victim.id && r.type === "FollowingLeader",
        20_000,
        t0,
      );
    }
  } finally {
    sim.stop();
    await Promise.all([...procs.values()].map((p) => p.kill()));
    await app.close();
    await observer.close();
    await server.stop();
  }
  return { heartbeat: summary(heartbeat), everyClient: summary(everyClient), clients: clientCount };
}

const failoverClients = quick ? 200 : 1000;
log(`bench${quick ? " --quick" : ""}: ${cpus().length} cores, Node ${process.version}; default timings`);
log(`failover: ${rounds} rounds each, 3 coordinators, ${failoverClients} clients`);
const crash = await measureFailovers("SIGKILL", failoverClients);
const handoff = await measureFailovers("SIGTERM", failoverClients);

log(
  `capacity: ${levels.map((n) => n.toLocaleString("en")).join(", ")} clients, each held ${holdSeconds} s while they hold; takeover of ${takeoverClients.toLocaleString("en")}`,
);
const capacity = await measureCapacity({
  levels,
  holdSeconds,
  keepClimbing: values["keep-climbing"] === true,
  shortHoldSeconds: 10,
  bareSeconds: quick ? 8 : 20,
  registerWaitMs: quick ? 20_000 : 60_000,
  detectAt: [1000, 50_000],
  takeoverClients,
  log,
});

log(
  `scale-out: ${scaleClients.toLocaleString("en")} clients, --partitions ${SCALE_PARTITIONS}, on 1, 2 and 3 coordinators held ${scaleWindowSeconds} s each; a crash and a rejoin`,
);
const scaleOut = await measureScaleOut({
  clients: scaleClients,
  partitions: SCALE_PARTITIONS,
  windowSeconds: scaleWindowSeconds,
  registerWaitMs: quick ? 20_000 : 60_000,
  log,
});

log("spawn: client actors through the monitor, in-process");
const spawn = [];
for (const n of quick ? [10_000] : [10_000, 50_000]) spawn.push(await measureSpawn(n));

const held = capacity.levels.filter((l) => l.holds);
const results = {
  date: new Date().toISOString(),
  quick,
  durationS: Math.round((performance.now() - started) / 1000),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", memoryBytes: totalmem(), node: process.version },
  natsServer: "local nats-server, loopback",
  timings: { leaderTimeoutMs: 2000, heartbeatIntervalMs: 1000, electionBackoffMs: [150, 300], ...DEFAULT_MONITOR_TIMINGS },
  crashFailover: {
    description: "SIGKILL of the leader -> first heartbeat of the new leader; -> a report from it for every client",
    ...crash,
  },
  gracefulHandoff: {
    description: "SIGTERM of the leader -> first heartbeat of the new leader; -> a report from it for every client",
    ...handoff,
  },
  capacity: capacity.levels,
  capacityStoppedAt: capacity.stoppedAt,
  capacityLiveHeapBaselineBytes: capacity.liveHeapBaselineBytes,
  largestHeld: held.at(-1)?.clients ?? 0,
  detection: capacity.detection,
  detectionNotMeasured: capacity.detectionNotMeasured,
  takeover: capacity.takeover,
  scaleOut,
  spawn,
  targets: {
    clientsHeld: 50_000,
    detectionP99Ms: DETECTION_BOUND_MS,
    crashFailoverP99Ms: 2500,
    gracefulHandoffMs: 400,
    takeoverOf50kMs: 2000,
    holdCriteria: DEFAULT_HOLD_CRITERIA(DEFAULT_MONITOR_TIMINGS.pingIntervalMs, DEFAULT_MONITOR_TIMINGS.stateIntervalMs),
    heapPerClientBytes: 4096,
    cpuRatioToBare: 2,
    scaleOutShareOfOneLeader: `<= (1 + ${SHARE_TOLERANCE}) / n`,
    partitionCrashFailoverMaxMs: FAILOVER_TARGET_MS,
  },
};

const dir = fileURLToPath(new URL("./results/", import.meta.url));
await mkdir(dir, { recursive: true });
const file = `${dir}${results.date.slice(0, 19).replace(/:/g, "-")}${quick ? "-quick" : ""}.json`;
await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);

const pad = (v: unknown, n: number) => String(v).padStart(n);
const kb = (bytes: number | null) => (bytes === null || Number.isNaN(bytes) ? "-" : `${(bytes / 1024).toFixed(1)} KB`);
log("");
log(`${"failover".padEnd(34)} ${pad("rounds", 6)} ${pad("min ms", 8)} ${pad("median", 8)} ${pad("p99", 8)} ${pad("max ms", 8)}   target`);
const frow = (name: string, s: ReturnType<typeof summary>, target: string) =>
  log(`${name.padEnd(34)} ${pad(s.n, 6)} ${pad(s.minMs, 8)} ${pad(s.medianMs, 8)} ${pad(s.p99Ms, 8)} ${pad(s.maxMs, 8)}   ${target}`);
frow("crash: new leader's heartbeat", crash.heartbeat, "p99 <= 2500 ms");
frow(`crash: every client (${failoverClients}) reported`, crash.everyClient, "");
frow("handoff: new leader's heartbeat", handoff.heartbeat, "p50 <= 50 ms");
frow(`handoff: every client reported`, handoff.everyClient, "");
log("");
log(
  `${"clients".padStart(8)} ${"holds".padStart(6)} ${"false dead/susp".padStart(15)} ${"coord cores".padStart(12)} ${"µs/s/client".padStart(11)} ${"live heap/cl".padStart(12)} ${"in use/cl*".padStart(10)} ${"loop p99".padStart(9)} ${"pings/s".padStart(8)} ${"states/s".padStart(8)} ${"interval p50/p99".padStart(17)} ${"bare µs/s/cl".padStart(12)} ${"ratio cpu".padStart(9)} ${"ratio rate".padStart(10)}`,
);
for (const l of capacity.levels) {
  log(
    `${pad(l.clients.toLocaleString("en"), 8)} ${pad(l.holds ? "yes" : "NO", 6)} ${pad(`${l.falseDead}/${l.falseSuspect}`, 15)} ${pad(l.leader.cpuCores, 12)} ${pad(l.leader.cpuMicrosPerClientSecond, 11)} ${pad(kb(l.leader.liveHeapPerClientBytes), 12)} ${pad(kb(l.leader.heapPerClientBytes), 10)} ${pad(`${l.leader.eventLoopDelayP99Ms} ms`, 9)} ${pad(l.pingsPerSecond, 8)} ${pad(l.nodeStatePerSecond, 8)} ${pad(`${l.pingIntervalMs.p50}/${l.pingIntervalMs.p99} ms`, 17)} ${pad(l.bare?.cpuMicrosPerClientSecond ?? "-", 12)} ${pad(l.ratio ? `${l.ratio.cpuPerClient}x` : "-", 9)} ${pad(l.ratio ? `${l.ratio.pingRate}x` : "-", 10)}`,
  );
}
log("* V8 heap in use per client, garbage not yet collected included; live heap: after a full GC");
log("");
for (const l of capacity.levels.filter((l) => !l.holds)) log(`${l.clients.toLocaleString("en")} does not hold: ${l.reasons.join("; ")}`);
if (capacity.stoppedAt)
  log(`the climb stopped at ${capacity.stoppedAt.clients.toLocaleString("en")}: the levels above it were not measured`);
for (const l of capacity.levels) {
  const all =
    l.registerMs.allPresentMs !== null
      ? `all present after ${l.registerMs.allPresentMs} ms`
      : `only ${l.registerMs.presentWithin} of the new clients present (${String(l.registerMs.gaveUp)})`;
  log(`registration -> NodePresent at ${l.clients.toLocaleString("en")}: p50 ${l.registerMs.p50} ms, p99 ${l.registerMs.p99} ms, ${all}`);
}
for (const d of capacity.detection) {
  log(
    `detection at ${d.clients.toLocaleString("en")} clients (${d.silenced} silenced): last reply -> NodeDead published p50 ${d.lastReplyToPublish.p50Ms} ms, ` +
      `p99 ${d.lastReplyToPublish.p99Ms} ms, max ${d.lastReplyToPublish.maxMs} ms (target p99 <= ${d.boundMs} ms): reply read after p50 ${d.replyReadLag.p50Ms} / p99 ${d.replyReadLag.p99Ms} ms, published past the deadline by p50 ${d.pastDeadline.p50Ms} / p99 ${d.pastDeadline.p99Ms} ms; received by the bench p50 ${d.lastReply.p50Ms} ms, ` +
      `p99 ${d.lastReply.p99Ms} ms; silence -> NodeDead received p50 ${d.p50Ms} ms, p99 ${d.p99Ms} ms; missed ${d.missed}; ${d.sweepStalls} stalled sweeps, ${d.sweepStalledMs} ms credited`,
  );
}
for (const d of capacity.detectionNotMeasured) log(`detection at ${d.clients.toLocaleString("en")} clients: not measured, ${d.reason}`);
if (capacity.takeover) {
  const t = capacity.takeover;
  const stored = `takeover of ${t.clients.toLocaleString("en")} stored clients${t.seeded > 0 ? ` (${t.seeded.toLocaleString("en")} stored by the bench)` : ""}`;
  if (t.firstHeartbeatMs === null)
    log(
      `${stored}: ${t.crashed === null ? "not measured" : `${t.crashed} crashed, ${String(t.newLeader)} did not take over`} (${String(t.gaveUp)})`,
    );
  else {
    const every =
      t.heartbeatToEveryClientMs !== null
        ? `every client reported ${t.heartbeatToEveryClientMs} ms after it`
        : `only ${t.reported} reported (${String(t.gaveUp)})`;
    log(
      `${stored}: ${String(t.crashed)} crashed; ${String(t.newLeader)}'s first heartbeat as leader ${t.firstHeartbeatMs} ms after the crash, load ${String(t.loadMs)} ms, ${every}; ` +
        `${t.nodePresent.toLocaleString("en")} of ${t.clients.toLocaleString("en")} got a NodePresent from it`,
    );
  }
}
log("");
for (const line of describeScaleOut(scaleOut)) log(line);
log("");
for (const s of spawn) {
  log(
    `spawn ${s.clients.toLocaleString("en")} client actors: ${s.spawnMs} ms, heap ${s.heapPerClientBytes} bytes per client (${s.shards} shards${s.gcAvailable ? "" : "; no --expose-gc, heap figure is rough"})`,
  );
}
log("");
log(`largest client count held: ${results.largestHeld.toLocaleString("en")} (target 50,000)`);
for (const l of held.slice(-1)) {
  log(
    `leader's live heap at ${l.clients.toLocaleString("en")}: ${kb(l.leader.liveHeapPerClientBytes)} per client after a full GC (target <= 4.0 KB; in use, with garbage: ${kb(l.leader.heapPerClientBytes)})`,
  );
}
for (const l of capacity.levels.filter((l) => l.ratio !== null)) {
  log(
    `coordinator / bare at ${l.clients.toLocaleString("en")}: CPU per client ${l.ratio!.cpuPerClient}x (target <= 2x at 50,000)${l.holds ? "" : ", at a level that does not hold"}`,
  );
}
for (const line of scaleOutVerdicts(scaleOut)) log(line);
log(`results written to ${file} (${results.durationS} s)`);
