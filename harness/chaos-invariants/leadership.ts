/**
 * The chaos checks on leadership: epochs only grow and never overlap, a new leader reports
 * every registered client within its bound, and the leader faults the other checks depend
 * on did run.
 */
import {
  DEFAULT_CHAOS_TIMINGS,
  type ChaosRecord,
  type ChaosTimings,
  type SeenElection,
  type SeenHeartbeat,
  type SeenPresence,
} from "./record.js";
import { byArrival, ClientTimeline, describe, fmt, takeovers } from "./timeline.js";
import type { CheckResult, Violation } from "./verdict.js";

/**
 * 4. Stale epochs: a presence report with an epoch lower than the highest epoch already
 * seen (arrival order) in a presence or an election report.
 */
export function checkStaleEpochs(record: ChaosRecord): CheckResult {
  type Item = { at: number; epoch: number; presence?: SeenPresence; election?: SeenElection };
  const items: Item[] = [
    ...record.presence.map((p) => ({ at: p.at, epoch: p.epoch, presence: p })),
    ...record.elections.map((e) => ({ at: e.at, epoch: e.epoch, election: e })),
  ];
  // Stable: at equal arrival times, presence before election reports (no false alarm on a tie).
  items.sort((a, b) => a.at - b.at || (a.presence ? 0 : 1) - (b.presence ? 0 : 1));
  const violations: Violation[] = [];
  let highest = 0;
  let highestFrom = "";
  for (const item of items) {
    if (item.presence && item.epoch < highest) {
      violations.push({ at: item.at, message: `${describe(item.presence)}, after epoch ${highest} was seen (${highestFrom})` });
    }
    if (item.epoch > highest) {
      highest = item.epoch;
      highestFrom = item.presence
        ? `in ${item.presence.type} from ${item.presence.coordinatorId} at ${fmt(item.at)}`
        : `in ${item.election!.type} from ${item.election!.coordinatorId} at ${fmt(item.at)}`;
    }
  }
  return { name: "stale epochs", checked: record.presence.length, unit: "presence reports", violations };
}

/**
 * 5. Overlapping epochs: two coordinators publishing presence reports under one epoch, or
 * a coordinator publishing under an epoch after another published under a higher one.
 */
export function checkOverlappingEpochs(record: ChaosRecord): CheckResult {
  const owner = new Map<number, SeenPresence>();
  let highest: SeenPresence | undefined;
  const violations: Violation[] = [];
  for (const r of byArrival(record.presence)) {
    const first = owner.get(r.epoch);
    if (!first) owner.set(r.epoch, r);
    else if (first.coordinatorId !== r.coordinatorId) {
      violations.push({
        at: r.at,
        message: `${describe(r)}, but epoch ${r.epoch} was already ${first.coordinatorId}'s (${describe(first)})`,
      });
      continue;
    }
    if (highest && highest.coordinatorId !== r.coordinatorId && highest.epoch > r.epoch) {
      violations.push({
        at: r.at,
        message: `${describe(r)} after ${highest.coordinatorId} published under the higher epoch ${highest.epoch} (${describe(highest)})`,
      });
    }
    if (!highest || r.epoch > highest.epoch) highest = r;
  }
  return { name: "overlapping epochs", checked: owner.size, unit: "epochs with reports", violations };
}

/** 6. Epochs only grow in heartbeats (arrival order). */
export function checkHeartbeatEpochs(record: ChaosRecord): CheckResult {
  const violations: Violation[] = [];
  let highest: SeenHeartbeat | undefined;
  for (const hb of byArrival(record.heartbeats)) {
    if (highest && hb.epoch < highest.epoch) {
      violations.push({
        at: hb.at,
        message: `heartbeat of ${hb.coordinatorId} epoch=${hb.epoch} at ${fmt(hb.at)} after ${highest.coordinatorId}'s epoch=${highest.epoch} at ${fmt(highest.at)}`,
      });
    }
    if (!highest || hb.epoch > highest.epoch) highest = hb;
  }
  return { name: "heartbeat epochs grow", checked: record.heartbeats.length, unit: "heartbeats", violations };
}

/**
 * 7. After each takeover (a new epoch in the heartbeats) every client that is registered
 * at that moment (and was not reported dead since it last registered) gets a presence
 * report of the new epoch within the bound, with no registration in between. A takeover
 * whose epoch ends (or the observation ends) before the bound is skipped; so is a client
 * unregistered or registered again within the window.
 */
export function checkMonitoredAfterTakeover(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const all = takeovers(record.heartbeats);
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  const presence = byArrival(record.presence);
  for (const [i, t] of all.entries()) {
    const until = t.at + timings.takeoverBoundMs;
    const next = all[i + 1];
    if ((next && next.at < until) || t.lastAt < until || until > record.endAt) {
      skipped += 1;
      continue;
    }
    checked += 1;
    const reported = new Set(presence.filter((r) => r.epoch === t.epoch && r.at <= until).map((r) => r.clientSubject));
    const missing: string[] = [];
    for (const subject of timeline.subjects()) {
      const s = timeline.stateAt(subject, t.at);
      if (!s.registered || s.lastRegisteredAt === undefined) continue;
      if ((timeline.nextAfter(subject, t.at, ["unregister", "register"])?.at ?? Infinity) <= until) continue;
      const deadSince = presence.some(
        (r) => r.type === "NodeDead" && r.clientSubject === subject && r.at > s.lastRegisteredAt! && r.at <= t.at,
      );
      if (deadSince) continue;
      if (!reported.has(subject)) missing.push(subject);
    }
    if (missing.length > 0) {
      violations.push({
        at: until,
        message: `epoch ${t.epoch} (${t.coordinatorId}, first heartbeat at ${fmt(t.at)}): ${missing.length} registered client(s) got no report within ${timings.takeoverBoundMs} ms: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      });
    }
  }
  return { name: "monitored after takeover", checked, unit: "takeovers", violations, skipped };
}

/**
 * The faults the other checks depend on ran: at least one SIGSTOP of the leader (a stale
 * leader with clients, which must not publish after it wakes) and at least one SIGKILL or
 * SIGTERM of the leader (a takeover that reloads the clients). Without them the run judged
 * no failover with clients.
 */
export function checkLeaderFaultsRan(record: ChaosRecord): CheckResult {
  const faults = record.leadershipFaults ?? [];
  const violations: Violation[] = [];
  const stopped = faults.filter((f) => f.kind === "SIGSTOP").length;
  const ended = faults.filter((f) => f.kind === "SIGKILL" || f.kind === "SIGTERM").length;
  if (stopped === 0) violations.push({ at: record.endAt, message: "no SIGSTOP of the leader ran" });
  if (ended === 0) violations.push({ at: record.endAt, message: "no SIGKILL or SIGTERM of the leader ran" });
  return { name: "leader faults ran", checked: faults.length, unit: "leader faults", violations };
}
