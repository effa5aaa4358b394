/**
 * The chaos run's output: plain lines, and lines stamped with the time since the faults
 * started (the run's clock, started by startClock).
 */

let t0 = performance.now();

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** Starts the run's clock now (when the faults start), and returns its origin. */
export function startClock(): number {
  t0 = performance.now();
  return t0;
}

/** A time on the run's clock, as printed. */
export const rel = (at = performance.now()) => `${((at - t0) / 1000).toFixed(1).padStart(6)} s`;

/** Prints a line stamped with the run's clock (now, or `at`). */
export const say = (line: string, at?: number): void => out(`${rel(at)}  ${line}`);
