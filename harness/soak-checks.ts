/**
 * The soak's verdicts, pure functions with their own tests: every NodeDead must fall in a
 * silence of its client, within a bound, and every silence that ended must be reported
 * dead once; suspects and leaves are judged per client with the chaos run's checks
 * (harness/chaos-invariants/), from the soak's own record of what it did to each client.
 */
import { checkFalseSuspects } from "./chaos-invariants/deaths.js";
import { checkLeavesReported, checkNoReportAfterLeave } from "./chaos-invariants/leaves.js";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ChaosTimings, type Window } from "./chaos-invariants/record.js";
import { deadlineFrom } from "./chaos-invariants/timeline.js";
import type { CheckResult } from "./chaos-invariants/verdict.js";

/** A client's silence: from when it stopped answering until it was revived (undefined: still silent). */
export interface Silence {
  from: number;
  to: number | undefined;
}

/** Slack on top of dead timeout + ping interval for a NodeDead (travel, a busy machine). */
export const SOAK_DEATH_SLACK_MS = 1000;

/**
 * Checks every NodeDead against the silences: one is false unless its client had been silent
 * for at least the dead timeout less one ping interval (the last answer may precede the
 * silence by that much) and at most a second past its revival (a ping in flight; moved by
 * the blind windows in between). One that comes later than dead timeout + ping interval +
 * slack after the silence began (moved by the blind windows in between: a leader or a
 * harness that stood still) is late. Every silence that ended is reported dead exactly once.
 * `details` says why each false or late death is one.
 */
export function judgeDeaths(
  silences: Map<string, Silence[]>,
  deaths: { subject: string; at: number }[],
  timings: { deadTimeoutMs: number; pingIntervalMs: number },
  blind: readonly Window[] = [],
  slackMs = SOAK_DEATH_SLACK_MS,
): { falseDeaths: string[]; late: string[]; missed: string[]; twice: string[]; silences: number; details: string[] } {
  const falseDeaths: string[] = [];
  const late: string[] = [];
  const details: string[] = [];
  const deathsIn = new Map<Silence, number>();
  const s1 = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
  for (const d of deaths) {
    const own = silences.get(d.subject) ?? [];
    const matching = own.find(
      (s) =>
        d.at - s.from >= timings.deadTimeoutMs - timings.pingIntervalMs - 250 &&
        (s.to === undefined || d.at <= deadlineFrom(s.to, 1000, [], blind)),
    );
    if (matching === undefined) {
      falseDeaths.push(d.subject);
      const near = own.filter((s) => s.from <= d.at).at(-1);
      details.push(
        `${d.subject} dead at ${s1(d.at)}: ${near ? `silent from ${s1(near.from)} to ${near.to === undefined ? "the end" : s1(near.to)}` : "never silent"}`,
      );
      continue;
    }
    deathsIn.set(matching, (deathsIn.get(matching) ?? 0) + 1);
    const due = deadlineFrom(matching.from, timings.deadTimeoutMs + timings.pingIntervalMs + slackMs, [], blind);
    if (d.at > due) {
      late.push(d.subject);
      details.push(`${d.subject} dead at ${s1(d.at)}, silent since ${s1(matching.from)}: due by ${s1(due)}`);
    }
  }
  const missed: string[] = [];
  const twice: string[] = [];
  let count = 0;
  for (const [subject, list] of silences) {
    for (const s of list) {
      count += 1;
      const n = deathsIn.get(s) ?? 0;
      if (s.to !== undefined && n === 0) missed.push(subject);
      if (n > 1) twice.push(subject);
    }
  }
  return { falseDeaths, late, missed, twice, silences: count, details };
}

/**
 * Suspects and leaves, judged per client as the chaos run judges them: no NodeSuspect of a
 * client answering for over two ping intervals plus travel, a NodeLeft within the leave
 * bound of every unregistration, and no report of a client between its leave and its next
 * registration.
 */
export function judgeChurn(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult[] {
  return [checkFalseSuspects(record, timings), checkLeavesReported(record, timings), checkNoReportAfterLeave(record, timings)];
}
