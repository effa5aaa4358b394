/**
 * What the capacity run reads from its processes: a coordinator's Prometheus figures, a
 * process's CPU time, the client simulator's counts, and registration progress sampled
 * until it completes or the leader saturates (harness/capacity-judge.ts decides).
 */
import { cpus } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import { judgeRegistrationWait, type ProgressSample, type WaitPolicy } from "../../harness/capacity-judge.js";
import { control } from "../../harness/client-sim.js";
import { cpuSeconds } from "../../harness/processes.js";

export const CORES = cpus().length;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function sampleStats(nc: NatsConnection, prefix: string, reset: boolean) {
  return control<{ answered: number; elapsedMs: number; cpuMs: number; intervalP50Ms: number; intervalP99Ms: number }>(nc, prefix, {
    op: "stats",
    reset,
  });
}

/** CPU seconds of a process, NaN once it is gone. */
export function cpuOrNaN(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return Number.NaN;
  }
}

/**
 * Waits for `count()` to reach `policy.wanted`, sampling it, the leader's CPU and the leader
 * changes every 250 ms from `t0`; stops early on a saturated leader or a leader change
 * (judgeRegistrationWait).
 */
export async function waitForProgress(
  t0: number,
  count: () => number,
  leaderCpu: () => number,
  leaderChanges: () => number,
  policy: WaitPolicy,
): Promise<{ done: boolean; reason: string }> {
  const samples: ProgressSample[] = [];
  for (;;) {
    samples.push({ atMs: performance.now() - t0, present: count(), leaderCpuSeconds: leaderCpu(), leaderChanges: leaderChanges() });
    const verdict = judgeRegistrationWait(samples, policy);
    if (!verdict.wait) return verdict;
    await sleep(250);
  }
}

/** When a leader counts as saturated while registrations are waited for. */
export const SATURATION = { windowMs: 5000, saturatedCores: 0.9 };

/** The figures this benchmark reads from a coordinator's Prometheus endpoint. */
export async function scrape(
  url: string,
): Promise<{ heapBytes: number; loopDelayP99Ms: number; sweepStalls: number; sweepStalledMs: number }> {
  // A saturated leader may answer late, or not at all: its figures are then unknown.
  const text = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    .then((r) => r.text())
    .catch(() => "");
  const value = (pattern: RegExp) => {
    const m = pattern.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  return {
    heapBytes: value(/^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+-]+)$/m),
    loopDelayP99Ms: round2(value(/^presence_event_loop_delay_seconds\{[^}]*quantile="0\.99"[^}]*\} ([\d.e+-]+)$/m) * 1000),
    sweepStalls: value(/^presence_sweep_stalls_total(?:\{[^}]*\})? ([\d.e+-]+)$/m),
    sweepStalledMs: Math.round(value(/^presence_sweep_stalled_seconds_total(?:\{[^}]*\})? ([\d.e+-]+)$/m) * 1000),
  };
}

export const mb = (bytes: number | null) => (bytes === null || Number.isNaN(bytes) ? "?" : `${(bytes / 1e6).toFixed(0)} MB`);

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
