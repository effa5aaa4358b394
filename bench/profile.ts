/**
 * `npm run bench:profile [-- --clients N --seconds S --settle W]`: where a leader's CPU goes. Starts a
 * nats-server, one coordinator under `node --cpu-prof`, and N simulated clients that answer
 * every ping; after S seconds it stops the coordinator (SIGTERM, so the profile is written),
 * keeps the profile under bench/results/profile-<date>/ (not committed; open it in Chrome
 * DevTools or speedscope), and prints the share of CPU samples by package and the hottest
 * functions. Only the samples of the hold count (the last S seconds before the stop, less
 * a second for the shutdown): registering the clients is not the steady state. With many
 * clients the leader is still taking in registrations after the simulator has sent them all;
 * `--settle W` waits W more seconds before the profiled window.
 */
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { NatsServer } from "../src/nats/server.js";
import { CLI, waitFor } from "../harness/coordinators.js";
import { SimulatedClients } from "../harness/client-sim.js";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "1500" },
    seconds: { type: "string", default: "30" },
    settle: { type: "string", default: "0" },
  },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const settle = Number(values.settle);
const results = fileURLToPath(new URL("./results/", import.meta.url));
const dir = `${results}profile-${new Date().toISOString().slice(0, 19).replace(/:/g, "-")}`;
await mkdir(dir, { recursive: true });

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  endTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const server = await NatsServer.start({ name: "bench-profile" });
const child = spawn(
  process.execPath,
  [
    "--cpu-prof",
    `--cpu-prof-dir=${dir}`,
    CLI,
    "run",
    "-u",
    server.url,
    "--cluster-id",
    "prof",
    "--coordinator-id",
    "p1",
    "--log-format",
    "json",
    "--max-clients",
    String(clients),
  ],
  { stdio: ["ignore", "ignore", "pipe"] },
);
let log = "";
child.stderr.on("data", (c: Buffer) => (log += c.toString()));
const nc = await connect({ servers: server.url, name: "profile clients" });
const sim = new SimulatedClients(nc, "prof", "pf");
try {
  await waitFor("the leader", () => log.includes('"became leader"'), 15_000);
  await sim.register(0, clients);
  if (settle > 0) {
    process.stdout.write(`letting the leader settle for ${settle} s\n`);
    await new Promise((r) => setTimeout(r, settle * 1000));
    sim.stats(true); // the answer rate below counts the profiled window only
  }
  process.stdout.write(`profiling a leader with ${clients} clients for ${seconds} s\n`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const s = sim.stats();
  process.stdout.write(
    `pings answered: ${Math.round(s.answered / (s.elapsedMs / 1000))}/s (expected about ${Math.round((clients * 1000) / 760)}/s)\n`,
  );
} finally {
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  sim.stop();
  await nc.close();
  await server.stop();
}

const file = (await readdir(dir)).find((f) => f.endsWith(".cpuprofile"));
if (file === undefined) {
  process.stderr.write("bench:profile: the coordinator wrote no profile\n");
  process.exit(1);
}
const profile = JSON.parse(await readFile(`${dir}/${file}`, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
// Sample times, from the end backwards: the hold is the window [end - S s, end - 1 s].
const at: number[] = new Array<number>(profile.samples.length);
let clock = profile.endTime;
for (let i = profile.samples.length - 1; i >= 0; i--) {
  at[i] = clock;
  clock -= profile.timeDeltas[i] ?? 0;
}
const from = profile.endTime - seconds * 1e6;
const to = profile.endTime - 1e6;
let total = 0;
const byPackage = new Map<string, number>();
const byFunction = new Map<string, number>();
profile.samples.forEach((id, i) => {
  if (at[i]! < from || at[i]! > to) return;
  const frame = byId.get(id)!.callFrame;
  const t = profile.timeDeltas[i] ?? 0;
  total += t;
  const url = frame.url;
  const pkg = url.includes("node_modules/")
    ? url.split("node_modules/")[1]!.split("/").slice(0, 2).join("/")
    : url
      ? url.split("/").slice(-2).join("/")
      : frame.functionName;
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + t);
  const fn = `${frame.functionName || "(anonymous)"} ${url.split("/").slice(-1)[0] ?? ""}:${frame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
});
const top = (m: Map<string, number>, n: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, t]) => `  ${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`)
    .join("\n");
process.stdout.write(
  `\nCPU samples by package (${(total / 1e6).toFixed(1)} s sampled):\n${top(byPackage, 12)}\n\nhottest functions:\n${top(byFunction, 20)}\n`,
);
process.stdout.write(`\nprofile: ${dir}/${file}\n`);
