/**
 * The benchmark's baseline: the least a process can do to ping N subjects every interval,
 * written directly on the NATS client. No actors, no timers per client: a 10 ms tick sends
 * the requests that are due, spread evenly over the interval, with one wildcard reply
 * subscription counting the replies. What the coordinator spends above this is the cost
 * of its actor machinery.
 *
 *   node --import tsx bench/bare-pinger.ts <nats-url> <subject-prefix> <clients> <interval-ms>
 *
 * Steered like the client simulator: `{"op":"stats"}` on `bench.sim.<prefix>.bare`.
 */
import { connect } from "@nats-io/transport-node";
import { controlSubject, percentiles } from "./client-sim.js";

const [url, prefix, countArg, intervalArg] = process.argv.slice(2);
if (url === undefined || prefix === undefined || countArg === undefined || intervalArg === undefined) {
  process.stderr.write("usage: bare-pinger.ts <nats-url> <subject-prefix> <clients> <interval-ms>\n");
  process.exit(2);
}
const clients = Number(countArg);
const intervalMs = Number(intervalArg);
const nc = await connect({ servers: url, name: "bare pinger" });
const replyPrefix = `bare.reply.${process.pid}`;
const subjects = Array.from({ length: clients }, (_, i) => `${prefix}.${i}`);
const replyTo = Array.from({ length: clients }, (_, i) => `${replyPrefix}.${i}`);
const lastSent = new Float64Array(clients);
let sent = 0;
let replies = 0;
let intervals: number[] = [];
let since = performance.now();

nc.subscribe(`${replyPrefix}.>`, {
  callback: () => {
    replies += 1;
  },
});

let cursor = 0;
let due = 0;
let last = performance.now();
const tick = setInterval(() => {
  const now = performance.now();
  due += (clients * (now - last)) / intervalMs;
  last = now;
  while (due >= 1) {
    const i = cursor;
    cursor = (cursor + 1) % clients;
    due -= 1;
    if (lastSent[i]! > 0 && intervals.length < 200_000) intervals.push(now - lastSent[i]!);
    lastSent[i] = now;
    nc.publish(subjects[i]!, undefined, { reply: replyTo[i]! });
    sent += 1;
  }
}, 10);

nc.subscribe(controlSubject(`${prefix}.bare`), {
  callback: (_e, m) => {
    const [p50, p99] = percentiles(intervals, [0.5, 0.99]);
    m.respond(JSON.stringify({ sent, replies, elapsedMs: performance.now() - since, intervalP50Ms: p50, intervalP99Ms: p99 }));
    sent = 0;
    replies = 0;
    intervals = [];
    since = performance.now();
  },
});
await nc.flush();
process.on("SIGTERM", () => {
  clearInterval(tick);
  void nc.close().then(() => process.exit(0));
});
process.stdout.write("ready\n");
