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
  /** A ping was answered; `rttMs` is its round trip on the pinger's clock. */
  onReply: (subject: string, rttMs: number) => void;
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
 * A ping's id is `count × SLOTS + slot`: the subject's slot, and how many pings that slot
 * has sent (1 to COUNT_WRAP − 1, then from 1 again). Both come back in the reply subject as
 * one number, so a reply finds its slot with one parse and no map. A slot's count is never
 * reset, so an id names one ping of the last 1,023 of its slot: a reply would have to come
 * 1,023 ping intervals late (13 minutes at the default timings) to be taken for another.
 * Ids stay below 2^30, a small integer to V8 in every build: writing one into a reply
 * subject and parsing it back costs a third of what a larger number does.
 */
const SLOTS = 2 ** 20;
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
  /** Each subject pinged gets a slot until it is forgotten; slots are reused. */
  private readonly slotOf = new Map<string, number>();
  private subjects: (string | undefined)[] = [];
  private readonly free: number[] = [];
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
    this.free.length = 0;
  }

  /**
   * Sends one ping; the subject's outstanding ping, if any, is settled first (missed).
   * Throws what the connection's publish throws, and then counts nothing.
   */
  ping(subject: string): void {
    const session = this.session;
    if (!session) throw new Error("pinger: ping before start");
    const slot = this.slotOf.get(subject) ?? this.allocate(subject);
    const data = this.slotData;
    const at = slot * STRIDE;
    const count = (data[at + COUNT]! + 1) % COUNT_WRAP || 1;
    const id = count * SLOTS + slot;
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
    if (this.slotData[slot * STRIDE + ID] !== 0) this.outstandingPings -= 1;
    this.slotData[slot * STRIDE + ID] = 0;
    this.slotOf.delete(subject);
    this.subjects[slot] = undefined;
    this.free.push(slot);
  }

  private allocate(subject: string): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.subjects.length;
      if (slot >= SLOTS) throw new Error(`pinger: more than ${SLOTS} subjects`);
      if ((slot + 1) * STRIDE > this.slotData.length) this.grow();
    }
    this.slotOf.set(subject, slot);
    this.subjects[slot] = subject;
    return slot;
  }

  private grow(): void {
    const grown = new Float64Array(this.slotData.length * 2);
    grown.set(this.slotData);
    this.slotData = grown;
  }

  private onReply(session: Session, msg: PingReply): void {
    if (session !== this.session) return; // a reply the client library had queued before stop
    const id = Number(msg.subject.slice(session.replyPrefix.length));
    const slot = id % SLOTS;
    const at = slot * STRIDE;
    if (!(id > 0) || this.slotData[at + ID] !== id) return; // settled already (answered or superseded), or not an id of ours
    this.slotData[at + ID] = 0;
    this.outstandingPings -= 1;
    const subject = this.subjects[slot]!;
    // The server answers a request nobody listens to with an empty 503 status message.
    if (msg.headers?.code === 503 && (msg.data?.length ?? 0) === 0) return this.options.onMiss(subject, "no responders");
    this.options.onReply(subject, this.clock.now() - this.slotData[at + SENT_AT]!);
  }
}
