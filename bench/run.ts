/**
 * `npm run bench`: measures what the coordinator promises and prints a table; the figures
 * go to bench/results/<date>.json. It reports; it never passes or fails on wall time.
 *
 * Today it measures:
 * - crash failover: SIGKILL of the leader -> first heartbeat of the new leader;
 * - graceful handoff: SIGTERM of the leader -> first heartbeat of the new leader;
 *   each over N rounds (default 10; --quick: 3), against its own nats-server and three
 *   coordinator processes started through the built CLI with default timings;
 * - presence (bench/presence.ts): detection latency over 20 clients, and spawn time and
 *   heap per client for 10,000 client actors.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NatsServer } from "../src/services/nats-server.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../test/helpers/coordinators.js";
import { measureDetection, measureSpawn } from "./presence.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
  },
});
const rounds = values.rounds !== undefined ? Number(values.rounds) : values.quick ? 3 : 10;
if (!Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write("bench: --rounds must be a whole number of at least 1\n");
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => process.stdout.write(`${line}\n`);

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

async function measureFailovers(kind: "SIGKILL" | "SIGTERM"): Promise<number[]> {
  const server = await NatsServer.start();
  const clusterId = `bench${kind.toLowerCase()}`;
  const observer = await Observer.start([server.url], clusterId);
  const procs = new Map<string, CoordinatorProcess>();
  const start = (id: string) => procs.set(id, spawnCoordinator({ urls: [server.url], clusterId, id }));
  const samples: number[] = [];
  try {
    for (const id of ["b1", "b2", "b3"]) start(id);
    for (let round = 1; round <= rounds; round++) {
      const leader = await observer.waitForHeartbeat("a leader", (h) => !h.resigning, 20_000, performance.now() - 900);
      const victim = procs.get(leader.msg.coordinatorId)!;
      // Strike at a random point of the heartbeat cycle, as a real crash would.
      await sleep(1000 + Math.random() * 1000);
      // Every coordinator must be up and following before the strike.
      await waitFor("all coordinators running", () => [...procs.values()].every((p) => p.running), 5000);
      const t0 = performance.now();
      victim.signal(kind);
      const next = await observer.waitForHeartbeat(
        "the new leader",
        (h) => !h.resigning && h.coordinatorId !== victim.id,
        20_000,
        t0,
      );
      samples.push(next.at - t0);
      log(`  ${kind} round ${round}/${rounds}: ${victim.id} -> ${next.msg.coordinatorId} in ${(next.at - t0).toFixed(0)} ms`);
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
    await Promise.all([...procs.values()].map((p) => p.kill()));
    await observer.close();
    await server.stop();
  }
  return samples;
}

log(`bench: election failover, ${rounds} rounds each, default timings (leader timeout 2000 ms, backoff 150-300 ms)`);
const crash = summary(await measureFailovers("SIGKILL"));
const handoff = summary(await measureFailovers("SIGTERM"));
log("bench: presence detection latency (20 clients) and spawn cost (10,000 client actors)");
const detection = await measureDetection(20);
const spawnCost = await measureSpawn(10_000);

const results = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", node: process.version },
  natsServer: "local nats-server, loopback",
  timings: { leaderTimeoutMs: 2000, heartbeatIntervalMs: 1000, electionBackoffMs: [150, 300] },
  crashFailover: { description: "SIGKILL of the leader -> first heartbeat of the new leader", ...crash },
  gracefulHandoff: { description: "SIGTERM of the leader -> first heartbeat of the new leader", ...handoff },
  detection: { description: "last ping reply -> NodeDead, 20 clients silenced at once", ...detection },
  spawn: { description: "10,000 client actors spawned through the monitor in one load, in-process", ...spawnCost },
  targets: { crashFailoverP99Ms: 2500, gracefulHandoffMs: 400, detectionMaxMs: detection.boundMs + 250, heapPerClientBytes: 4096 },
};

const dir = fileURLToPath(new URL("./results/", import.meta.url));
await mkdir(dir, { recursive: true });
const file = `${dir}${results.date.slice(0, 19).replace(/:/g, "-")}.json`;
await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);

const row = (name: string, s: ReturnType<typeof summary>, target: string) =>
  `${name.padEnd(18)} ${String(s.n).padStart(6)} ${String(s.minMs).padStart(8)} ${String(s.medianMs).padStart(8)} ${String(s.maxMs).padStart(8)}   ${target}`;
log("");
log(`${"figure".padEnd(18)} ${"rounds".padStart(6)} ${"min ms".padStart(8)} ${"median".padStart(8)} ${"max ms".padStart(8)}   target`);
log(row("crash failover", crash, "p99 <= 2500 ms"));
log(row("graceful handoff", handoff, "<= 400 ms"));
log(
  `detection latency  ${String(detection.clients).padStart(6)} ${String(detection.minMs).padStart(8)} ${String(detection.medianMs).padStart(8)} ${String(detection.maxMs).padStart(8)}   <= ${detection.boundMs + 250} ms`,
);
log("");
log(`spawn ${spawnCost.clients} client actors: ${spawnCost.spawnMs} ms, heap ${spawnCost.heapPerClientBytes} bytes per client (${spawnCost.shards} shards${spawnCost.gcAvailable ? "" : "; no --expose-gc, heap figure is rough"})`);
log("");
log(`results written to ${file}`);
