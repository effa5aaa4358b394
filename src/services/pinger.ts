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
  /** By id. */
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

  constructor(private readonly options: PingerOptions) {
    this.clock = options.clock ?? realPingerClock;
    this.inbox = options.inbox ?? (() => createInbox());
  }

  get running(): boolean {
    return this.session !== null;
  }

  /** Pings sent and not yet answered or superseded. */
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
      session.byId.delete(previous);
      this.options.onMiss(subject, "superseded");
    }
    session.bySubject.set(subject, id);
    session.byId.set(id, { subject, sentAt: now });
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
    if (p === undefined) return; // settled already: answered or superseded
    session.byId.delete(id);
    session.bySubject.delete(p.subject);
    // The server answers a request nobody listens to with an empty 503 status message.
    if (msg.headers?.code === 503 && (msg.data?.length ?? 0) === 0) return this.options.onMiss(p.subject, "no responders");
    this.options.onReply(p.subject, this.clock.now() - p.sentAt);
  }
}
