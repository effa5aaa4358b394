/**
 * The CPU a leader spends per ping and reply: `nc.request()` against the pinger (one inbox,
 * one wildcard subscription, design §10). Starts a nats-server and a responder in a process
 * of its own, then pings `--clients` subjects in rounds with each way, alternating, and
 * prints this process's CPU time (user + system) per answered ping.
 *
 *   node --import tsx bench/ping-cost.ts [--clients 5000] [--rounds 6]
 *
 * Both ways run on the same connection options as the coordinator (noAsyncTraces). The
 * figures include the client library's parsing and writing, which both ways share; they are
 * only as quiet as the machine is.
 */
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { connect, Empty } from "@nats-io/transport-node";
import { NatsServer } from "../src/nats/server.js";
import { Pinger } from "../src/presence/pinger.js";

const { values } = parseArgs({ options: { clients: { type: "string", default: "5000" }, rounds: { type: "string", default: "6" } } });
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const TIMEOUT_MS = 5000;
/** Pings sent per turn of the event loop, as a burst of due clients would be. */
const BATCH = 500;

const responder = `
import { connect } from "@nats-io/transport-node";
const nc = await connect({ servers: process.argv[1] });
nc.subscribe("pc.>", { callback: (_e, m) => void m.respond() });
await nc.flush();
process.stdout.write("ready\\n");
`;

const server = await NatsServer.start({ name: "bench-ping-cost" });
const child = spawn(process.execPath, ["--input-type=module", "-e", responder, server.url], { stdio: ["ignore", "pipe", "inherit"] });
const nc = await connect({ servers: server.url, name: "ping cost", noAsyncTraces: true });
const subjects = Array.from({ length: clients }, (_, i) => `pc.${i}`);
const turn = () => new Promise((r) => setImmediate(r));

async function viaRequest(): Promise<number> {
  const replies: Promise<unknown>[] = [];
  for (let i = 0; i < clients; i += BATCH) {
    for (const s of subjects.slice(i, i + BATCH)) replies.push(nc.request(s, Empty, { timeout: TIMEOUT_MS }));
    await turn();
  }
  const settled = await Promise.allSettled(replies);
  return settled.filter((r) => r.status === "fulfilled").length;
}

let answered = 0;
let wake: (() => void) | null = null;
const pinger = new Pinger({
  nc,
  onReply: () => {
    answered += 1;
    if (answered === clients) wake?.();
  },
  onMiss: () => {},
  onError: (err) => {
    throw err;
  },
});
pinger.start();

async function viaPinger(): Promise<number> {
  answered = 0;
  const done = new Promise<void>((r) => (wake = r));
  for (let i = 0; i < clients; i += BATCH) {
    for (let j = i; j < Math.min(i + BATCH, clients); j++) pinger.ping(subjects[j]!, j);
    await turn();
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, TIMEOUT_MS))]);
  return answered;
}

async function measure(run: () => Promise<number>): Promise<{ usPerPing: number; answered: number }> {
  const before = process.cpuUsage();
  const n = await run();
  const used = process.cpuUsage(before);
  return { usPerPing: (used.user + used.system) / Math.max(1, n), answered: n };
}

try {
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (c: Buffer) => c.toString().includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`responder exited (${code})`)));
  });
  await measure(viaRequest); // warm-up
  await measure(viaPinger);
  const figures: Record<string, number[]> = { request: [], pinger: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of [
      ["request", viaRequest],
      ["pinger", viaPinger],
    ] as const) {
      const m = await measure(run);
      if (m.answered !== clients) process.stdout.write(`${name}: only ${m.answered} of ${clients} answered\n`);
      figures[name]!.push(m.usPerPing);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [name, xs] of Object.entries(figures)) {
    process.stdout.write(
      `${name.padEnd(8)} median ${median(xs).toFixed(1)} µs CPU per answered ping  (rounds: ${xs.map((x) => x.toFixed(1)).join(" ")})\n`,
    );
  }
} finally {
  pinger.stop();
  child.kill("SIGTERM");
  await nc.close();
  await server.stop();
}
