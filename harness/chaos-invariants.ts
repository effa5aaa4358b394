/**
 * The checks of `npm run chaos`, as pure functions over what the run recorded: the reports
 * the observer saw (with their arrival times), the heartbeats, and the harness's own
 * actions on its clients (the ground truth). Each check returns how many items it
 * checked and every violation with its evidence; a check that checked nothing is NOT
 * JUDGED, which fails the run as a violation does. test/unit/chaos-invariants.test.ts feeds
 * them hand-made sequences.
 *
 * All times are ms on one monotonic clock (performance.now() of the chaos process):
 * arrival times at the observer for reports, and the moment the harness acted for client
 * actions (for a registration: when JetStream acknowledged it, so it is stored).
 *
 * "Answering" means the simulated client replies to pings: it is registered and not
 * silenced (a client that unregistered stops answering). The clients and the observer
 * are connected to the one NATS server the run never stops, so a client never stops
 * answering because its own server is down; a stopped server only disturbs coordinators
 * (and the JetStream replicas), which is what the run is after.
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
  /** The leader's heartbeat period: heartbeats further apart than this plus the travel allowance mark a blind window. */
  heartbeatIntervalMs: number;
  /**
   * Slack on top of ping interval + travel for a NodeDead of a client that answers again:
   * the leader sends its next ping within a ping interval, and the reply restarts the dead
   * timer, so a client answering longer than ping interval + travel + this is not dead.
   */
  answerSlackMs: number;
  /** An acknowledged unregistration must be reported NodeLeft within this (from a takeover, or a blind window's end, when one comes in between). */
  leaveBoundMs: number;
}

export const DEFAULT_CHAOS_TIMINGS: ChaosTimings = {
  deadTimeoutMs: 5000,
  pingIntervalMs: 750,
  travelMs: 250,
  deathAllowanceMs: 2000,
  takeoverBoundMs: 5000,
  registrationSlackMs: 2000,
  registrationBoundMs: 8000,
  heartbeatIntervalMs: 1000,
  answerSlackMs: 500,
  leaveBoundMs: 3000,
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
  /**
   * Times the harness's own event loop stood still (its simulated clients answered nothing,
   * and arrivals were stamped late): blind windows, like a leader's heartbeat gaps.
   */
  harnessStalls?: Window[];
  /** The malformed registrations the harness sent, with the subject each names (if any). */
  refused?: RefusedInput[];
  /** Pings the simulated clients received on a refused registration's subject. */
  trappedPings?: { at: number; subject: string }[];
  /** The faults that hit the leader (SIGSTOP, SIGKILL, SIGTERM, a server stop). */
  leadershipFaults?: LeadershipFault[];
}

/** A span of time [from, to] on the run's clock. */
export interface Window {
  from: number;
  to: number;
}

/** A malformed registration the harness sent: which kind of refusal it tests, and the subject it names if it names one. */
export interface RefusedInput {
  at: number;
  kind: string;
  subject?: string;
}

/**
 * Every kind of malformed registration a chaos run sends, each at least once: a coordinator
 * must refuse them all, never ping their subject and never report it.
 */
export const REFUSED_KINDS = [
  "not-json",
  "not-an-object",
  "no-subject",
  "subject-not-a-string",
  "empty-subject",
  "wildcard-star",
  "wildcard-gt",
  "whitespace",
  "empty-token",
  "dollar",
  "inbox",
  "presence-namespace",
  "coordinator-namespace",
  "too-long-subject",
  "over-64-kib",
  "bad-utf-8",
] as const;
export type RefusedKind = (typeof REFUSED_KINDS)[number];

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

export type Verdict = "PASS" | "FAIL" | "NOT JUDGED";

/** A check with violations fails; one that checked nothing judged nothing and does not pass. */
export function verdictOf(c: Pick<CheckResult, "checked" | "violations">): Verdict {
  return c.violations.length > 0 ? "FAIL" : c.checked === 0 ? "NOT JUDGED" : "PASS";
}

/** The run passes only when every check passed: a failed or an unjudged check fails it. */
export const allPassed = (checks: readonly CheckResult[]): boolean => checks.every((c) => verdictOf(c) === "PASS");

/**
 * Blind windows: spans in which the leader could not observe its clients or the observer
 * could not see the leader on time. They are the arrival gaps between two heartbeats (of
 * any epoch) longer than a heartbeat period plus travel (a leader stalled, or no leader at
 * all), and the harness's own stalls (its simulated clients answered nothing meanwhile).
 * Time in a blind window does not count against a client, and a deadline that a blind
 * window overlaps moves by the window's length (as Lifeguard's local health awareness
 * excuses a node that cannot keep up).
 */
export function blindWindows(
  record: Pick<ChaosRecord, "heartbeats" | "harnessStalls">,
  timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS,
): Window[] {
  const out: Window[] = [...(record.harnessStalls ?? [])];
  const beats = byArrival(record.heartbeats);
  for (let i = 1; i < beats.length; i++) {
    if (beats[i]!.at - beats[i - 1]!.at > timings.heartbeatIntervalMs + timings.travelMs)
      out.push({ from: beats[i - 1]!.at, to: beats[i]!.at });
  }
  return out.sort((a, b) => a.from - b.from);
}

/** When a client answering since `since` counts as answering from, up to `until`: after the last blind window that overlaps the span. */
function answeringFrom(since: number | undefined, until: number, blind: readonly Window[]): number | undefined {
  if (since === undefined) return undefined;
  let from = since;
  for (const w of blind) if (w.from < until && w.to > from) from = w.to;
  return from <= until ? from : undefined;
}

/**
 * The deadline `boundMs` after `start`, moved by the length of every blind window that
 * overlaps it, and past every takeover in time (the new leader gets `afterTakeoverMs`, by
 * default the whole bound, from its first heartbeat). The leaderless gap before a takeover
 * is a blind window too; taking the later of the two, not their sum, counts it once.
 */
export function deadlineFrom(
  start: number,
  boundMs: number,
  takeoverTimes: readonly number[],
  blind: readonly Window[],
  afterTakeoverMs = boundMs,
): number {
  let deadline = start + boundMs;
  for (const w of blind) {
    if (w.to > start && w.from < deadline) deadline += w.to - Math.max(w.from, start);
  }
  for (const f of takeoverTimes) if (f > start && f < deadline) deadline = Math.max(deadline, f + afterTakeoverMs);
  return deadline;
}

/** The harness's actions per client, ordered in time; answers "what was true at t". */
export class ClientTimeline {
  private readonly bySubject = new Map<string, ClientAction[]>();

  constructor(actions: readonly ClientAction[]) {
    for (const a of byArrival(actions)) {
      let list = this.bySubject.get(a.subject);
      if (!list) {
        list = [];
        this.bySubject.set(a.subject, list);
      }
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
export function failovers(
  heartbeats: readonly SeenHeartbeat[],
  faults: readonly LeadershipFault[],
  heartbeatIntervalMs = 1000,
): Failover[] {
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
function leaves(_record: ChaosRecord, timeline: ClientTimeline): { u: ClientAction; lastRegisteredAt: number; nextRegisterAt: number }[] {
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
  const timeline = new ClientTimeline(record.actions);
  const takeoverTimes = takeovers(record.heartbeats).map((t) => t.at);
  const blind = blindWindows(record, timings);
  const reports = bySubject(record.presence);
  const violations: Violation[] = [];
  let checked = 0;
  let skipped = 0;
  for (const { u, lastRegisteredAt, nextRegisterAt } of leaves(record, timeline)) {
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
  const timeline = new ClientTimeline(record.actions);
  const takeoverTimes = takeovers(record.heartbeats).map((t) => t.at);
  const blind = blindWindows(record, timings);
  const reports = bySubject(record.presence);
  const violations: Violation[] = [];
  let checked = 0;
  for (const { u, nextRegisterAt } of leaves(record, timeline)) {
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
    checkFalseSuspects(record, timings),
    checkLeavesReported(record, timings),
    checkNoReportAfterLeave(record, timings),
    checkRefusedIgnored(record),
    checkLeaderFaultsRan(record),
  ];
}
