/**
 * The chaos checks on unregistrations: an acknowledged leave is reported NodeLeft in time,
 * and no report names the client after it until it registers again.
 */
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ChaosTimings, type ClientAction, type SeenPresence } from "./record.js";
import { blindWindows, byArrival, ClientTimeline, deadlineFrom, describe, fmt, takeovers } from "./timeline.js";
import type { CheckResult, Violation } from "./verdict.js";

/** Presence reports by client subject, each list in arrival order. */
function bySubject(presence: readonly SeenPresence[]): Map<string, SeenPresence[]> {
  const out = new Map<string, SeenPresence[]>();
  for (const r of byArrival(presence)) {
    let list = out.get(r.clientSubject);
    if (!list) {
      list = [];
      out.set(r.clientSubject, list);
    }
    list.push(r);
  }
  return out;
}

/** The unregistrations that had a client to remove: acknowledged while the client was registered, with when its next registration came. */
function leaves(timeline: ClientTimeline): { u: ClientAction; lastRegisteredAt: number; nextRegisterAt: number }[] {
  const out: { u: ClientAction; lastRegisteredAt: number; nextRegisterAt: number }[] = [];
  for (const subject of timeline.subjects()) {
    let lastRegisteredAt: number | undefined;
    for (const a of timeline.actionsOf(subject)) {
      if (a.kind === "register") lastRegisteredAt = a.at;
      if (a.kind !== "unregister" || lastRegisteredAt === undefined) continue;
      out.push({ u: a, lastRegisteredAt, nextRegisterAt: timeline.nextAfter(subject, a.at, ["register"])?.at ?? Infinity });
      lastRegisteredAt = undefined;
    }
  }
  return out.sort((x, y) => x.u.at - y.u.at);
}

/** What both leave checks judge by: the leaves, the takeovers and blind windows that move their deadlines, and the reports per client. */
function leaveEvidence(record: ChaosRecord, timings: ChaosTimings) {
  return {
    leaves: leaves(new ClientTimeline(record.actions)),
    takeoverTimes: takeovers(record.heartbeats).map((t) => t.at),
    blind: blindWindows(record, timings),
    reports: bySubject(record.presence),
  };
}

/**
 * NodeLeft in time: a client registered (and not reported dead since) whose unregistration
 * JetStream acknowledged at u gets a NodeLeft within the leave bound of u, moved by blind
 * windows in between; after a takeover in between, within the takeover bound of it (the
 * new leader loads every stored client before it reads the leave from the stream). The report may beat the harness's acknowledgement
 * by the travel allowance. A client reported dead by then needs none (it may die before the
 * leader reads its leave); one registered again within the bound, or whose deadline is past
 * the observation, is not judged.
 */
export function checkLeavesReported(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const { leaves, takeoverTimes, blind, reports } = leaveEvidence(record, timings);
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  for (const { u, lastRegisteredAt, nextRegisterAt } of leaves) {
    const deadline = deadlineFrom(
      u.at,
      timings.leaveBoundMs,
      takeoverTimes,
      blind,
      Math.max(timings.leaveBoundMs, timings.takeoverBoundMs),
    );
    if (nextRegisterAt <= deadline || deadline > record.endAt) {
      skipped += 1;
      continue;
    }
    const mine = (reports.get(u.subject) ?? []).filter((r) => r.at > lastRegisteredAt - timings.travelMs && r.at < nextRegisterAt);
    if (mine.some((r) => r.type === "NodeDead" && r.at <= deadline)) {
      skipped += 1;
      continue;
    }
    checked += 1;
    const left = mine.find((r) => r.type === "NodeLeft" && r.at >= u.at - timings.travelMs);
    if (!left || left.at > deadline) {
      violations.push({
        at: deadline,
        message: `${u.subject} unregistered (acknowledged) at ${fmt(u.at)}: ${left ? `NodeLeft only at ${fmt(left.at)} (${describe(left)})` : "never reported NodeLeft"}, deadline ${fmt(deadline)}`,
      });
    }
  }
  return { name: "NodeLeft in time", checked, unit: "unregistrations", violations, skipped };
}

/**
 * No report after leave: between an unregistration's acknowledgement (plus travel) and the
 * client's next registration, no presence report other than its NodeLeft names the client,
 * except reports of a leader that had not read the leave yet: those come before their own
 * epoch's NodeLeft, and either by the leave's bound (moved past takeovers and blind
 * windows) or followed by that NodeLeft (how late it came is the NodeLeft check's to
 * judge). A coordinator that ignored the leave, or a new leader that resurrected the
 * client from the bucket, reports it on past the bound with no NodeLeft and fails.
 */
export function checkNoReportAfterLeave(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const { leaves, takeoverTimes, blind, reports } = leaveEvidence(record, timings);
  const violations: Violation[] = [];
  let checked = 0;
  for (const { u, nextRegisterAt } of leaves) {
    const from = u.at + timings.travelMs;
    const until = Math.min(nextRegisterAt - timings.travelMs, record.endAt);
    if (until <= from) continue;
    checked += 1;
    const deadline = deadlineFrom(u.at, timings.leaveBoundMs, takeoverTimes, blind);
    const mine = (reports.get(u.subject) ?? []).filter((r) => r.at > u.at - timings.travelMs && r.at < until);
    const after = mine.filter((r) => r.at > from && r.type !== "NodeLeft");
    const leftIn = (r: SeenPresence, after: boolean) =>
      mine.some((e) => e.type === "NodeLeft" && e.epoch === r.epoch && (after ? e.at >= r.at : e.at < r.at));
    const bad = after.filter((r) => leftIn(r, false) || (r.at > deadline && !leftIn(r, true)));
    if (bad.length > 0) {
      violations.push({
        at: bad[0]!.at,
        message: `${u.subject} unregistered (acknowledged) at ${fmt(u.at)}, not registered again until ${Number.isFinite(nextRegisterAt) ? fmt(nextRegisterAt) : "the end"}: ${bad.length} report(s) after it, first ${describe(bad[0]!)}`,
      });
    }
  }
  return { name: "no report after leave", checked, unit: "unregistrations", violations };
}
