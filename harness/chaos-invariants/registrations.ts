/**
 * The chaos checks on what clients send: every acknowledged registration is reported
 * present in time, and refused input (malformed registrations, subjects nobody registered)
 * is never pinged nor reported.
 */
import { DEFAULT_CHAOS_TIMINGS, REFUSED_KINDS, type ChaosRecord, type ChaosTimings } from "./record.js";
import { byArrival, ClientTimeline, describe, fmt, takeovers } from "./timeline.js";
import type { CheckResult, Violation } from "./verdict.js";

/**
 * 9. Nothing a client sent is lost: every registration JetStream acknowledged gets a
 * NodePresent within the bound (extended to a takeover's bound when a takeover comes in
 * between: the new leader pulls what the old one left). The report may beat the harness's
 * acknowledgement by a little (the travel allowance). A registration the harness undid
 * (unregistered or registered again) within the bound is not judged.
 */
export function checkRegistrationsReported(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const takeoverTimes = takeovers(record.heartbeats).map((t) => t.at);
  const presence = byArrival(record.presence).filter((r) => r.type === "NodePresent");
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  for (const reg of byArrival(record.actions).filter((x) => x.kind === "register")) {
    let deadline = reg.at + timings.registrationBoundMs;
    for (const f of takeoverTimes) if (f > reg.at && f <= deadline) deadline = Math.max(deadline, f + timings.takeoverBoundMs);
    const undone = timeline.nextAfter(reg.subject, reg.at, ["unregister", "register"]);
    if ((undone && undone.at <= deadline) || deadline > record.endAt) {
      skipped += 1;
      continue;
    }
    checked += 1;
    const present = presence.find((r) => r.clientSubject === reg.subject && r.at >= reg.at - timings.travelMs);
    if (!present || present.at > deadline) {
      violations.push({
        at: deadline,
        message: `${reg.subject} registered (acknowledged) at ${fmt(reg.at)}: ${present ? `first NodePresent only at ${fmt(present.at)} (${describe(present)})` : "never reported NodePresent"}, deadline ${fmt(deadline)}`,
      });
    }
  }
  return { name: "registrations reported", checked, unit: "registrations", violations, skipped };
}

/** 8. Refused registrations stay refused: no presence report names a subject the harness never registered. */
export function checkUnknownSubjects(record: ChaosRecord): CheckResult {
  const violations: Violation[] = [];
  for (const r of record.presence) {
    if (!record.subjects.has(r.clientSubject)) violations.push({ at: r.at, message: `${describe(r)}: a subject no client registered` });
  }
  return { name: "no report for refused input", checked: record.presence.length, unit: "presence reports", violations };
}

/**
 * Refused input stays refused: every kind of malformed registration was sent, and none of
 * their subjects was ever pinged (the simulated clients count the pings that arrive on
 * them) or named in a presence report.
 */
export function checkRefusedIgnored(record: ChaosRecord): CheckResult {
  const refused = record.refused ?? [];
  const violations: Violation[] = [];
  const sentKinds = new Set(refused.map((r) => r.kind));
  for (const kind of REFUSED_KINDS) {
    if (!sentKinds.has(kind)) violations.push({ at: record.endAt, message: `no malformed registration of kind ${kind} was sent` });
  }
  const subjects = new Map(refused.filter((r) => r.subject !== undefined).map((r) => [r.subject!, r.kind]));
  for (const p of record.trappedPings ?? []) {
    violations.push({
      at: p.at,
      message: `a ping on ${p.subject} (refused registration, ${subjects.get(p.subject) ?? "?"}) at ${fmt(p.at)}`,
    });
  }
  for (const r of record.presence) {
    if (subjects.has(r.clientSubject))
      violations.push({ at: r.at, message: `${describe(r)}: a refused registration (${subjects.get(r.clientSubject)})` });
  }
  return { name: "refused input ignored", checked: refused.length, unit: "malformed registrations", violations };
}
