/**
 * The pinger with a strict fake connection (no NATS) and xstate's SimulatedClock as its
 * clock: a ping is an empty publish with a reply subject under the pinger's one inbox,
 * replies come in through one wildcard subscription, and every ping ends answered (however
 * late, while it is its subject's latest), unanswered (superseded or no responders) or
 * forgotten. The pinger judges no timeout and sets no timer: the shards' sweeps judge.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SimulatedClock } from "xstate";
import { Pinger, type PingConnection, type PingReply } from "../../src/presence/pinger.js";

/** The default ping interval: a pause longer than this used to turn a reply into a miss. */
const PING_INTERVAL_MS = 750;

interface FakeSubscription {
  readonly subject: string;
  readonly callback: (err: Error | null, msg: PingReply) => void;
  active: boolean;
}

/**
 * A connection that takes only what a pinger may do: publish an empty payload with a reply
 * subject, and hold at most one callback subscription at a time. Anything else throws.
 * `deliver` routes a message as the server would: to the active subscriptions it matches.
 */
class StrictConnection implements PingConnection {
  readonly published: { subject: string; reply: string }[] = [];
  readonly subscriptions: FakeSubscription[] = [];

  publish(subject: string, payload: Uint8Array, options: { reply: string }): void {
    if (payload.length !== 0) throw new Error(`unexpected ping payload of ${payload.length} bytes`);
    if (typeof options?.reply !== "string") throw new Error(`unexpected publish without a reply subject on ${subject}`);
    this.published.push({ subject, reply: options.reply });
  }

  subscribe(subject: string, options: { callback: (err: Error | null, msg: PingReply) => void }): { unsubscribe(): void } {
    if (typeof options?.callback !== "function") throw new Error("unexpected subscription without a callback");
    if (this.subscriptions.some((s) => s.active)) throw new Error(`unexpected second subscription (${subject})`);
    const sub: FakeSubscription = { subject, callback: options.callback, active: true };
    this.subscriptions.push(sub);
    return {
      unsubscribe: () => {
        if (!sub.active) throw new Error(`unexpected second unsubscribe of ${subject}`);
        sub.active = false;
      },
    };
  }

  /** Delivers to every active subscription whose subject (`<inbox>.*`) matches, as nats-server does. */
  deliver(subject: string, extra: Partial<PingReply> = {}): number {
    let delivered = 0;
    for (const s of this.subscriptions) {
      if (s.active && matches(s.subject, subject)) {
        s.callback(null, { subject, data: new Uint8Array(0), ...extra });
        delivered += 1;
      }
    }
    return delivered;
  }

  /** The client answers the i-th ping (what `msg.respond()` does: publish to its reply subject). */
  answer(i: number, extra: Partial<PingReply> = {}): number {
    return this.deliver(this.published[i]!.reply, extra);
  }

  get active(): FakeSubscription[] {
    return this.subscriptions.filter((s) => s.active);
  }
}

function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  return p.length === s.length && p.every((t, i) => t === "*" || t === s[i]);
}

function setup() {
  const nc = new StrictConnection();
  const sim = new SimulatedClock();
  const replies: [string, number][] = [];
  const slotReplies: number[] = [];
  const misses: [string, string][] = [];
  let inboxes = 0;
  const pinger = new Pinger({
    nc,
    clock: sim,
    inbox: () => `_INBOX.test${++inboxes}`,
    onReply: (subject, rttMs, slot) => {
      replies.push([subject, rttMs]);
      slotReplies.push(slot);
    },
    onMiss: (subject, why) => misses.push([subject, why]),
    onError: (err) => {
      throw err;
    },
  });
  // The caller's keys: a slot per subject, in the order they are first pinged.
  const slots = new Map<string, number>();
  const ping = (subject: string): void => {
    let slot = slots.get(subject);
    if (slot === undefined) {
      slot = slots.size;
      slots.set(subject, slot);
    }
    pinger.ping(subject, slot);
  };
  return { nc, sim, pinger, ping, replies, misses, slotReplies };
}

/** Runs `fn` with the global timer functions counting their calls (then restores them); returns the count. */
function timersSetDuring(fn: () => void): number {
  const g = globalThis as unknown as Record<"setTimeout" | "setInterval" | "setImmediate", (...args: unknown[]) => unknown>;
  const saved = { setTimeout: g.setTimeout, setInterval: g.setInterval, setImmediate: g.setImmediate };
  let count = 0;
  for (const name of ["setTimeout", "setInterval", "setImmediate"] as const) {
    g[name] = (...args: unknown[]) => {
      count += 1;
      return saved[name](...args);
    };
  }
  try {
    fn();
  } finally {
    Object.assign(g, saved);
  }
  return count;
}

test("pinger - every reply reaches the ping it answers, through one wildcard subscription", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  pinger.start();
  const subjects = Array.from({ length: 1000 }, (_, i) => `svc.${i}`);
  for (const s of subjects) {
    ping(s);
    sim.increment(0.5);
  }
  assert.equal(
    nc.subscriptions.map((s) => s.subject),
    ["_INBOX.test1.*"],
    "one subscription, a wildcard under one inbox",
  );
  assert.equal(
    nc.published.map((p) => p.subject),
    subjects,
    "each subject pinged once, in order",
  );
  assert.is(new Set(nc.published.map((p) => p.reply)).size, subjects.length, "each ping has a reply subject of its own");
  assert.ok(
    nc.published.every((p) => /^_INBOX\.test1\.\d+$/.test(p.reply)),
    "reply subject: the inbox and one numeric token",
  );
  // Answered in reverse order: each reply finds its own subject and round trip.
  for (let i = subjects.length - 1; i >= 0; i--) assert.is(nc.answer(i), 1);
  assert.is(replies.length, subjects.length);
  assert.equal(
    replies.map(([s]) => s),
    [...subjects].reverse(),
  );
  assert.equal(replies[0], ["svc.999", 0.5], "the last ping was sent 0.5 ms before the replies");
  assert.equal(replies.at(-1), ["svc.0", 500], "the first ping was sent 500 ms before the replies");
  assert.equal(misses, []);
  assert.is(pinger.outstanding, 0);
  // A second reply to an answered ping (a client that answers twice) counts once.
  nc.answer(0);
  assert.is(replies.length, subjects.length, "a duplicate reply is not a second reply");
});

test("pinger - a reply counts however late it is read while its ping is the subject's latest: a pause is no miss", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.slow");
  ping("svc.paused");
  sim.increment(PING_INTERVAL_MS + 1);
  nc.answer(0);
  // The leader was paused for a minute: the reply waited in the socket all along.
  sim.increment(60_000);
  nc.answer(1);
  assert.equal(replies, [
    ["svc.slow", PING_INTERVAL_MS + 1],
    ["svc.paused", PING_INTERVAL_MS + 1 + 60_000],
  ]);
  assert.equal(misses, [], "no reply was turned into a miss");
  assert.is(pinger.outstanding, 0);
});

test("pinger - a new ping of a subject supersedes the outstanding one: counted unanswered, its reply ignored", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.a");
  ping("svc.b");
  sim.increment(PING_INTERVAL_MS);
  ping("svc.a");
  assert.equal(misses, [["svc.a", "superseded"]], "only svc.a's ping was superseded");
  assert.is(pinger.outstanding, 2, "one outstanding ping per subject");
  assert.is(nc.answer(0), 1);
  assert.equal(replies, [], "the superseded ping's reply is ignored");
  sim.increment(1);
  nc.answer(2);
  nc.answer(1);
  assert.equal(
    replies,
    [
      ["svc.a", 1],
      ["svc.b", PING_INTERVAL_MS + 1],
    ],
    "the newest ping's reply counts, from when it was sent",
  );
  // However long the ping waited, the next one supersedes it: the pinger judges no timeout.
  ping("svc.a");
  sim.increment(10 * 60_000);
  ping("svc.a");
  assert.equal(misses, [
    ["svc.a", "superseded"],
    ["svc.a", "superseded"],
  ]);
});

test("pinger - a no-responders status is an unanswered ping, not a reply", () => {
  const { nc, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.gone");
  nc.answer(0, { headers: { code: 503 } });
  assert.equal(replies, []);
  assert.equal(misses, [["svc.gone", "no responders"]]);
  assert.is(pinger.outstanding, 0);
  // A client's own reply with headers and a payload is a reply.
  ping("svc.gone");
  nc.answer(1, { headers: { code: 0 }, data: new Uint8Array([1]) });
  assert.equal(
    replies.map(([s]) => s),
    ["svc.gone"],
  );
  // An empty 503 after the ping was answered finds nothing.
  nc.answer(1, { headers: { code: 503 } });
  assert.equal(misses, [["svc.gone", "no responders"]]);
});

test("pinger - stop unsubscribes and forgets outstanding pings: their replies are neither answered nor missed", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  pinger.start();
  pinger.start(); // started already: no second subscription
  ping("svc.a");
  ping("svc.b");
  const old = nc.subscriptions[0]!;
  pinger.stop();
  assert.is(pinger.running, false);
  assert.equal(nc.active, [], "stop unsubscribes");
  assert.is(pinger.outstanding, 0, "outstanding pings forgotten");
  // A reply the client library had already queued for the old subscription's callback.
  sim.increment(1);
  old.callback(null, { subject: nc.published[0]!.reply, data: new Uint8Array(0) });
  assert.equal(replies, []);
  assert.equal(misses, []);
  assert.throws(() => ping("svc.a"), /before start/);
  pinger.stop(); // stopped already: no second unsubscribe
});

test("pinger - a reply to a ping of an earlier start is dropped, also when it reaches the old subscription", () => {
  const { nc, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.a");
  const old = nc.subscriptions[0]!;
  pinger.stop();
  pinger.start();
  assert.equal(
    nc.active.map((s) => s.subject),
    ["_INBOX.test2.*"],
    "a new leadership listens on a fresh inbox",
  );
  ping("svc.a");
  // The old reply: the server no longer routes it, and one the client library had already
  // queued for the old subscription's callback is dropped as well.
  assert.is(nc.answer(0), 0, "nothing listens on the old inbox");
  old.callback(null, { subject: nc.published[0]!.reply, data: new Uint8Array(0) });
  // Even with the old id under the new inbox (a forged or confused reply), it names no ping of this start.
  nc.deliver(`_INBOX.test2.${nc.published[0]!.reply.split(".").at(-1)}`);
  assert.equal(replies, [], "the earlier leadership's reply is no reply");
  assert.is(pinger.outstanding, 1, "the new ping is still outstanding");
  assert.is(nc.answer(1), 1);
  assert.equal(
    replies.map(([s]) => s),
    ["svc.a"],
    "the new ping's reply counts",
  );
  assert.equal(misses, [], "a ping forgotten at stop is neither answered nor missed");
});

test("pinger - memory is bounded to one outstanding ping per subject, and the pinger sets no timer", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  const subjects = Array.from({ length: 5000 }, (_, i) => `svc.${i}`);
  const timers = timersSetDuring(() => {
    pinger.start();
    // Clients that never answer: round after round, at most one outstanding ping each.
    for (let round = 0; round < 4; round++) {
      for (const s of subjects) ping(s);
      assert.is(pinger.outstanding, subjects.length, `round ${round}: one outstanding ping per subject`);
      sim.increment(PING_INTERVAL_MS);
    }
    // The last round is answered, and one more ping is not: nothing is left but that one.
    for (let i = 3 * subjects.length; i < nc.published.length; i++) nc.answer(i);
    ping("svc.0");
    pinger.forget("svc.0");
    pinger.stop();
  });
  assert.is(misses.length, 3 * subjects.length, "every superseded ping was counted unanswered once");
  assert.ok(misses.every(([, why]) => why === "superseded"));
  assert.is(replies.length, subjects.length);
  assert.is(pinger.outstanding, 0);
  assert.is(timers, 0, "no timer per ping, nor one for the pinger");
});

test("pinger - forget: a gone client's reply is ignored, its ping is not counted unanswered, its next ping supersedes nothing", () => {
  const { nc, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.gone");
  ping("svc.stays");
  pinger.forget("svc.gone");
  pinger.forget("svc.never-pinged");
  assert.is(pinger.outstanding, 1);
  nc.answer(0);
  nc.answer(1);
  assert.equal(
    replies.map(([s]) => s),
    ["svc.stays"],
  );
  // It registers again and is pinged: nothing of before is superseded, and its reply counts.
  ping("svc.gone");
  nc.answer(2);
  assert.equal(
    replies.map(([s]) => s),
    ["svc.stays", "svc.gone"],
  );
  assert.equal(misses, []);
  pinger.stop();
  pinger.forget("svc.gone"); // stopped: nothing to forget
});

test("pinger - a publish that throws sends nothing and leaves the outstanding ping as it was", () => {
  const { nc, sim, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.a");
  const publish = nc.publish.bind(nc);
  nc.publish = () => {
    throw new Error("connection closed");
  };
  sim.increment(1);
  assert.throws(() => ping("svc.a"), /connection closed/);
  nc.publish = publish;
  assert.equal(misses, []);
  assert.is(pinger.outstanding, 1);
  nc.answer(0);
  assert.equal(replies, [["svc.a", 1]], "the ping sent before still counts");
});

test("pinger - a subject's ping ids wrap after 1,023 pings, stay small integers, and never match an earlier ping's reply", () => {
  const { nc, pinger, ping, replies, misses } = setup();
  pinger.start();
  ping("svc.other"); // slot 0: svc.a's slot is 1
  const prefix = nc.published[0]!.reply.replace(/[^.]*$/, "");
  for (let i = 0; i < 1025; i++) ping("svc.a");
  const ids = nc.published.slice(1).map((p) => Number(p.reply.slice(prefix.length)));
  assert.ok(
    ids.every((id) => Number.isInteger(id) && id > 0 && id < 2 ** 30),
    "every id is a positive integer below 2^30",
  );
  assert.is(new Set(ids.slice(0, 1023)).size, 1023, "1,023 pings in a row have 1,023 ids");
  assert.is(ids[1023], ids[0], "the 1,024th ping takes the first one's id again");
  assert.is(misses.length, 1024, "each ping of svc.a but the last was superseded");
  // Replies to the 1,022 pings before the latest find nothing (the one before those has the
  // latest's id: a reply that late is the limit the ids accept); the latest's counts once.
  for (let i = 1025 - 1022; i < 1025; i++) nc.answer(i);
  assert.equal(replies, [], "replies to superseded pings are ignored");
  nc.answer(1025);
  nc.answer(1025);
  assert.equal(replies, [["svc.a", 0]], "the reply to the latest ping counts, once");
  nc.deliver(`${prefix}${2 ** 30 + 1}`);
  nc.deliver(`${prefix}1.5`);
  nc.deliver(`${prefix}-1`);
  nc.answer(0);
  assert.equal(
    replies,
    [
      ["svc.a", 0],
      ["svc.other", 0],
    ],
    "ids that name no ping of ours are ignored",
  );
});

test("pinger - a reply brings back the slot its ping went on; a slot changing hands drops its ping unsettled", () => {
  const { nc, pinger, replies, misses, slotReplies } = setup();
  pinger.start();
  pinger.ping("svc.a", 7);
  pinger.ping("svc.b", 3);
  nc.answer(1);
  nc.answer(0);
  assert.equal(
    replies.map(([s]) => s),
    ["svc.b", "svc.a"],
  );
  assert.equal(slotReplies, [3, 7], "each reply names the slot its ping was sent on");
  // svc.a is gone (its slot reused by svc.c) with a ping outstanding: neither answered nor missed.
  pinger.ping("svc.a", 7);
  pinger.ping("svc.c", 7);
  assert.is(pinger.outstanding, 1, "only svc.c's ping is outstanding");
  assert.is(nc.answer(2), 1);
  assert.equal(replies.length, 2, "the reply to svc.a's dropped ping finds nothing");
  pinger.forget("svc.a"); // no longer on any slot: svc.c's ping stays
  assert.is(pinger.outstanding, 1);
  nc.answer(3);
  assert.equal(replies.at(-1)?.[0], "svc.c");
  // A subject that comes back on another slot: its ping on the old one is dropped, unsettled.
  pinger.ping("svc.b", 3);
  pinger.ping("svc.b", 9);
  assert.is(pinger.outstanding, 1);
  nc.answer(4);
  assert.equal(replies.length, 3, "the ping on the old slot is no longer svc.b's");
  nc.answer(5);
  assert.equal(replies.at(-1)?.[0], "svc.b");
  assert.equal(slotReplies.at(-1), 9);
  pinger.forget("svc.b");
  pinger.ping("svc.d", 3); // the old slot was released: svc.d takes it with nothing outstanding
  assert.equal(misses, [], "nothing was counted unanswered");
  assert.is(pinger.outstanding, 1);
});

test("pinger - any whole slot works, above 2^20 too; a slot that is not a whole number from 0 is refused before publishing", () => {
  const { nc, pinger, replies, slotReplies } = setup();
  pinger.start();
  pinger.ping("svc.far", 2 ** 21 + 5);
  nc.answer(0);
  assert.equal(
    replies.map(([s]) => s),
    ["svc.far"],
  );
  assert.equal(slotReplies, [2 ** 21 + 5]);
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
    assert.throws(() => pinger.ping("svc.bad", bad), /slot/, `slot ${bad}`);
  assert.is(nc.published.length, 1, "nothing was published for a refused slot");
  assert.is(pinger.outstanding, 0);
});

test.run();
