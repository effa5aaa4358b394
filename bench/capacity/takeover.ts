/**
 * The takeover in the capacity run: crashes the settled leader with every client stored
 * and measures how the other coordinator takes over, from its first heartbeat to a report
 * from it for every client.
 */
import { DEFAULT_TIMINGS } from "../../src/config/config.js";
import { waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import { settledLeader } from "../../harness/capacity-judge.js";
import type { TakeoverFigure } from "./figures.js";
import type { ReportCounter } from "./observer.js";
import { cpuOrNaN, SATURATION, waitForProgress } from "./readings.js";

/** Leadership counts as settled for the takeover once one leader alone was heard for this long. */
const SETTLED = { windowMs: 2 * DEFAULT_TIMINGS.leaderTimeoutMs, heartbeatIntervalMs: DEFAULT_TIMINGS.heartbeatIntervalMs };

/**
 * Crashes the leader and measures how the other coordinator takes over: its first heartbeat
 * under a newer epoch, the load of the stored registrations, and a report from it for every
 * client. The leader is the one heard alone for a while (settledLeader): after an overload the
 * last heartbeat heard may be a deposed leader's, and crashing the wrong coordinator would
 * measure nothing. Nothing here throws on a slow takeover: the figure says what was seen,
 * with the new leader's own election log when it did not take over.
 */
export async function measureTakeover(o: {
  counter: ReportCounter;
  coordinators: [CoordinatorProcess, CoordinatorProcess];
  live: number;
  seeded: number;
  maxWaitMs: number;
  log: (line: string) => void;
}): Promise<TakeoverFigure> {
  const { counter, coordinators, live, seeded, log } = o;
  const notMeasured = (reason: string): TakeoverFigure => {
    log(`    takeover not measured: ${reason}`);
    return {
      clients: live,
      seeded,
      crashed: null,
      newLeader: null,
      loadMs: null,
      firstHeartbeatMs: null,
      everyClientReportedMs: null,
      heartbeatToEveryClientMs: null,
      reported: 0,
      nodePresent: 0,
      gaveUp: reason,
    };
  };
  const settled = await waitFor(
    "settled leadership",
    () => settledLeader(counter.heartbeats, performance.now(), SETTLED) ?? undefined,
    o.maxWaitMs,
  ).catch(() => null);
  if (settled === null) {
    const ids = [
      ...new Set(
        counter.heartbeats.filter((h) => h.atMs > performance.now() - SETTLED.windowMs).map((h) => `${h.coordinatorId} (epoch ${h.epoch})`),
      ),
    ];
    return notMeasured(
      `leadership did not settle within ${Math.round(o.maxWaitMs / 1000)} s (heard lately: ${ids.join(", ") || "no heartbeat"})`,
    );
  }
  const victim = coordinators.find((c) => c.id === settled.coordinatorId);
  const survivor = coordinators.find((c) => c.id !== settled.coordinatorId);
  if (victim === undefined || survivor === undefined)
    return notMeasured(`the heartbeats name ${settled.coordinatorId}, which this bench did not start`);
  if (!survivor.running) return notMeasured(`${survivor.id}, which should take over, exited with ${String(survivor.exitCode)}`);

  log(
    `  takeover: SIGKILL of the leader ${victim.id} (epoch ${settled.epoch}) with ${live.toLocaleString("en")} stored clients; ${survivor.id} should take over`,
  );
  counter.watchEpoch = Math.max(counter.highestEpoch, settled.epoch);
  const survivorPid = survivor.child.pid!;
  const linesBefore = survivor.lines.length;
  const cpu0 = cpuOrNaN(survivorPid);
  const t0 = performance.now();
  /** When the survivor's first heartbeat under a newer epoch was heard (polled far more often than heartbeats drop off the kept list). */
  const newLeaderHeartbeat = () =>
    counter.heartbeats.find((h) => h.atMs >= t0 && h.coordinatorId === survivor.id && h.epoch > settled.epoch)?.atMs;
  victim.signal("SIGKILL");
  const firstHeartbeat = await waitFor("the new leader's heartbeat", newLeaderHeartbeat, o.maxWaitMs).catch(() => null);
  const survivorLogs = () =>
    survivor.lines.slice(linesBefore).flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  if (firstHeartbeat === null) {
    const waitedS = (performance.now() - t0) / 1000;
    const cores = (cpuOrNaN(survivorPid) - cpu0) / waitedS;
    const said = survivorLogs()
      .filter((l) => l.component === "election" || l.level === "warn" || l.level === "error")
      .slice(-8)
      .map(
        (l) =>
          `${String(l.level)} ${String(l.message)}${l.reason !== undefined ? ` (${String(l.reason)})` : ""}${l.error !== undefined ? `: ${String(l.error)}` : ""}`,
      );
    const reason =
      `no heartbeat from ${survivor.id} under an epoch above ${settled.epoch} within ${Math.round(waitedS)} s of the crash; ` +
      `${survivor.running ? `it is running and used ${cores.toFixed(2)} cores meanwhile` : `it exited with ${String(survivor.exitCode)}`}; ` +
      `its log since the crash: ${said.length > 0 ? said.join(" | ") : "nothing about the election"}`;
    log(`    ${reason}`);
    return {
      clients: live,
      seeded,
      crashed: victim.id,
      newLeader: survivor.id,
      loadMs: null,
      firstHeartbeatMs: null,
      everyClientReportedMs: null,
      heartbeatToEveryClientMs: null,
      reported: Math.min(live, counter.reportedAfter.size),
      nodePresent: Math.min(live, counter.presentAfter.size),
      gaveUp: reason,
    };
  }
  // The survivor is the only coordinator left: its own BecameLeader is no change to judge.
  const wait = await waitForProgress(
    firstHeartbeat,
    () => counter.reportedAfter.size,
    () => cpuOrNaN(survivorPid),
    () => 0,
    {
      wanted: live,
      counted: "reported",
      maxWaitMs: o.maxWaitMs,
      ...SATURATION,
    },
  );
  let everyMs: number | null = null;
  if (wait.done) everyMs = Math.round(Math.max(...counter.reportedAfter.values()) - t0);
  else log(`    stopped waiting for the new leader's reports: ${wait.reason}`);
  const loaded = survivorLogs().find((l) => l.message === "loaded stored registrations");
  const figure: TakeoverFigure = {
    clients: live,
    seeded,
    crashed: victim.id,
    newLeader: survivor.id,
    loadMs: typeof loaded?.ms === "number" ? loaded.ms : null,
    firstHeartbeatMs: Math.round(firstHeartbeat - t0),
    everyClientReportedMs: everyMs,
    heartbeatToEveryClientMs: everyMs === null ? null : Math.round(everyMs - (firstHeartbeat - t0)),
    reported: Math.min(live, counter.reportedAfter.size),
    nodePresent: Math.min(live, counter.presentAfter.size),
    gaveUp: wait.done ? null : wait.reason,
  };
  log(
    `    ${survivor.id}'s first heartbeat as leader after ${figure.firstHeartbeatMs} ms; it loaded ${live.toLocaleString("en")} registrations in ${String(figure.loadMs)} ms; ` +
      (everyMs !== null
        ? `every client reported ${String(figure.heartbeatToEveryClientMs)} ms after that heartbeat`
        : `${figure.reported.toLocaleString("en")} reported`) +
      `; ${figure.nodePresent.toLocaleString("en")} of them with a NodePresent`,
  );
  return figure;
}
