/**
 * `node --import tsx bench/gc-pauses.ts [--clients N] [--settle S] [--seconds H]`: the GC
 * pauses of a leader holding N answering clients. Starts a nats-server, one coordinator under
 * `node --trace-gc` and N simulated clients; waits S seconds for the leader to take in every
 * registration, then reads its GC trace for H seconds and prints, per kind of collection,
 * how many there were and the longest and median pause, and the longest lines as V8 wrote
 * them. A Mark-Compact's pause is its last step; its incremental marking runs in steps
 * between (the line says how many and the biggest). Figures, not a verdict.
 */
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "../src/nats/server.js";
import { CLI, waitFor } from "../harness/coordinators.js";
import { SimulatedClients } from "../harness/client-sim.js";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "50000" },
    settle: { type: "string", default: "25" },
    seconds: { type: "string", default: "40" },
  },
});
const clients = Number(values.clients);
const settle = Number(values.settle);
const seconds = Number(values.seconds);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One line of `--trace-gc`: `... ms: Scavenge 330.4 (397.8) -> 315.8 (398.0) MB, 33.67 / 0.00 ms ...`. */
const PAUSE = /: (Scavenge|Mark-Compact|Mark-Sweep|Minor Mark-Sweep)\b.*?MB, ([\d.]+) \/ [\d.]+ ms/;

const server = await NatsServer.start({ name: "bench-gc" });
const child = spawn(
  process.execPath,
  [
    "--trace-gc",
    CLI,
    "run",
    "-u",
    server.url,
    "--cluster-id",
    "gc",
    "--coordinator-id",
    "g1",
    "--log-format",
    "json",
    "--max-clients",
    String(clients),
  ],
  { stdio: ["ignore", "pipe", "pipe"] },
);
let trace = "";
let log = "";
child.stdout.on("data", (c: Buffer) => (trace += c.toString()));
child.stderr.on("data", (c: Buffer) => (log += c.toString()));
const nc = await connect({ servers: server.url, name: "gc clients" });
const sim = new SimulatedClients(nc, "gc", "gcc");
try {
  await waitFor("the leader", () => log.includes('"became leader"'), 15_000);
  await sim.register(0, clients);
  process.stdout.write(`a leader with ${clients} clients: settling ${settle} s, then reading its GC trace for ${seconds} s\n`);
  await sleep(settle * 1000);
  const from = trace.length;
  await sleep(seconds * 1000);
  const pauses = trace
    .slice(from)
    .split("\n")
    .flatMap((line) => {
      const m = PAUSE.exec(line);
      return m ? [{ kind: m[1]!, ms: Number(m[2]), line: line.trim() }] : [];
    });
  const kinds = new Map<string, number[]>();
  for (const p of pauses) kinds.set(p.kind, [...(kinds.get(p.kind) ?? []), p.ms]);
  for (const [kind, ms] of kinds) {
    ms.sort((a, b) => a - b);
    process.stdout.write(
      `${kind}: ${ms.length} in ${seconds} s, longest ${ms.at(-1)!.toFixed(1)} ms, median ${ms[Math.floor(ms.length / 2)]!.toFixed(1)} ms\n`,
    );
  }
  process.stdout.write("longest:\n");
  for (const p of pauses.sort((a, b) => b.ms - a.ms).slice(0, 3)) process.stdout.write(`  ${p.line}\n`);
} finally {
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  sim.stop();
  await nc.close();
  await server.stop();
}
