/**
 * The storage under a shard's liveness table: one slot per client in typed arrays, slots of
 * departed clients reused, the arrays doubled when full, and a client found by its subject or
 * by its key. What the times in a slot mean, and the sweep that judges them, are in
 * liveness.ts (LivenessTable extends this class).
 */
import type { JsonObject } from "@bufbuild/protobuf";

/** A ping reply, as the edge hands it over in a sweep. */
export interface ReplyFact {
  subject: string;
  /**
   * The client's key, as its ping carried it (see `LivenessSlots`): finds the client without
   * a lookup by subject. Optional: without it, or when it names another client, the subject
   * decides.
   */
  key?: number;
  /** Wall-clock ms when the reply was read. */
  atMs: number;
  /** Round trip of the ping it answers, in ms. */
  rttMs: number;
}

/** What a client's lifecycle needs to know, from a sweep. */
export interface LivenessFact {
  subject: string;
  lastSeenMs: number;
  rttMs: number;
  missedPings: number;
}

/** Where a table sits among the monitor's shards: its clients' keys are unique across them. */
export interface TablePlace {
  shard: number;
  shards: number;
}

const INITIAL_CAPACITY = 16;

/**
 * One shard's clients, one slot each, as parallel arrays indexed by slot.
 *
 * A client's key is `slot × shards + shard`: unique among the live clients of the monitor,
 * dense, and naming its shard (`key % shards`). Its pings carry it and its replies bring it
 * back, so that neither the pinger, the monitor nor the table looks a reply's client up by
 * subject: at 50,000 clients each such lookup is a few cache misses, and together they were
 * a tenth of the leader's CPU. A key is only a shortcut: a reply whose key names another
 * client (its slot was reused) is looked up by subject.
 */
export abstract class LivenessSlots {
  private capacity = INITIAL_CAPACITY;
  protected readonly slotOf = new Map<string, number>();
  /** The subject in each slot; undefined: a free slot. */
  protected subjects: (string | undefined)[] = new Array<string | undefined>(INITIAL_CAPACITY);
  protected metadata: (JsonObject | undefined)[] = new Array<JsonObject | undefined>(INITIAL_CAPACITY);
  private readonly free: number[] = [];
  /** Slots in use or freed: every slot below this has been allocated once. */
  protected used = 0;
  /** Wall-clock ms of the last reply (or of the registration). */
  protected lastSeen: Float64Array = new Float64Array(INITIAL_CAPACITY);
  protected rtt: Float64Array = new Float64Array(INITIAL_CAPACITY);
  protected missed: Uint32Array = new Uint32Array(INITIAL_CAPACITY);
  /** Dead unless a reply comes before this. */
  protected deadAt: Float64Array = new Float64Array(INITIAL_CAPACITY);
  /** The outstanding ping is missed unless a reply comes before this; 0: no ping outstanding. */
  protected missAt: Float64Array = new Float64Array(INITIAL_CAPACITY);
  /** The next ping goes out at the first sweep at or after this. */
  protected nextPing: Float64Array = new Float64Array(INITIAL_CAPACITY);
  /** The next NodeState goes out at the first sweep at or after this. */
  protected nextState: Float64Array = new Float64Array(INITIAL_CAPACITY);
  /**
   * The earliest of the four times above at which a sweep has something to do for the client
   * (+Infinity for a free slot): a sweep passes over every other client with one comparison.
   */
  protected nextDue: Float64Array = new Float64Array(INITIAL_CAPACITY);
  /** 1: loaded while the new leader is still loading (see `LivenessTable.register`); nothing is due for it until it starts. */
  protected held: Uint8Array = new Uint8Array(INITIAL_CAPACITY);

  private readonly shard: number;
  private readonly shards: number;

  constructor(place: TablePlace) {
    this.shard = place.shard;
    this.shards = place.shards;
  }

  /** Clients in the table. */
  get size(): number {
    return this.slotOf.size;
  }

  has(subject: string): boolean {
    return this.slotOf.has(subject);
  }

  /** What the table knows of one client, or undefined. */
  get(subject: string): (LivenessFact & { metadata: JsonObject }) | undefined {
    const i = this.slotOf.get(subject);
    if (i === undefined) return undefined;
    return { subject, lastSeenMs: this.lastSeen[i]!, rttMs: this.rtt[i]!, missedPings: this.missed[i]!, metadata: this.metadata[i]! };
  }

  /** Every client in the table, in slot order. */
  *entries(): IterableIterator<LivenessFact & { metadata: JsonObject }> {
    for (let i = 0; i < this.used; i++) {
      const subject = this.subjects[i];
      if (subject === undefined) continue;
      yield { subject, lastSeenMs: this.lastSeen[i]!, rttMs: this.rtt[i]!, missedPings: this.missed[i]!, metadata: this.metadata[i]! };
    }
  }

  /** The key of the client in slot `i`. */
  protected keyOf(i: number): number {
    return i * this.shards + this.shard;
  }

  /** The slot of the client a reply names: by its key when that holds the subject, else by subject. */
  protected slotOfReply(r: ReplyFact): number | undefined {
    if (r.key !== undefined) {
      const i = Math.floor(r.key / this.shards);
      if (i >= 0 && i < this.used && this.subjects[i] === r.subject) return i;
    }
    return this.slotOf.get(r.subject);
  }

  protected fact(subject: string, i: number): LivenessFact {
    return { subject, lastSeenMs: this.lastSeen[i]!, rttMs: this.rtt[i]!, missedPings: this.missed[i]! };
  }

  /** A slot for a new client: a free one if any, else the next, growing the arrays when full. */
  protected allocate(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.used === this.capacity) this.grow();
    return this.used++;
  }

  /** Frees the slot of a client that is gone (dead or left): nothing is due for it any more. */
  protected release(subject: string, i: number): void {
    this.slotOf.delete(subject);
    this.held[i] = 0;
    this.nextDue[i] = Number.POSITIVE_INFINITY;
    this.subjects[i] = undefined;
    this.metadata[i] = undefined;
    this.free.push(i);
  }

  private grow(): void {
    const capacity = this.capacity * 2;
    const grown = (a: Float64Array): Float64Array => {
      const b = new Float64Array(capacity);
      b.set(a);
      return b;
    };
    this.lastSeen = grown(this.lastSeen);
    this.rtt = grown(this.rtt);
    this.deadAt = grown(this.deadAt);
    this.missAt = grown(this.missAt);
    this.nextPing = grown(this.nextPing);
    this.nextState = grown(this.nextState);
    this.nextDue = grown(this.nextDue);
    const missed = new Uint32Array(capacity);
    missed.set(this.missed);
    this.missed = missed;
    const held = new Uint8Array(capacity);
    held.set(this.held);
    this.held = held;
    this.subjects.length = capacity;
    this.metadata.length = capacity;
    this.capacity = capacity;
  }
}
