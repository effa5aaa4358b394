/**
 * How busy the whole machine was over a window of a benchmark. The leader shares its cores
 * with nats-server, the follower, the client simulator and this process; when they want more
 * than there is, every one of them waits, and its latencies grow with the wait.
 *
 * - `busyCores`: the cores in use on average (from /proc/stat: all but idle and iowait).
 * - `cpuWaitShare`: the share of the window in which at least one runnable task waited for a
 *   core (Linux pressure stall information, /proc/pressure/cpu "some"); null where the kernel
 *   does not report it.
 *
 * Linux only; elsewhere both figures are null.
 */
import { readFileSync } from "node:fs";

export interface MachineSample {
  atMs: number;
  /** CPU ticks of all cores: busy, and in all. */
  busyTicks: number;
  totalTicks: number;
  /** Microseconds in which some task waited for a CPU, since boot. */
  waitedMicros: number | null;
}

export interface MachineLoad {
  cores: number;
  busyCores: number | null;
  cpuWaitShare: number | null;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** The machine's counters now; null where /proc is not there. */
export function sampleMachine(): MachineSample | null {
  const stat = read("/proc/stat");
  const line = stat?.split("\n").find((l) => l.startsWith("cpu "));
  if (line === undefined) return null;
  // user nice system idle iowait irq softirq steal (guest time is counted in user already)
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  const idle = ticks[3]! + ticks[4]!;
  const some = /^some .*total=(\d+)/m.exec(read("/proc/pressure/cpu") ?? "");
  return { atMs: performance.now(), busyTicks: total - idle, totalTicks: total, waitedMicros: some ? Number(some[1]) : null };
}

/** The machine's load from `start` to now. */
export function machineLoadSince(start: MachineSample | null, cores: number): MachineLoad {
  const end = sampleMachine();
  if (start === null || end === null || end.totalTicks === start.totalTicks) return { cores, busyCores: null, cpuWaitShare: null };
  const busyCores = ((end.busyTicks - start.busyTicks) / (end.totalTicks - start.totalTicks)) * cores;
  const waited =
    start.waitedMicros === null || end.waitedMicros === null
      ? null
      : (end.waitedMicros - start.waitedMicros) / ((end.atMs - start.atMs) * 1000);
  return {
    cores,
    busyCores: Math.round(busyCores * 100) / 100,
    cpuWaitShare: waited === null ? null : Math.round(Math.min(1, waited) * 1000) / 1000,
  };
}

/** "1.62 of 2 cores busy, a task waited for one 31 % of the time". */
export function describeLoad(load: MachineLoad): string {
  if (load.busyCores === null) return "machine load unknown";
  const wait = load.cpuWaitShare === null ? "" : `, a task waited for one ${Math.round(load.cpuWaitShare * 100)} % of the time`;
  return `${load.busyCores} of ${load.cores} cores busy${wait}`;
}
