/**
 * The chaos checks on deaths and suspicions: no client that answers is reported dead or
 * suspect, every client that stays silent is reported dead in time, and never twice
 * without registering again in between.
 */
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ChaosTimings, type SeenPresence } from "./record.js";
import { answeringFrom, blindWindows, byArrival, ClientTimeline, describe, fmt, takeovers } from "./timeline.js";
import type { CheckResult, Violation } from "./verdict.js";

/**
 * 1. False deaths: a NodeDead for a client that was registered and answering, without a
 * break, for longer than ping interval + travel + answer slack before the leader decided
 * (its arrival minus the travel allowance). A client that answers again is pinged within a
 * ping interval, and that reply restarts its dead timer: a NodeDead after that is one a
 * reply failed to prevent (a client revived 2 s into its silence and reported dead 3 s
 * later, while it answers). Blind windows (a stalled leader or harness) do not count as
 * answering.
 */
export function checkFalseDeaths(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const blind = blindWindows(record, timings);
  const deaths = record.presence.filter((r) => r.type === "NodeDead");
  const window = timings.pingIntervalMs + timings.travelMs + timings.answerSlackMs;
  const violations: Violation[] = [];
  for (const d of deaths) {
    const decidedBy = d.at - timings.travelMs;
    const s = timeline.stateAt(d.clientSubject, decidedBy);
    const since = answeringFrom(s.answeringSince, decidedBy, blind);
    if (since !== undefined && since < decidedBy - window) {
      violations.push({
        at: d.at,
        message: `${describe(d)}, but the client was registered and answering since ${fmt(since)} (${Math.round(d.at - since)} ms before the report; a reply restarts the dead timer within ${window} ms)`,
      });
    }
  }
  return { name: "false deaths", checked: deaths.length, unit: "NodeDead", violations };
}

/**
 * False suspects: a NodeSuspect for a client that was registered and answering, without a
 * break, for longer than two ping intervals plus travel before the leader decided. A ping
 * goes out after a ping interval of quiet and may take a ping interval to be answered, so
 * a client that answers cannot miss one after that. Blind windows do not count as answering.
 */
export function checkFalseSuspects(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const blind = blindWindows(record, timings);
  const suspects = record.presence.filter((r) => r.type === "NodeSuspect");
  const window = 2 * timings.pingIntervalMs + timings.travelMs;
  const violations: Violation[] = [];
  for (const r of suspects) {
    const decidedBy = r.at - timings.travelMs;
    const since = answeringFrom(timeline.stateAt(r.clientSubject, decidedBy).answeringSince, decidedBy, blind);
    if (since !== undefined && since < decidedBy - window) {
      violations.push({
        at: r.at,
        message: `${describe(r)}, but the client was registered and answering since ${fmt(since)} (${Math.round(r.at - since)} ms before the report, more than ${window} ms)`,
      });
    }
  }
  return { name: "false suspects", checked: suspects.length, unit: "NodeSuspect", violations };
}

/**
 * 2. Missed deaths: a client silenced at s that stays silent and registered must get a
 * NodeDead (arriving after s) within dead timeout + ping interval + allowance of the
 * later of s and the last takeover in that time (a takeover restarts the dead timer).
 * A silencing ended (revived, unregistered) before its deadline is not judged.
 */
export function checkMissedDeaths(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const takeoverTimes = takeovers(record.heartbeats).map((t) => t.at);
  const span = timings.deadTimeoutMs + timings.pingIntervalMs + timings.deathAllowanceMs;
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  for (const subject of timeline.subjects()) {
    for (const silence of timeline.actionsOf(subject).filter((a) => a.kind === "silence")) {
      if (!timeline.stateAt(subject, silence.at).registered) continue;
      let base = silence.at;
      let deadline = base + span;
      for (const f of takeoverTimes) {
        if (f > base && f < deadline) {
          base = f;
          deadline = f + span;
        }
      }
      const ended = timeline.nextAfter(subject, silence.at, ["revive", "unregister", "register"]);
      if ((ended && ended.at < deadline) || deadline > record.endAt) {
        skipped += 1;
        continue;
      }
      checked += 1;
      const dead = record.presence.find((r) => r.type === "NodeDead" && r.clientSubject === subject && r.at >= silence.at);
      if (!dead) {
        violations.push({
          at: deadline,
          message: `${subject} silenced at ${fmt(silence.at)} never got a NodeDead (deadline ${fmt(deadline)}, observed until ${fmt(record.endAt)})`,
        });
      } else if (dead.at > deadline) {
        violations.push({
          at: dead.at,
          message: `${subject} silenced at ${fmt(silence.at)}: ${describe(dead)} came ${Math.round(dead.at - deadline)} ms after its deadline ${fmt(deadline)}`,
        });
      }
    }
  }
  return { name: "missed deaths", checked, unit: "silenced clients", violations, skipped };
}

/**
 * 3. Duplicate NodeDead: two NodeDead for one client without the harness registering it
 * again in between. A NodePresent alone does not count: a new leader reporting a dead
 * client present again (it reloaded a registration that should have been removed) and
 * then dead again is exactly the duplicate this looks for. A registration acknowledged
 * shortly before the first NodeDead may reach the leader after it, so it counts too.
 */
export function checkDuplicateDeaths(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const lastDead = new Map<string, SeenPresence>();
  const violations: Violation[] = [];
  let checked = 0;
  for (const r of byArrival(record.presence)) {
    if (r.type !== "NodeDead") continue;
    checked += 1;
    const before = lastDead.get(r.clientSubject);
    lastDead.set(r.clientSubject, r);
    if (!before) continue;
    const registeredAgain = timeline
      .actionsOf(r.clientSubject)
      .some((a) => a.kind === "register" && a.at > before.at - timings.registrationSlackMs && a.at <= r.at);
    if (!registeredAgain) {
      violations.push({ at: r.at, message: `${describe(r)} after ${describe(before)}, with no registration in between` });
    }
  }
  return { name: "duplicate NodeDead", checked, unit: "NodeDead", violations };
}
