/**
 * The benchmark's baseline: the least a process can do for the same wire work as a leader,
 * written directly on the NATS client. No actors, no timers per client: a 10 ms tick sends
 * the pings that are due, spread evenly over the ping interval, each a publish with a reply
 * subject under one wildcard inbox; one subscription takes every reply and keeps the last
 * reply time per client in a typed array. The same tick publishes one ~120-byte state
 * message per client per state interval, as the leader publishes NodeState. What the
 * coordinator spends above this is the cost of its actor machinery and report encoding.
 *
 *   node --import tsx bench/bare-pinger.ts <nats-url> <subject-prefix> <clients> <ping-interval-ms> [<state-interval-ms> [<state-subject>]]
 *
 * The state messages go to `<state-subject>` (default `bench.bare.state.<prefix>`), never to
 * the report subject, so that nobody mistakes them for reports. Steered like the client
 * simulator: `{"op":"stats"}` on `bench.sim.<prefix>.bare`.
 */
import { connect } from "@nats-io/transport-node";
import { controlSubject, percentiles } from "../harness/client-sim.js";

/** Bytes of each state message: about what a binary NodeState report weighs. */
export const BARE_STATE_BYTES = 120;
export const bareStateSubject = (prefix: string) => `bench.bare.state.${prefix}`;

/** What the bare pinger answers to `{"op":"stats"}`; its counts start afresh after each. */
export interface BareStats {
  sent: number;
  replies: number;
  statesSent: number;
  /** Clients whose last reply is older than the dead timeout of the default timings. */
  staleClients: number;
  elapsedMs: number;
  intervalP50Ms: number;
  intervalP99Ms: number;
}

async function main(): Promise<void> {
  const [url, prefix, countArg, intervalArg, stateArg, stateSubjectArg] = process.argv.slice(2);
  if (url === undefined || prefix === undefined || countArg === undefined || intervalArg === undefined) {
    process.stderr.write(
      "usage: bare-pinger.ts <nats-url> <subject-prefix> <clients> <ping-interval-ms> [<state-interval-ms> [<state-subject>]]\n",
    );
    process.exit(2);
  }
  const clients = Number(countArg);
  const intervalMs = Number(intervalArg);
  const stateIntervalMs = stateArg !== undefined ? Number(stateArg) : 1500;
  const stateSubject = stateSubjectArg ?? bareStateSubject(prefix);
  const deadTimeoutMs = 5000;
  const nc = await connect({ servers: url, name: "bare pinger" });
  const replyPrefix = `bare.reply.${process.pid}`;
  const subjects = Array.from({ length: clients }, (_, i) => `${prefix}.${i}`);
  const replyTo = Array.from({ length: clients }, (_, i) => `${replyPrefix}.${i}`);
  const lastSent = new Float64Array(clients);
  const lastReply = new Float64Array(clients);
  let sent = 0;
  let replies = 0;
  let statesSent = 0;
  let intervals: number[] = [];
  let since = performance.now();

  const at = replyPrefix.length + 1;
  nc.subscribe(`${replyPrefix}.>`, {
    callback: (_e, m) => {
      const i = Number(m.subject.slice(at));
      if (i >= 0 && i < clients) lastReply[i] = performance.now();
      replies += 1;
    },
  });

  let pingCursor = 0;
  let pingsDue = 0;
  let stateCursor = 0;
  let statesDue = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    pingsDue += (clients * (now - last)) / intervalMs;
    statesDue += (clients * (now - last)) / stateIntervalMs;
    last = now;
    while (pingsDue >= 1) {
      const i = pingCursor;
      pingCursor = (pingCursor + 1) % clients;
      pingsDue -= 1;
      if (lastSent[i]! > 0 && intervals.length < 200_000) intervals.push(now - lastSent[i]!);
      lastSent[i] = now;
      nc.publish(subjects[i]!, undefined, { reply: replyTo[i]! });
      sent += 1;
    }
    while (statesDue >= 1) {
      const i = stateCursor;
      stateCursor = (stateCursor + 1) % clients;
      statesDue -= 1;
      // A fresh buffer each time: the client keeps it queued until it is written out.
      const body = new Uint8Array(BARE_STATE_BYTES);
      const view = new DataView(body.buffer);
      view.setUint32(0, i);
      view.setFloat64(4, lastReply[i]!);
      view.setFloat64(12, now);
      nc.publish(stateSubject, body);
      statesSent += 1;
    }
  }, 10);

  nc.subscribe(controlSubject(`${prefix}.bare`), {
    callback: (_e, m) => {
      const now = performance.now();
      let stale = 0;
      for (let i = 0; i < clients; i++) if (now - lastReply[i]! > deadTimeoutMs) stale += 1;
      const [p50, p99] = percentiles(intervals, [0.5, 0.99]);
      const stats: BareStats = {
        sent,
        replies,
        statesSent,
        staleClients: stale,
        elapsedMs: now - since,
        intervalP50Ms: p50!,
        intervalP99Ms: p99!,
      };
      m.respond(JSON.stringify(stats));
      sent = 0;
      replies = 0;
      statesSent = 0;
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
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`bare-pinger: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
