/**
 * Stall credit: how much of the time a leader's event loop stood still is not held against
 * its clients (Lifeguard's local health awareness), within a cap, logged and counted.
 */
import { WarningThrottle, type Logger } from "../observe/logger.js";
import type { MetricsSink } from "../observe/metrics.js";

/**
 * A sweep asked for more than `stallThresholdMs` after it was due follows an event-loop
 * stall, and defers its verdicts (LivenessTable.sweep): while the loop stood still, pings
 * that were due did not go out, and replies piled up unread. A shorter one needs no credit.
 * The SWEEP is delivered after the socket was read, so the replies that came meanwhile are
 * applied before anyone is judged; and a ping that went out late has its full ping interval
 * from when it went out. What such a stall costs a client is its next ping being that much
 * later, far inside its dead timeout. So the threshold is a third of the ping interval (a
 * late ping still leaves two thirds of the interval for its reply), between 100 and 250 ms:
 * a busy leader at 50,000 clients is often 100–250 ms late, and crediting that moved every
 * deadline, delaying verdicts and pings for nothing.
 */
export const STALL_THRESHOLD_MS = 100;
const STALL_THRESHOLD_MAX_MS = 250;
export function stallThresholdMs(pingIntervalMs: number | undefined): number {
  if (pingIntervalMs === undefined) return STALL_THRESHOLD_MS;
  return Math.min(STALL_THRESHOLD_MAX_MS, Math.max(STALL_THRESHOLD_MS, Math.round(pingIntervalMs / 3)));
}
/**
 * Stall credit is capped, as Lifeguard caps its timeout multiplier: within any window of
 * 6 × the dead timeout, at most half of it is credited. One stall of twice the dead timeout
 * is forgiven in full, with room for the short stalls around it; a leader that is late on
 * every sweep still judges, with its clocks at no less than half speed (NodeDead within
 * about twice the dead timeout).
 */
const STALL_CREDIT_WINDOW_DEAD_TIMEOUTS = 6;
/**
 * Stalls of this many ms or more are warnings: long enough that a leader without stall
 * credit would have called answering clients suspect. Shorter ones (a GC pause on a busy
 * machine) are logged at info.
 */
export const STALL_WARN_MS = 1000;

export class StallCredit {
  /** Stall time credited lately: when, and how much (see STALL_CREDIT_WINDOW_DEAD_TIMEOUTS). */
  private credits: { at: number; ms: number }[] = [];
  private readonly stalls: WarningThrottle;
  private readonly shortStalls: WarningThrottle;

  constructor(
    private readonly deadTimeoutMs: number,
    log: Logger,
    private readonly metrics?: MetricsSink,
  ) {
    this.stalls = new WarningThrottle(log, "more event-loop stalls deferred verdicts (counted, not logged one by one)");
    this.shortStalls = new WarningThrottle(
      log,
      "more short event-loop stalls deferred verdicts (counted, not logged one by one)",
      10_000,
      "info",
    );
  }

  /** The part of a stall that is credited; logs and counts it. */
  credit(now: number, stallMs: number): number {
    const granted = this.grant(now, stallMs);
    if (granted > 0) {
      (stallMs >= STALL_WARN_MS ? this.stalls : this.shortStalls).warn("stall", `event loop stalled ${stallMs} ms; verdicts deferred`, {
        stalledMs: stallMs,
        creditedMs: granted,
      });
      this.metrics?.sweepStalled(granted);
    } else {
      this.stalls.warn("stall-uncredited", `event loop stalled ${stallMs} ms; stall credit used up, verdicts not deferred`, {
        stalledMs: stallMs,
      });
    }
    return granted;
  }

  /** How much of `ms` unobserved time is credited now, within the cap; it is booked. */
  grant(now: number, ms: number): number {
    const window = STALL_CREDIT_WINDOW_DEAD_TIMEOUTS * this.deadTimeoutMs;
    while (this.credits.length > 0 && this.credits[0]!.at < now - window) this.credits.shift();
    const used = this.credits.reduce((sum, c) => sum + c.ms, 0);
    const granted = Math.max(0, Math.min(ms, Math.floor(window / 2 - used)));
    if (granted > 0) this.credits.push({ at: now, ms: granted });
    return granted;
  }

  /** Leadership ended: the next starts with the whole credit, and pending summaries are logged. */
  reset(): void {
    this.credits = [];
    this.stalls.flush();
    this.shortStalls.flush();
  }
}
