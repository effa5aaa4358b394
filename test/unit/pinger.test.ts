/**
 * The pinger with a strict fake connection (no NATS) and xstate's SimulatedClock: a ping is
 * an empty publish with a reply subject under the pinger's one inbox, replies come in
 * through one wildcard subscription, and every ping ends answered, missed or forgotten.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SimulatedClock } from "xstate";
import { Pinger, type PingConnection, type PingerClock, type PingReply } from "../../src/services/pinger.js";

const TIMEOUT_MS = 750;

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

/** SimulatedClock, counting the timers that are set and not yet fired or cleared. */
function countingClock() {
  const sim = new SimulatedClock();
  const pending = new Set<unknown>();
  const clock: PingerClock = {
    now: () => sim.now(),
    setTimeout: (fn, ms) => {
      const id: number = sim.setTimeout(() => {
        pending.delete(id);
        fn();
      }, ms);
      pending.add(id);
      return id;
    },
    clearTimeout: (id) => {
      pending.delete(id);
      sim.clearTimeout(id as number);
    },
  };
  return { sim, clock, pending };
}

function setup() {
  const nc = new StrictConnection();
  const { sim, clock, pending } = countingClock();
  const replies: [string, number][] = [];
  const misses: [string, string][] = [];
  let inboxes = 0;
  const pinger = new Pinger({
    nc,
    timeoutMs: TIMEOUT_MS,
    clock,
    inbox: () => `_INBOX.test${++inboxes}`,
    onReply: (subject, rttMs) => replies.push([subject, rttMs]),
    onMiss: (subject, why) => misses.push([subject, why]),
    onError: (err) => {
      throw err;
    },
  });
  return { nc, sim, pending, pinger, replies, misses };
}

test("pinger - every reply reaches the ping it answers, through one wildcard subscription", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  const subjects = Array.from({ length: 1000 }, (_, i) => `svc.${i}`);
  for (const s of subjects) {
    pinger.ping(s);
    sim.increment(0.5);
  }
  assert.equal(nc.subscriptions.map((s) => s.subject), ["_INBOX.test1.*"], "one subscription, a wildcard under one inbox");
  assert.equal(nc.published.map((p) => p.subject), subjects, "each subject pinged once, in order");
  assert.is(new Set(nc.published.map((p) => p.reply)).size, subjects.length, "each ping has a reply subject of its own");
  assert.ok(nc.published.every((p) => /^_INBOX\.test1\.\d+$/.test(p.reply)), "reply subject: the inbox and one numeric token");
  // Answered in reverse order: each reply finds its own subject and round trip.
  for (let i = subjects.length - 1; i >= 0; i--) assert.is(nc.answer(i), 1);
  assert.is(replies.length, subjects.length);
  assert.equal(replies.map(([s]) => s), [...subjects].reverse());
  assert.equal(replies[0], ["svc.999", 0.5], "the last ping was sent 0.5 ms before the replies");
  assert.equal(replies.at(-1), ["svc.0", 500], "the first ping was sent 500 ms before the replies");
  assert.equal(misses, []);
  assert.is(pinger.outstanding, 0);
  // A second reply to an answered ping (a client that answers twice) counts once.
  nc.answer(0);
  assert.is(replies.length, subjects.length, "a duplicate reply is not a second pong");
});

test("pinger - a reply after the timeout does not count: the ping is missed once", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.slow");
  sim.increment(TIMEOUT_MS + 1);
  nc.answer(0);
  assert.equal(replies, [], "the late reply is not taken for life");
  assert.equal(misses, [["svc.slow", "timeout"]]);
  sim.increment(3 * TIMEOUT_MS);
  assert.equal(misses, [["svc.slow", "timeout"]], "missed once, not again when the sweep runs");
  assert.is(pinger.outstanding, 0);
});

test("pinger - a late reply that comes before the sweep has seen its ping does not count either", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.quiet"); // arms the sweep for t = 750
  sim.increment(10);
  pinger.ping("svc.slow"); // sent at t = 10: not yet due at that sweep; the next is at t = 1500
  sim.increment(TIMEOUT_MS - 10); // the sweep at t = 750 runs
  sim.increment(11);
  assert.equal(misses, [], "nothing was due at t = 750");
  nc.answer(1); // at t = 761, 751 ms after the ping was sent
  assert.equal(replies, [], "the late reply is not taken for life");
  assert.equal(misses, [["svc.slow", "timeout"]]);
});

test("pinger - a reply just within the timeout counts", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.a");
  sim.increment(TIMEOUT_MS);
  nc.answer(0);
  assert.equal(replies, [["svc.a", TIMEOUT_MS]]);
  assert.equal(misses, []);
});

test("pinger - a reply to a ping of an earlier start is ignored, also when it reaches the old subscription", () => {
  const { nc, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.a");
  const old = nc.subscriptions[0]!;
  pinger.stop();
  assert.equal(nc.active, [], "stop unsubscribes");
  pinger.start();
  assert.equal(nc.active.map((s) => s.subject), ["_INBOX.test2.*"], "a new leadership listens on a fresh inbox");
  pinger.ping("svc.a");
  // The old reply: the server no longer routes it, and one the client library had already
  // queued for the old subscription's callback is dropped as well.
  assert.is(nc.answer(0), 0, "nothing listens on the old inbox");
  old.callback(null, { subject: nc.published[0]!.reply, data: new Uint8Array(0) });
  assert.equal(replies, [], "the earlier leadership's reply is no pong");
  assert.is(nc.answer(1), 1);
  assert.equal(replies.map(([s]) => s), ["svc.a"], "the new ping's reply counts");
  assert.equal(misses, [], "a ping forgotten at stop is neither answered nor missed");
});

test("pinger - a new ping of a subject supersedes the outstanding one: counted missed, its reply ignored", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.a");
  sim.increment(TIMEOUT_MS / 2);
  pinger.ping("svc.a");
  assert.equal(misses, [["svc.a", "superseded"]]);
  assert.is(pinger.outstanding, 1);
  nc.answer(0);
  assert.equal(replies, [], "the superseded ping's reply is ignored");
  sim.increment(1);
  nc.answer(1);
  assert.equal(replies, [["svc.a", 1]], "the newest ping's reply counts");
  // Superseded after its time was up: it is a timeout.
  pinger.ping("svc.a");
  sim.increment(TIMEOUT_MS + 1);
  pinger.ping("svc.a");
  assert.equal(misses, [["svc.a", "superseded"], ["svc.a", "timeout"]]);
});

test("pinger - a reply of a client that is gone is ignored, and its ping is not counted missed", () => {
  const { nc, sim, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.gone");
  pinger.ping("svc.stays");
  pinger.forget("svc.gone");
  assert.is(pinger.outstanding, 1);
  nc.answer(0);
  nc.answer(1);
  assert.equal(replies.map(([s]) => s), ["svc.stays"]);
  sim.increment(3 * TIMEOUT_MS);
  assert.equal(misses, []);
});

test("pinger - a no-responders status is a missed ping, not a reply", () => {
  const { nc, pinger, replies, misses } = setup();
  pinger.start();
  pinger.ping("svc.gone");
  nc.answer(0, { headers: { code: 503 } });
  assert.equal(replies, []);
  assert.equal(misses, [["svc.gone", "no responders"]]);
  assert.is(pinger.outstanding, 0);
  // A client's own reply with headers and a payload is a reply.
  pinger.ping("svc.gone");
  nc.answer(1, { headers: { code: 0 }, data: new Uint8Array([1]) });
  assert.equal(replies.map(([s]) => s), ["svc.gone"]);
});

test("pinger - memory is bounded: unanswered pings are swept as missed, with one timer for the whole pinger", () => {
  const { sim, pending, pinger, replies, misses } = setup();
  pinger.start();
  const subjects = Array.from({ length: 5000 }, (_, i) => `svc.${i}`);
  // Rounds of pings a little faster than the timeout: at most one outstanding per subject.
  for (let round = 0; round < 4; round++) {
    for (const s of subjects) pinger.ping(s);
    assert.is(pinger.outstanding, subjects.length, `round ${round}: one outstanding ping per subject`);
    assert.ok(pending.size <= 1, `round ${round}: ${pending.size} timers`);
    sim.increment(TIMEOUT_MS / 2);
  }
  assert.is(misses.length, 3 * subjects.length, "every superseded ping was counted missed");
  // Clients gone: nobody pings them again, the sweep settles them.
  sim.increment(2 * TIMEOUT_MS);
  assert.is(pinger.outstanding, 0, "swept");
  assert.is(misses.length, 4 * subjects.length, "every ping missed exactly once");
  assert.ok(misses.slice(3 * subjects.length).every(([, why]) => why === "timeout"));
  assert.equal(replies, []);
  assert.is(pending.size, 0, "no timer is left while nothing is outstanding");
});

test("pinger - stop leaves no timer and forgets outstanding pings", () => {
  const { sim, pending, pinger, misses } = setup();
  pinger.start();
  pinger.ping("svc.a");
  assert.is(pending.size, 1);
  pinger.stop();
  assert.is(pending.size, 0, "the sweep timer is cleared");
  assert.is(pinger.outstanding, 0);
  sim.increment(3 * TIMEOUT_MS);
  assert.equal(misses, []);
  assert.throws(() => pinger.ping("svc.a"), /before start/);
});

test("pinger - a publish that throws sends nothing and leaves the outstanding ping as it was", () => {
  const { nc, sim, pinger, misses } = setup();
  pinger.start();
  pinger.ping("svc.a");
  const publish = nc.publish.bind(nc);
  nc.publish = () => {
    throw new Error("connection closed");
  };
  sim.increment(1);
  assert.throws(() => pinger.ping("svc.a"), /connection closed/);
  nc.publish = publish;
  assert.equal(misses, []);
  assert.is(pinger.outstanding, 1);
});

test.run();
