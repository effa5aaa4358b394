/**
 * Time as the chaos checks read it from a record: the harness's actions per client
 * (ClientTimeline), blind windows and the deadlines they move, epoch takeovers and
 * failovers from the heartbeats, and the formatting of times and reports in messages.
 */
import {
  DEFAULT_CHAOS_TIMINGS,
  type ChaosRecord,
  type ChaosTimings,
  type ClientAction,
  type ClientActionKind,
  type LeadershipFault,
  type SeenHeartbeat,
  type SeenPresence,
  type Window,
} from "./record.js";

export const byArrival = <T extends { at: number }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => a.at - b.at);

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
export function answeringFrom(since: number | undefined, until: number, blind: readonly Window[]): number | undefined {
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

export const fmt = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
export const describe = (r: SeenPresence) =>
  `${r.type} ${r.clientSubject} from ${r.coordinatorId} epoch=${r.epoch} seq=${r.seq} at ${fmt(r.at)}`;
