/**
 * Detection latency in the capacity run: silences some of the registered clients at once
 * and measures silence → NodeDead, and each client's last reply → its NodeDead as the
 * leader published it, which is what the dead timeout bounds.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config/config.js";
import { waitFor } from "../../harness/coordinators.js";
import { control, percentiles, type SilenceAnswer } from "../../harness/client-sim.js";
import { describeLoad, machineLoadSince, sampleMachine } from "../machine-load.js";
import type { DetectionFigure } from "./figures.js";
import { SLOW_REPLY_MS, type ReportCounter } from "./observer.js";
import { CORES, scrape } from "./readings.js";

const P = DEFAULT_MONITOR_TIMINGS;
/** The target for last reply → NodeDead: the dead timeout, one sweep, and 100 ms. */
export const DETECTION_BOUND_MS = P.deadTimeoutMs + P.sweepIntervalMs + 100;

/**
 * Detection is measured once the leader reads its replies as they come: after the bare loop
 * shared the machine with it, the leader may be seconds behind, its replies waiting in the
 * server, and a client's last reply read that late moves its NodeDead as late. So the bench
 * first waits until no NodeState for SETTLED_MS said a ping's reply was read more than
 * SLOW_REPLY_MS after the ping went out (at most SETTLE_MAX_MS).
 */
const SETTLED_MS = 2000;
const SETTLE_MAX_MS = 30_000;

/**
 * Silences `count` of the registered clients at once and measures silence → NodeDead, and
 * each client's last reply → its NodeDead.
 */
export async function measureDetectionAt(
  nc: NatsConnection,
  counter: ReportCounter,
  prefix: string,
  n: number,
  count: number,
  silencedRanges: [number, number][],
  metricsUrl: string,
  log: (line: string) => void,
): Promise<DetectionFigure> {
  const settleFrom = performance.now();
  const settled = await waitFor(
    "the leader reading its replies as they come",
    () => (performance.now() - Math.max(counter.lastSlowReply, settleFrom) >= SETTLED_MS ? true : undefined),
    SETTLE_MAX_MS,
  ).catch(() => false);
  const settledAfterMs = settled ? Math.round(performance.now() - settleFrom) : null;
  const before = await scrape(metricsUrl);
  const from = n - count;
  log(
    `  detection: silencing ${count} of ${n.toLocaleString("en")} clients (` +
      (settledAfterMs !== null
        ? `after ${settledAfterMs} ms, once no NodeState for ${SETTLED_MS} ms reported a reply read more than ${SLOW_REPLY_MS} ms after its ping`
        : `the leader still read replies more than ${SLOW_REPLY_MS} ms late after ${SETTLE_MAX_MS} ms; measured anyway`) +
      ")",
  );
  const machine0 = sampleMachine();
  const t0 = performance.now();
  const answer = await control<SilenceAnswer>(nc, prefix, { op: "silence", from, to: n });
  silencedRanges.push([from, n]);
  const bound = P.deadTimeoutMs + P.pingIntervalMs;
  const subjects = Array.from({ length: count }, (_, i) => `${prefix}.${from + i}`);
  await waitFor("NodeDead for the silenced clients", () => subjects.every((s) => counter.dead.has(s)), bound + 10_000).catch(
    () => undefined,
  );
  const machine = machineLoadSince(machine0, CORES);
  const latencies = subjects.filter((s) => counter.dead.has(s)).map((s) => counter.dead.get(s)! - t0);
  // Both clocks are the machine's: the simulator's times are ms since the Unix epoch.
  const sinceLastReply = subjects.flatMap((s, i) => {
    const dead = counter.dead.get(s);
    const last = answer.lastReplyAt[i];
    return dead === undefined || last === null || last === undefined ? [] : [performance.timeOrigin + dead - last];
  });
  const toPublish = subjects.flatMap((s, i) => {
    const ts = counter.deadPublished.get(s);
    const last = answer.lastReplyAt[i];
    return ts === undefined || last === null || last === undefined ? [] : [ts - last];
  });
  const [p50, p99] = percentiles(latencies, [0.5, 0.99]);
  const [l50, l99] = percentiles(sinceLastReply, [0.5, 0.99]);
  const [t50, t99] = percentiles(toPublish, [0.5, 0.99]);
  const readLag = subjects.flatMap((s, i) => {
    const seen = counter.deadLastSeen.get(s);
    const last = answer.lastReplyAt[i];
    return seen === undefined || last === null || last === undefined ? [] : [seen - last];
  });
  const pastDeadline = subjects.flatMap((s) => {
    const ts = counter.deadPublished.get(s);
    const seen = counter.deadLastSeen.get(s);
    return ts === undefined || seen === undefined ? [] : [ts - (seen + P.deadTimeoutMs)];
  });
  const [r50, r99] = percentiles(readLag, [0.5, 0.99]);
  const [d50, d99] = percentiles(pastDeadline, [0.5, 0.99]);
  const figure: DetectionFigure = {
    clients: n,
    silenced: count,
    p50Ms: Math.round(p50!),
    p99Ms: Math.round(p99!),
    maxMs: Math.round(Math.max(...latencies)),
    lastReply: { p50Ms: Math.round(l50!), p99Ms: Math.round(l99!), maxMs: Math.round(Math.max(...sinceLastReply)) },
    lastReplyToPublish: { p50Ms: Math.round(t50!), p99Ms: Math.round(t99!), maxMs: Math.round(Math.max(...toPublish)) },
    replyReadLag: { p50Ms: Math.round(r50!), p99Ms: Math.round(r99!) },
    pastDeadline: { p50Ms: Math.round(d50!), p99Ms: Math.round(d99!) },
    missed: count - latencies.length,
    boundMs: DETECTION_BOUND_MS,
    sweepStalls: 0,
    sweepStalledMs: 0,
    settledAfterMs,
    machine,
  };
  const after = await scrape(metricsUrl);
  figure.sweepStalls = after.sweepStalls - before.sweepStalls;
  figure.sweepStalledMs = after.sweepStalledMs - before.sweepStalledMs;
  log(
    `    silence → NodeDead: p50 ${figure.p50Ms} ms, p99 ${figure.p99Ms} ms, max ${figure.maxMs} ms; last reply → NodeDead published: ` +
      `p50 ${figure.lastReplyToPublish.p50Ms} ms, p99 ${figure.lastReplyToPublish.p99Ms} ms, max ${figure.lastReplyToPublish.maxMs} ms (bound ${figure.boundMs} ms); ` +
      `of which the leader read the last reply after p50 ${figure.replyReadLag.p50Ms} ms, p99 ${figure.replyReadLag.p99Ms} ms and published past its deadline by p50 ${figure.pastDeadline.p50Ms} ms, ` +
      `p99 ${figure.pastDeadline.p99Ms} ms; received here: p50 ${figure.lastReply.p50Ms} ms, p99 ${figure.lastReply.p99Ms} ms, max ${figure.lastReply.maxMs} ms; missed ${figure.missed}; ${figure.sweepStalls} stalled sweeps (${figure.sweepStalledMs} ms credited); machine: ${describeLoad(machine)}`,
  );
  return figure;
}
