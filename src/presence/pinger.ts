/**
 * Pings clients without per-request machinery: no promise, no timer and no error object
 * per ping (design §10: `nc.request()` costs 23–47 µs of CPU per ping, this about 4–6 µs).
 *
 * A ping is published on the client's subject with an empty payload and a reply subject
 * `<inbox>.<id>`, where `<inbox>` is a fresh inbox of this pinger (`_INBOX.<nuid>`) and `id`
 * a number that is never reused. Every reply comes in through ONE wildcard subscription
 * (`<inbox>.*`) with a callback, and finds its ping in O(1) by that number. To the client
 * it is an ordinary NATS request: it sees a reply subject, and `msg.respond()` answers it.
 *
 * The pinger judges no timeout: the shards' sweeps do (src/machines/liveness.ts), on the
 * replies the pinger hands over. A ping ends in one of these ways:
 * - answered (`onReply` with its round trip), however late, while it is its subject's
 *   latest ping: a pause of this process must not turn a reply into a miss;
 * - unanswered (`onMiss`): the next ping of the subject went out before a reply came, or
 *   the server answered "no responders";
 * - forgotten when the pinger stops (leadership ended) or its client is gone: neither.
 *
 * At most one ping per subject is remembered. A reply that finds nothing (answered already,
 * superseded, or to an inbox of an earlier start) is dropped.
 */
import { performance } from "node:perf_hooks";
import { createInbox, Empty } from "@nats-io/transport-node";

/** What the pinger reads of a reply (a nats.js `Msg` is one). */
export interface PingReply {
  readonly subject: string;
  readonly data?: Uint8Array;
  readonly headers?: { readonly code: number } | undefined;
}

/** The two calls the pinger makes on the NATS connection (a `NatsConnection` has them). */
export interface PingConnection {
  publish(subject: string, payload: Uint8Array, options: { reply: string }): void;
  subscribe(subject: string, options: { callback: (err: Error | null, msg: PingReply) => void }): { unsubscribe(): void };
}

/** The pinger's clock: monotonic milliseconds. */
export interface PingerClock {
  now(): number;
}

export const realPingerClock: PingerClock = { now: () => performance.now() };

/** Why a ping counts as unanswered. */
export type PingMiss = "superseded" | "no responders";

export interface PingerOptions {
  nc: PingConnection;
  /** A ping was answered; `rttMs` is its round trip on the pinger's clock, `slot` the one it was sent on. */
  onReply: (subject: string, rttMs: number, slot: number) => void;
  /** A ping was missed (see `PingMiss`). */
  onMiss: (subject: string, why: PingMiss) => void;
  /** A subscription error (e.g. a permissions violation on the inbox). */
  onError: (err: Error) => void;
  /** Defaults to `realPingerClock`. */
  clock?: PingerClock;
  /** A fresh inbox prefix per start; defaults to the client library's `createInbox()`. */
  inbox?: () => string;
}

/** One start-to-stop of the pinger: its inbox and its subscription. */
interface Session {
  /** `<inbox>.`: a reply subject is this plus the ping's id. */
  readonly replyPrefix: string;
  readonly subscription: { unsubscribe(): void };
}

/**
 * A ping's id is `slot × COUNT_WRAP + count`: the subject's slot, and how many pings that
 * slot has sent (1 to COUNT_WRAP − 1, then from 1 again). Both come back in the reply subject
 * as one number, so a reply finds its slot with one parse and no map. A slot's count is never
 * reset, so an id names one ping of the last 1,023 of its slot: a reply would have to come
 * 1,023 ping intervals late (13 minutes at the default timings) to be taken for another.
 * Below 2^20 slots an id stays below 2^30, a small integer to V8 in every build: writing one
 * into a reply subject and parsing it back costs a third of what a larger number does.
 */
const COUNT_WRAP = 2 ** 10;
const INITIAL_SLOTS = 1024;
/** Per slot, in `slotData` at `slot × STRIDE`: the outstanding ping's id (0: none), when it was sent, and the slot's count. */
const STRIDE = 3;
const ID = 0;
const SENT_AT = 1;
const COUNT = 2;

export class Pinger {
  private readonly clock: PingerClock;
  private readonly inbox: () => string;
  private session: Session | null = null;
  /** The slot of each subject pinged since the start, for `forget`; changed only when a slot changes hands. */
  private readonly slotOf = new Map<string, number>();
  /** The subject of each slot. */
  private subjects: (string | undefined)[] = [];
  /** Per slot, side by side (one cache line for a ping and its reply): see STRIDE. */
  private slotData: Float64Array = new Float64Array(INITIAL_SLOTS * STRIDE);
  private outstandingPings = 0;

  constructor(private readonly options: PingerOptions) {
    this.clock = options.clock ?? realPingerClock;
    this.inbox = options.inbox ?? (() => createInbox());
  }

  get running(): boolean {
    return this.session !== null;
  }

  /** Pings sent and not yet answered or superseded. */
  get outstanding(): number {
    return this.outstandingPings;
  }

  /** Subscribes to a fresh inbox; does nothing when already started. */
  start(): void {
    if (this.session) return;
    const inbox = this.inbox();
    const session: Session = {
      replyPrefix: `${inbox}.`,
      subscription: this.options.nc.subscribe(`${inbox}.*`, {
        callback: (err, msg) => {
          if (err) this.options.onError(err);
          else this.onReply(session, msg);
        },
      }),
    };
    this.session = session;
  }

  /** Unsubscribes and forgets every outstanding ping: late replies of this start find nothing. */
  stop(): void {
    const session = this.session;
    if (!session) return;
    this.session = null;
    session.subscription.unsubscribe();
    for (let at = ID; at < this.slotData.length; at += STRIDE) this.slotData[at] = 0;
    this.outstandingPings = 0;
    this.slotOf.clear();
    this.subjects = [];
  }

  /**
   * Sends one ping to `subject` on `slot`, a whole number the caller keeps for the subject
   * (the client's key: see src/machines/liveness.ts), and which comes back with the reply.
   * The subject's outstanding ping, if any, is settled first (missed). A slot names one
   * subject at a time: a slot that changes hands, or a subject that changes slots, drops
   * the outstanding ping it had, unsettled. Throws what the connection's publish throws, and
   * then counts nothing.
   */
  ping(subject: string, slot: number): void {
    const session = this.session;
    if (!session) throw new Error("pinger: ping before start");
    if (this.subjects[slot] !== subject) this.bind(subject, slot);
    const data = this.slotData;
    const at = slot * STRIDE;
    const count = (data[at + COUNT]! + 1) % COUNT_WRAP || 1;
    const id = slot * COUNT_WRAP + count;
    this.options.nc.publish(subject, Empty, { reply: session.replyPrefix + id });
    data[at + COUNT] = count;
    if (data[at + ID] !== 0) this.options.onMiss(subject, "superseded");
    else this.outstandingPings += 1;
    data[at + ID] = id;
    data[at + SENT_AT] = this.clock.now();
  }

  /**
   * Drops every outstanding ping, unsettled, and returns their subjects: the connection was
   * lost with them in flight. A late reply to one of them finds nothing.
   */
  abandonOutstanding(): string[] {
    const subjects: string[] = [];
    if (this.outstandingPings === 0) return subjects;
    for (let slot = 0; slot < this.subjects.length; slot++) {
      if (this.slotData[slot * STRIDE + ID] === 0) continue;
      this.slotData[slot * STRIDE + ID] = 0;
      const subject = this.subjects[slot];
      if (subject !== undefined) subjects.push(subject);
    }
    this.outstandingPings = 0;
    return subjects;
  }

  /** Drops the subject's outstanding ping, if any, unsettled: the client is gone, its reply means nothing. */
  forget(subject: string): void {
    const slot = this.slotOf.get(subject);
    if (slot === undefined) return;
    this.release(slot);
  }

  /** Gives `slot` to `subject`: what either had outstanding is dropped, unsettled. */
  private bind(subject: string, slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot * COUNT_WRAP > Number.MAX_SAFE_INTEGER)
      throw new Error(`pinger: slot ${slot} is not a whole number from 0`);
    if (this.subjects[slot] !== undefined) this.release(slot);
    const previous = this.slotOf.get(subject);
    if (previous !== undefined) this.release(previous);
    while ((slot + 1) * STRIDE > this.slotData.length) this.grow();
    for (let s = this.subjects.length; s < slot; s++) this.subjects.push(undefined); // kept packed
    this.subjects[slot] = subject;
    this.slotOf.set(subject, slot);
  }

  /** The slot's subject is gone: its outstanding ping is dropped. Its count stays, so its ids are not reused soon. */
  private release(slot: number): void {
    const at = slot * STRIDE;
    if (this.slotData[at + ID] !== 0) this.outstandingPings -= 1;
    this.slotData[at + ID] = 0;
    const subject = this.subjects[slot];
    if (subject !== undefined) this.slotOf.delete(subject);
    this.subjects[slot] = undefined;
  }

  private grow(): void {
    const grown = new Float64Array(this.slotData.length * 2);
    grown.set(this.slotData);
    this.slotData = grown;
  }

  private onReply(session: Session, msg: PingReply): void {
    if (session !== this.session) return; // a reply the client library had queued before stop
    const id = Number(msg.subject.slice(session.replyPrefix.length));
    const slot = Math.floor(id / COUNT_WRAP);
    const at = slot * STRIDE;
    if (!(id > 0) || !(at < this.slotData.length) || this.slotData[at + ID] !== id) return; // settled already (answered or superseded), or not an id of ours
    this.slotData[at + ID] = 0;
    this.outstandingPings -= 1;
    const subject = this.subjects[slot]!;
    // The server answers a request nobody listens to with an empty 503 status message.
    if (msg.headers?.code === 503 && (msg.data?.length ?? 0) === 0) {
      this.options.onMiss(subject, "no responders");
      return;
    }
    this.options.onReply(subject, this.clock.now() - this.slotData[at + SENT_AT]!, slot);
  }
}
