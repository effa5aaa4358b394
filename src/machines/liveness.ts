/**
 * Liveness as plain data: what a shard knows of each of its clients, and the sweep that
 * judges them (design §10). No actor event, promise or timer per ping, per reply or per
 * NodeState: a shard keeps one slot per client in typed arrays (liveness-slots.ts), applies
 * the replies of a sweep in one pass, and then decides in one pass which clients are due a
 * ping, which missed one, which passed the dead timeout and whose NodeState is due. Client
 * actors hear of it only when their lifecycle changes (the `LivenessFact`s of a
 * `SweepResult`).
 *
 * Every time here is a wall-clock ms that came in an event (a registration's `atMs`, a
 * reply's `atMs`, a sweep's `atMs`): the table reads no clock, so replay is exact.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { ClientReport } from "../protocol/presence.js";
import { LivenessSlots, type LivenessFact, type ReplyFact, type TablePlace } from "./liveness-slots.js";

export type { LivenessFact, ReplyFact, TablePlace } from "./liveness-slots.js";

/** Client timings, all in ms (see src/config/config.ts for what each trades off). */
export interface ClientTimings {
  pingIntervalMs: number;
  deadTimeoutMs: number;
  stateIntervalMs: number;
  /**
   * The sweep interval: a ping goes out at the sweep nearest its due time (up to half a
   * sweep early), so that clients are pinged at the ping interval on average rather than
   * half a sweep later. Without it, at the first sweep at or after it.
   */
  sweepIntervalMs?: number;
}

/** What one sweep decided. */
export interface SweepResult {
  /** Subjects to ping now. */
  ping: string[];
  /** Their keys, in the same order (see `LivenessSlots`). */
  pingKeys: number[];
  /** A ping went unanswered for a ping interval (the count includes it). */
  missed: LivenessFact[];
  /** A reply from a client that had missed pings. */
  replied: LivenessFact[];
  /** No reply for the dead timeout; these slots are gone from the table. */
  dead: LivenessFact[];
  /** NodeState reports that are due. */
  states: ClientReport[];
  /** Their clients' keys, in the same order. */
  stateKeys: number[];
}

/** FNV-1a of the subject's UTF-16 code units, as an unsigned 32-bit number. */
export function subjectHash(subject: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < subject.length; i++) {
    h ^= subject.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The subject's hash with its bits mixed (murmur3's 32-bit finalizer), for the phases of its
 * first ping and NodeState. FNV-1a carries a subject's last characters poorly into its high
 * bits, and subjects often differ only there (node-1, node-2, ...): on the bare hash, the
 * NodeStates of 60 such clients fell into 7 of the 15 sweeps of half a state interval.
 */
function phaseHash(subject: string): number {
  let h = subjectHash(subject);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * One shard's clients' liveness: when each was last seen, and when it is next due a ping, a
 * miss, death or a NodeState. Deadlines are kept rather than raw times so that a stall can
 * move them (time the leader could not observe does not count against a client) while
 * `lastSeenMs` stays what it was. The slots, keys and lookups are LivenessSlots'.
 */
export class LivenessTable extends LivenessSlots {
  /** A ping goes out at the sweep nearest its due time: up to half a sweep early. */
  private readonly earlyMs: number;
  /** Slots registered held since the last `startHeld`. */
  private heldSlots: number[] = [];

  constructor(
    private readonly timings: ClientTimings,
    place: TablePlace = { shard: 0, shards: 1 },
  ) {
    super(place);
    this.earlyMs = (timings.sweepIntervalMs ?? 0) / 2;
  }

  /**
   * A registration at `atMs`. A new subject gets a slot (true); a known one keeps its
   * liveness and only its metadata changes (false): a registration says who a client is, not
   * that it is alive. The first ping and NodeState are spread over their intervals by the
   * subject's hash, so that the clients a new leader loads at once are not pinged at once.
   *
   * `held`: a new leader is loading its stored clients, in parts. A client of a part is not
   * pinged, reported or judged until every part is in (`startHeld`): the load has the event
   * loop to itself, and every client's time starts when it is monitored.
   */
  register(subject: string, metadata: JsonObject, atMs: number, held = false): boolean {
    const known = this.slotOf.get(subject);
    if (known !== undefined) {
      this.metadata[known] = metadata;
      return false;
    }
    const i = this.allocate();
    this.slotOf.set(subject, i);
    this.subjects[i] = subject;
    this.metadata[i] = metadata;
    const h = phaseHash(subject);
    const phase = (h & 0xffff) / 0x10000; // [0, 1)
    const statePhase = (h >>> 16) / 0x10000;
    const { pingIntervalMs, deadTimeoutMs, stateIntervalMs } = this.timings;
    this.lastSeen[i] = atMs;
    this.rtt[i] = 0;
    this.missed[i] = 0;
    this.deadAt[i] = atMs + deadTimeoutMs;
    this.missAt[i] = 0;
    this.nextPing[i] = atMs + pingIntervalMs * (0.5 + 0.5 * phase);
    this.nextState[i] = atMs + stateIntervalMs * (0.5 + 0.5 * statePhase);
    this.held[i] = held ? 1 : 0;
    if (held) this.heldSlots.push(i);
    this.scheduleNext(i);
    return true;
  }

  /**
   * The load is complete at `atMs`: every held client starts now, as if registered then,
   * with its first ping and NodeState anywhere in their intervals (the whole load starts at
   * once, and its pings must not all fall in one half of every interval). Returns how many
   * started.
   */
  startHeld(atMs: number): number {
    const { pingIntervalMs, deadTimeoutMs, stateIntervalMs } = this.timings;
    let started = 0;
    for (const i of this.heldSlots) {
      const subject = this.subjects[i];
      if (this.held[i] === 0 || subject === undefined) continue; // gone, or its slot reused
      this.held[i] = 0;
      const h = phaseHash(subject);
      this.lastSeen[i] = atMs;
      this.deadAt[i] = atMs + deadTimeoutMs;
      this.missAt[i] = 0;
      this.nextPing[i] = atMs + pingIntervalMs * ((h & 0xffff) / 0x10000);
      this.nextState[i] = atMs + stateIntervalMs * ((h >>> 16) / 0x10000);
      this.scheduleNext(i);
      started += 1;
    }
    this.heldSlots = [];
    return started;
  }

  /** Forgets a client (it left); true if it was in the table. */
  remove(subject: string): boolean {
    const i = this.slotOf.get(subject);
    if (i === undefined) return false;
    this.release(subject, i);
    return true;
  }

  /**
   * Applies one reply. A reply of a client not in the table (dead, left, never here) is
   * ignored. Returns the fact when the client had missed pings: it replied while suspect.
   * `unobservedMs`: time after the reply that the leader could not observe (a stall), which
   * does not count against the client.
   */
  reply(r: ReplyFact, unobservedMs = 0): LivenessFact | null {
    const i = this.slotOfReply(r);
    if (i === undefined) return null;
    const wasMissing = this.missed[i]! > 0;
    this.lastSeen[i] = r.atMs;
    this.rtt[i] = r.rttMs;
    this.missed[i] = 0;
    this.deadAt[i] = r.atMs + this.timings.deadTimeoutMs + unobservedMs;
    // A reply to the outstanding ping leaves the next ping where its sending put it, so a
    // client answering in time is pinged every ping interval; any other reply (a late one,
    // after its ping was judged missed) puts it one interval after the reply.
    if (this.missAt[i] === 0) this.nextPing[i] = r.atMs + this.timings.pingIntervalMs + unobservedMs;
    this.missAt[i] = 0;
    this.scheduleNext(i);
    return wasMissing ? this.fact(r.subject, i) : null;
  }

  /**
   * One sweep at `nowMs`: applies the replies that arrived since the last one and forgets the
   * pings that were not sent (`unsent`), then judges.
   *
   * `stalledMs` > 0 says the leader's event loop was stalled that long before this sweep:
   * replies may have arrived that it has not read yet. Then every deadline moves by the
   * stall (a reply's deadlines only by the part of the stall after it was read) and nobody
   * is judged or pinged in this sweep (the next one judges, after the replies were read);
   * NodeState goes on.
   */
  sweep(nowMs: number, stalledMs: number, replies: readonly ReplyFact[], unsent: readonly string[] = []): SweepResult {
    const result: SweepResult = { ping: [], pingKeys: [], missed: [], replied: [], dead: [], states: [], stateKeys: [] };
    const stalled = stalledMs > 0;
    if (stalled) {
      // Deadlines set before the stall move by it. Replies come after: one read after the
      // stall (most are: the edge reads them before it answers) counts from when it was read.
      for (let i = 0; i < this.used; i++) {
        if (this.subjects[i] === undefined) continue;
        this.deadAt[i] = this.deadAt[i]! + stalledMs;
        if (this.missAt[i] !== 0) this.missAt[i] = this.missAt[i]! + stalledMs;
        this.nextPing[i] = this.nextPing[i]! + stalledMs;
        this.scheduleNext(i);
      }
    }
    // A ping that never went out proves nothing either way: ask for it again.
    for (const subject of unsent) {
      const i = this.slotOf.get(subject);
      if (i === undefined || this.missAt[i] === 0) continue;
      this.missAt[i] = 0;
      this.nextPing[i] = nowMs;
      this.scheduleNext(i);
    }
    for (const r of replies) {
      const fact = this.reply(r, stalled ? Math.max(0, Math.min(stalledMs, nowMs - r.atMs)) : 0);
      if (fact !== null) result.replied.push(fact);
    }
    const { pingIntervalMs, stateIntervalMs } = this.timings;
    const earlyMs = this.earlyMs;
    for (let i = 0; i < this.used; i++) {
      if (nowMs < this.nextDue[i]!) continue; // nothing due (or a free slot)
      const subject = this.subjects[i];
      if (subject === undefined) continue;
      if (!stalled) {
        if (nowMs >= this.deadAt[i]!) {
          result.dead.push(this.fact(subject, i));
          this.release(subject, i);
          continue;
        }
        if (this.missAt[i] !== 0 && nowMs >= this.missAt[i]!) {
          this.missed[i] = this.missed[i]! + 1;
          this.missAt[i] = 0;
          this.nextPing[i] = nowMs; // a suspect client is pinged again at once
          result.missed.push(this.fact(subject, i));
        }
        if (this.missAt[i] === 0 && nowMs >= this.nextPing[i]! - earlyMs) {
          this.missAt[i] = nowMs + pingIntervalMs;
          // The next ping is due one interval after this one was due, not after it went out:
          // sweeps that come late (a busy leader) must not slow the cadence. A ping more than
          // an interval behind (the client was suspect, or the ping went unsent) starts afresh.
          const due = this.nextPing[i]!;
          this.nextPing[i] = nowMs - due > pingIntervalMs ? nowMs + pingIntervalMs : due + pingIntervalMs;
          result.ping.push(subject);
          result.pingKeys.push(this.keyOf(i));
        }
      }
      if (nowMs >= this.nextState[i]!) {
        let next = this.nextState[i]! + stateIntervalMs;
        if (next <= nowMs) next = nowMs + stateIntervalMs; // after a long stall: one report, not a burst
        this.nextState[i] = next;
        result.states.push({
          type: "NodeState",
          clientSubject: subject,
          state: this.missed[i]! > 0 ? "suspect" : "alive",
          lastSeenMs: this.lastSeen[i]!,
          rttMs: this.rtt[i]!,
          missedPings: this.missed[i]!,
          metadata: this.metadata[i]!,
        });
        result.stateKeys.push(this.keyOf(i));
      }
      this.scheduleNext(i);
    }
    return result;
  }

  /** Sets `nextDue` from the client's deadlines (see the sweep's order of checks). */
  private scheduleNext(i: number): void {
    if (this.held[i] === 1) {
      this.nextDue[i] = Number.POSITIVE_INFINITY;
      return;
    }
    const missAt = this.missAt[i]!;
    // While a ping is outstanding the next one waits for it to be answered or missed.
    const ping = missAt !== 0 ? missAt : this.nextPing[i]! - this.earlyMs;
    this.nextDue[i] = Math.min(this.deadAt[i]!, ping, this.nextState[i]!);
  }
}
