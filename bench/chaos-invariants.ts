/**
 * The checks of `npm run chaos`, as pure functions over what the run recorded: the reports
 * the observer saw (with their arrival times), the heartbeats, and the harness's own
 * actions on its clients (the ground truth). Each check returns how many items it
 * checked and every violation with its evidence. test/unit/chaos-invariants.test.ts feeds
 * them hand-made sequences.
 *
 * All times are ms on one monotonic clock (performance.now() of the chaos process):
 * arrival times at the observer for reports, and the moment the harness acted for client
 * actions (for a registration: when JetStream acknowledged it, so it is stored).
 *
 * "Answering" means the simulated client replies to pings: it is registered and not
 * silenced. The clients and the observer are connected to the one NATS server the run
 * never stops, so a client never stops answering because its own server is down; a
 * stopped server only disturbs coordinators (and the JetStream replicas), which is what
 * the run is after.
 */

export interface ChaosTimings {
  deadTimeoutMs: number;
  pingIntervalMs: number;
  /** Time a report may spend between the leader's decision and its arrival at the observer. */
  travelMs: number;
  /**
   * Slack on top of dead timeout + ping interval for a NodeDead (loading registrations
   * after a takeover, a busy 2-core machine). The dead timer of a client restarts at a
   * takeover, so the bound is measured from the later of the silencing and the takeover.
   */
  deathAllowanceMs: number;
  /** After a failover, every registered client must get a report of the new epoch within this. */
  takeoverBoundMs: number;
  /** A registration acknowledged this long before a NodeDead may still be in flight to the leader. */
  registrationSlackMs: number;
  /** A stored registration must be reported NodePresent within this (more when a takeover comes in between). */
  registrationBoundMs: number;
}

export const DEFAULT_CHAOS_TIMINGS: ChaosTimings = {
  deadTimeoutMs: 5000,
  pingIntervalMs: 750,
  travelMs: 250,
  deathAllowanceMs: 2000,
  takeoverBoundMs: 5000,
  registrationSlackMs: 2000,
  registrationBoundMs: 8000,
};

export type ClientActionKind = "register" | "unregister" | "silence" | "revive";

/** Something the harness did to one simulated client. */
export interface ClientAction {
  at: number;
  subject: string;
  kind: ClientActionKind;
}

/** A presence report as the observer saw it. */
export interface SeenPresence {
  at: number;
  type: string;
  clientSubject: string;
  coordinatorId: string;
  epoch: number;
  seq: number;
}

export interface SeenHeartbeat {
  at: number;
  coordinatorId: string;
  epoch: number;
  resigning?: boolean;
}

export interface SeenElection {
  at: number;
  type: string;
  coordinatorId: string;
  epoch: number;
  reason?: string;
  formerEpoch?: number;
}

/** A fault that could take the leader away (for the failover durations). */
export interface LeadershipFault {
  at: number;
  kind: string;
}

export interface ChaosRecord {
  presence: SeenPresence[];
  heartbeats: SeenHeartbeat[];
  elections: SeenElection[];
  actions: ClientAction[];
  /** Every subject the harness ever used for a well-formed client. */
  subjects: Set<string>;
  /** When observation ended. */
  endAt: number;
}

export interface Violation {
  at: number;
  message: string;
}

export interface CheckResult {
  name: string;
  /** What was checked, e.g. "312 NodeDead". */
  checked: number;
  unit: string;
  violations: Violation[];
  /** Items that could not be judged (e.g. a failover cut short by the next one). */
  skipped?: number;
}

const byArrival = <T extends { at: number }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => a.at - b.at);

/** The harness's actions per client, ordered in time; answers "what was true at t". */
export class ClientTimeline {
  private readonly bySubject = new Map<string, ClientAction[]>();

  constructor(actions: readonly ClientAction[]) {
    for (const a of byArrival(actions)) {
      let list = this.bySubject.get(a.subject);
      if (!list) this.bySubject.set(a.subject, (list = []));
      list.push(a);
    }
  }

  subjects(): string[] {
    return [...this.bySubject.keys()];
  }

  actionsOf(subject: string): readonly ClientAction[] {
    return this.bySubject.get(subject) ?? [];
  }

  /** Registered and silenced as of t (actions at exactly t count), and since when it has answered without a break. */
  stateAt(subject: string, t: number): { registered: boolean; silenced: boolean; answeringSince?: number; lastRegisteredAt?: number } {
    let registered = false;
    let silenced = false;
    let answeringSince: number | undefined;
    let lastRegisteredAt: number | undefined;
    for (const a of this.actionsOf(subject)) {
      if (a.at > t) break;
      const was = registered && !silenced;
      if (a.kind === "register") {
        registered = true;
        lastRegisteredAt = a.at;
      } else if (a.kind === "unregister") registered = false;
      else if (a.kind === "silence") silenced = true;
      else silenced = false;
      const is = registered && !silenced;
      if (is && !was) answeringSince = a.at;
      if (!is) answeringSince = undefined;
    }
    return { registered, silenced, answeringSince, lastRegisteredAt };
  }

  /** The first action of one of `kinds` after `t` (strictly), if any. */
  nextAfter(subject: string, t: number, kinds: readonly ClientActionKind[]): ClientAction | undefined {
    return this.actionsOf(subject).find((a) => a.at > t && kinds.includes(a.kind));
  }
}

/** Epoch takeovers as the heartbeats show them: the first heartbeat of each new highest epoch. */
export interface Takeover {
  epoch: number;
  coordinatorId: string;
  /** Arrival of the first heartbeat of this epoch. */
  at: number;
  /** The epoch before, its leader and the arrival of its last heartbeat (none for the first leader). */
  previous?: { epoch: number; coordinatorId: string; lastAt: number };
  /** Arrival of the last heartbeat of this epoch. */
  lastAt: number;
}

export function takeovers(heartbeats: readonly SeenHeartbeat[]): Takeover[] {
  const out: Takeover[] = [];
  let highest = 0;
  for (const hb of byArrival(heartbeats)) {
    if (hb.epoch > highest) {
      const prev = out.at(-1);
      out.push({
        epoch: hb.epoch,
        coordinatorId: hb.coordinatorId,
        at: hb.at,
        lastAt: hb.at,
        ...(prev ? { previous: { epoch: prev.epoch, coordinatorId: prev.coordinatorId, lastAt: prev.lastAt } } : {}),
      });
      highest = hb.epoch;
    } else if (hb.epoch === highest) {
      out.at(-1)!.lastAt = hb.at;
    }
  }
  return out;
}

export interface Failover {
  from: string;
  to: string;
  fromEpoch: number;
  toEpoch: number;
  /** The leadership fault that caused it, when one was injected in time; else undefined (a server stop, a lease loss). */
  cause?: string;
  /** From the fault (or the old leader's last heartbeat) to the new leader's first heartbeat. */
  ms: number;
  at: number;
}

/**
 * Failovers with their durations: from the fault time when a leadership fault came after
 * the old leader's last-but-one heartbeat period, else from the old leader's last
 * heartbeat, to the first heartbeat of the new epoch.
 */
export function failovers(heartbeats: readonly SeenHeartbeat[], faults: readonly LeadershipFault[], heartbeatIntervalMs = 1000): Failover[] {
  const out: Failover[] = [];
  for (const t of takeovers(heartbeats)) {
    if (!t.previous) continue;
    const fault = byArrival(faults)
      .filter((f) => f.at >= t.previous!.lastAt - heartbeatIntervalMs && f.at <= t.at)
      .at(-1);
    const start = fault ? fault.at : t.previous.lastAt;
    out.push({
      from: t.previous.coordinatorId,
      to: t.coordinatorId,
      fromEpoch: t.previous.epoch,
      toEpoch: t.epoch,
      ...(fault ? { cause: fault.kind } : {}),
      ms: Math.round(t.at - start),
      at: t.at,
    });
  }
  return out;
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
const describe = (r: SeenPresence) => `${r.type} ${r.clientSubject} from ${r.coordinatorId} epoch=${r.epoch} seq=${r.seq} at ${fmt(r.at)}`;

/**
 * 1. False deaths: a NodeDead for a client that was registered and answering throughout
 * the dead timeout before the leader decided (its arrival minus the travel allowance).
 */
export function checkFalseDeaths(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult {
  const timeline = new ClientTimeline(record.actions);
  const deaths = record.presence.filter((r) => r.type === "NodeDead");
  const violations: Violation[] = [];
  for (const d of deaths) {
    const decidedBy = d.at - timings.travelMs;
    const s = timeline.stateAt(d.clientSubject, decidedBy);
    if (s.answeringSince !== undefined && s.answeringSince <= decidedBy - timings.deadTimeoutMs) {
      violations.push({
        at: d.at,
        message: `${describe(d)}, but the client was registered and answering since ${fmt(s.answeringSince)} (${Math.round(d.at - s.answeringSince)} ms before the report)`,
      });
    }
  }
  return { name: "false deaths", checked: deaths.length, unit: "NodeDead", violations };
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
        violations.push({ at: deadline, message: `${subject} silenced at ${fmt(silence.at)} never got a NodeDead (deadline ${fmt(deadline)}, observed until ${fmt(record.endAt)})` });
      } else if (dead.at > deadline) {
        violations.push({ at: dead.at, message: `${subject} silenced at ${fmt(silence.at)}: ${describe(dead)} came ${Math.round(dead.at - deadline)} ms after its deadline ${fmt(deadline)}` });
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
      violations.push({ at: r.at, message: `${describe(r)}, but epoch ${r.epoch} was already ${first.coordinatorId}'s (${describe(first)})` });
      continue;
    }
    if (highest && highest.coordinatorId !== r.coordinatorId && highest.epoch > r.epoch) {
      violations.push({ at: r.at, message: `${describe(r)} after ${highest.coordinatorId} published under the higher epoch ${highest.epoch} (${describe(highest)})` });
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

export function runChecks(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult[] {
  return [
    checkFalseDeaths(record, timings),
    checkMissedDeaths(record, timings),
    checkDuplicateDeaths(record, timings),
    checkStaleEpochs(record),
    checkOverlappingEpochs(record),
    checkHeartbeatEpochs(record),
    checkMonitoredAfterTakeover(record, timings),
    checkUnknownSubjects(record),
    checkRegistrationsReported(record, timings),
  ];
}
