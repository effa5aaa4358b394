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
 * A ping ends in exactly one way:
 * - answered within `timeoutMs` of being sent: `onReply` with its round trip;
 * - missed (`onMiss`): no reply within `timeoutMs` (found by a later reply, by the next
 *   ping of the same subject, or by the sweep), superseded by the next ping of the same
 *   subject before that, or answered by the server's "no responders" status;
 * - forgotten when the pinger stops (leadership ended) or its client is gone: neither.
 *
 * The sweep is one timer for the whole pinger, armed while pings are outstanding, every
 * `timeoutMs`; it bounds memory to the pings of the last two timeouts, at most one per
 * subject. A reply that comes after its ping was settled, or to an inbox of an earlier
 * start, finds nothing and is dropped.
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

/** The pinger's clock: monotonic milliseconds and one timer (xstate's `SimulatedClock` is one). */
export interface PingerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The runtime's clock; its sweep timer does not keep the process alive. */
export const realPingerClock: PingerClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
};

/** Why a ping counts as missed. */
export type PingMiss = "timeout" | "superseded" | "no responders";

export interface PingerOptions {
  nc: PingConnection;
  /** How long a ping waits for its reply, in ms (the ping interval); a later reply does not count. */
  timeoutMs: number;
  /** A ping was answered in time; `rttMs` is its round trip on the pinger's clock. */
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

/** A ping sent and not yet settled. */
interface Outstanding {
  readonly subject: string;
  readonly sentAt: number;
}

/** One start-to-stop of the pinger: its inbox, its subscription and its outstanding pings. */
interface Session {
  /** `<inbox>.`: a reply subject is this plus the ping's id. */
  readonly replyPrefix: string;
  readonly subscription: { unsubscribe(): void };
  /** By id, in the order sent (ids only grow): the sweep stops at the first that is not due. */
  readonly byId: Map<number, Outstanding>;
  /** The outstanding ping's id per subject (at most one each). */
  readonly bySubject: Map<string, number>;
}

export class Pinger {
  private readonly clock: PingerClock;
  private readonly inbox: () => string;
  private session: Session | null = null;
  /** Never reset: an id of an earlier start never names a ping of this one. */
  private nextId = 1;
  private sweepTimer: unknown = null;

  constructor(private readonly options: PingerOptions) {
    this.clock = options.clock ?? realPingerClock;
    this.inbox = options.inbox ?? (() => createInbox());
  }

  get running(): boolean {
    return this.session !== null;
  }

  /** Pings sent and not yet answered, missed or swept. */
  get outstanding(): number {
    return this.session?.byId.size ?? 0;
  }

  /** Subscribes to a fresh inbox; does nothing when already started. */
  start(): void {
    if (this.session) return;
    const inbox = this.inbox();
    const session: Session = {
      replyPrefix: `${inbox}.`,
      byId: new Map(),
      bySubject: new Map(),
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
    this.disarmSweep();
    session.subscription.unsubscribe();
  }

  /**
   * Sends one ping; the subject's outstanding ping, if any, is settled first (missed).
   * Throws what the connection's publish throws, and then counts nothing.
   */
  ping(subject: string): void {
    const session = this.session;
    if (!session) throw new Error("pinger: ping before start");
    const now = this.clock.now();
    const id = this.nextId++;
    this.options.nc.publish(subject, Empty, { reply: session.replyPrefix + id });
    const previous = session.bySubject.get(subject);
    if (previous !== undefined) {
      const p = session.byId.get(previous)!;
      session.byId.delete(previous);
      this.options.onMiss(subject, now - p.sentAt > this.options.timeoutMs ? "timeout" : "superseded");
    }
    session.bySubject.set(subject, id);
    session.byId.set(id, { subject, sentAt: now });
    if (this.sweepTimer === null) this.armSweep();
  }

  /** Drops the subject's outstanding ping, if any, unsettled: the client is gone, its reply means nothing. */
  forget(subject: string): void {
    const session = this.session;
    const id = session?.bySubject.get(subject);
    if (id === undefined) return;
    session!.bySubject.delete(subject);
    session!.byId.delete(id);
  }

  private onReply(session: Session, msg: PingReply): void {
    if (session !== this.session) return; // a reply the client library had queued before stop
    const id = Number(msg.subject.slice(session.replyPrefix.length));
    const p = session.byId.get(id);
    if (p === undefined) return; // settled already: answered, missed or swept
    session.byId.delete(id);
    session.bySubject.delete(p.subject);
    // The server answers a request nobody listens to with an empty 503 status message.
    if (msg.headers?.code === 503 && (msg.data?.length ?? 0) === 0) return this.options.onMiss(p.subject, "no responders");
    const rttMs = this.clock.now() - p.sentAt;
    if (rttMs > this.options.timeoutMs) return this.options.onMiss(p.subject, "timeout");
    this.options.onReply(p.subject, rttMs);
  }

  private armSweep(): void {
    this.sweepTimer = this.clock.setTimeout(() => this.sweep(), this.options.timeoutMs);
  }

  private disarmSweep(): void {
    if (this.sweepTimer !== null) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
  }

  /** Settles the pings whose time is up, oldest first, and re-arms while any are left. */
  private sweep(): void {
    this.sweepTimer = null;
    const session = this.session;
    if (!session) return;
    const now = this.clock.now();
    for (const [id, p] of session.byId) {
      if (now - p.sentAt <= this.options.timeoutMs) break;
      session.byId.delete(id);
      session.bySubject.delete(p.subject);
      this.options.onMiss(p.subject, "timeout");
    }
    if (session.byId.size > 0) this.armSweep();
  }
}
