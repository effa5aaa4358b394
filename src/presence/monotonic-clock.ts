/**
 * Epoch milliseconds on a monotonic clock: the wall clock at process start plus monotonic
 * time since. Every time the machines judge by comes from here, so a step of the system
 * clock (NTP, a resumed VM) neither kills every client nor delays every verdict.
 */
import { performance } from "node:perf_hooks";

export const monotonicEpochMs = (now = performance.now()): number => Math.round(performance.timeOrigin + now);
