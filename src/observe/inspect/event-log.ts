/**
 * The inspector's event log: every event counted per type (the page's rates), a sample of
 * them kept in a fixed-size ring, and all of the selected actor's in a ring of their own.
 * Routine chatter (sweeps, their batches of pings, replies and NodeState, timers) is only
 * sampled into the ring, within a budget per second, and other events are kept up to a budget
 * of their own. Pings and replies travel in batches, so they are also counted one per client,
 * as the `ping` and `reply` rates.
 */
import type { AnyEventObject } from "xstate";
import type { Command } from "../../machines/commands.js";
import type { MonitorEvent } from "../../machines/monitor.js";
import { shortType } from "./event-detail.js";
import type { ActorKind, EventEntry, View } from "./view-types.js";

export interface EventLogOptions {
  /** Size of the ring of recent events (default 400). */
  ringSize?: number;
  /** Routine events sampled into the ring per second (default 4). */
  routinePerSecond?: number;
  /** Other events kept in the ring per second before they are only counted (default 200). */
  notablePerSecond?: number;
  now: () => number;
  /** When counting starts (wall-clock ms). */
  since: number;
}

/** How many of the selected actor's events are kept. */
const SELECTED_KEPT = 100;

/**
 * The sweep's clock ticking with nothing to tell: the timer, the ask for replies, and a SWEEP
 * without replies or stall (every shard gets one every sweep interval, clients or not).
 * Counted, and kept only for the actor the page looks at.
 */
export function isIdle(type: string, event: AnyEventObject): boolean {
  if (type === "SWEEP") {
    const sweep = event as Extract<MonitorEvent, { type: "SWEEP" }>;
    return sweep.replies.length === 0 && sweep.stalledMs <= 0;
  }
  return type === "replies.collect" || type.startsWith("xstate.after.sweepInterval.");
}

/** Event types that happen all the time for every client: counted, and only sampled. A stalled SWEEP is not routine. */
function isRoutine(type: string, event: AnyEventObject): boolean {
  if (type === "SWEEP") return (event as Extract<MonitorEvent, { type: "SWEEP" }>).stalledMs <= 0;
  if (type === "clients.ping" || type === "reports.state" || type === "HEARTBEAT") return true;
  if (type === "report.presence") return (event as Extract<Command, { type: "report.presence" }>).report.type === "NodeState";
  if (type.startsWith("xstate.after.")) {
    const delay = type.slice("xstate.after.".length).split(".")[0];
    return delay === "sweepInterval" || delay === "heartbeatInterval";
  }
  return false;
}

export class EventLog {
  private readonly now: () => number;
  private readonly ring: (EventEntry | undefined)[];
  private ringHead = 0;
  private seq = 0;
  private readonly selectedRing: EventEntry[] = [];
  private readonly routineBudget: number;
  private readonly notableBudget: number;
  private routineLeft: number;
  private notableLeft: number;
  private budgetSince: number;
  private counts = new Map<string, number>();
  /** Pings and replies, one per client (they travel in batches, which `counts` counts). */
  private pings = 0;
  private replies = 0;
  private countsSince: number;
  private lastRates: View["rates"] = { eventsPerSecond: 0, sampled: false, byType: [] };
  private droppedSinceRates = 0;

  constructor(options: EventLogOptions) {
    this.now = options.now;
    this.ring = new Array<EventEntry | undefined>(options.ringSize ?? 400);
    this.routineBudget = options.routinePerSecond ?? 4;
    this.notableBudget = options.notablePerSecond ?? 200;
    this.routineLeft = this.routineBudget;
    this.notableLeft = this.notableBudget;
    this.budgetSince = options.since;
    this.countsSince = options.since;
  }

  /** The seq of the newest event kept. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Counts an event that entered the actor of kind `to`, kept or not. */
  count(event: AnyEventObject, to: ActorKind | undefined): void {
    const type = event.type;
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
    // The monitor's SWEEP holds every reply; each shard's SWEEP holds a part of them.
    if (type === "SWEEP" && to === "monitor") this.replies += (event as Extract<MonitorEvent, { type: "SWEEP" }>).replies.length;
    else if (type === "clients.ping") this.pings += (event as Extract<Command, { type: "clients.ping" }>).subjects.length;
  }

  /**
   * Keeps a counted event if it concerns the selected actor, or else if it is not idle and
   * its budget for this second has room; `describe` is called only for an event that is kept.
   */
  offer(event: AnyEventObject, idle: boolean, selected: boolean, describe: () => Omit<EventEntry, "seq" | "at">): void {
    const now = this.now();
    if (now - this.budgetSince >= 1000) {
      this.budgetSince = now;
      this.routineLeft = this.routineBudget;
      this.notableLeft = this.notableBudget;
    }
    let keep = selected;
    if (!keep && !idle) {
      if (isRoutine(event.type, event)) {
        keep = this.routineLeft > 0;
        if (keep) this.routineLeft -= 1;
      } else {
        keep = this.notableLeft > 0;
        if (keep) this.notableLeft -= 1;
      }
    }
    if (!keep) {
      this.droppedSinceRates += 1;
      return;
    }
    const entry: EventEntry = { seq: ++this.seq, at: now, ...describe() };
    this.ring[this.ringHead] = entry;
    this.ringHead = (this.ringHead + 1) % this.ring.length;
    if (selected) {
      this.selectedRing.push(entry);
      if (this.selectedRing.length > SELECTED_KEPT) this.selectedRing.shift();
    }
  }

  /** Forgets the selected actor's events (another one is selected). */
  clearSelected(): void {
    this.selectedRing.length = 0;
  }

  /** The selected actor's events, oldest first. */
  selectedEvents(): EventEntry[] {
    return [...this.selectedRing];
  }

  /** The events in the ring newer than `afterSeq`, oldest first. */
  after(afterSeq: number): EventEntry[] {
    const events: EventEntry[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const e = this.ring[(this.ringHead + i) % this.ring.length];
      if (e !== undefined && e.seq > afterSeq) events.push(e);
    }
    return events;
  }

  /** Events per second by type since the last time, recomputed at most once a second. */
  rates(): View["rates"] {
    const now = this.now();
    const elapsed = now - this.countsSince;
    if (elapsed < 1000) return this.lastRates;
    let total = 0;
    const byType = [...this.counts.entries()].map(([type, n]) => {
      total += n;
      return { type: shortType(type), perSecond: (n * 1000) / elapsed };
    });
    const merged = new Map<string, number>();
    for (const t of byType) merged.set(t.type, (merged.get(t.type) ?? 0) + t.perSecond);
    if (this.pings > 0) merged.set("ping", (this.pings * 1000) / elapsed);
    if (this.replies > 0) merged.set("reply", (this.replies * 1000) / elapsed);
    this.lastRates = {
      eventsPerSecond: (total * 1000) / elapsed,
      sampled: this.droppedSinceRates > 0,
      byType: [...merged.entries()]
        .map(([type, perSecond]) => ({ type, perSecond: Math.round(perSecond * 10) / 10 }))
        .sort((a, b) => b.perSecond - a.perSecond)
        .slice(0, 12),
    };
    this.counts = new Map();
    this.pings = 0;
    this.replies = 0;
    this.countsSince = now;
    this.droppedSinceRates = 0;
    return this.lastRates;
  }
}
