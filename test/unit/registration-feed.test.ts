/**
 * Registrations by partition, without NATS: the router hands each change of the bucket to the
 * feed of its subject's partition, and a partition's intake loads its part, follows the
 * changes from before the load, and tells its monitor of each change once.
 */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { MonitorEvent } from "../../src/machines/monitor.js";
import { createLogger } from "../../src/observe/logger.js";
import { partitionOf } from "../../src/protocol/partition.js";
import { NOT_MINE_RETRY_DELAY_MS, RegistrationIntake, type RegistrationIntakeOptions } from "../../src/presence/registration-intake.js";
import { RegistrationRouter } from "../../src/presence/registration-router.js";
import type {
  RegistrationChange,
  RegistrationMessage,
  RegistrationStore,
  StoredRegistration,
} from "../../src/presence/registration-store.js";

const flush = () => new Promise((r) => setImmediate(r));
const quiet = () => createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) });
const stored = (subject: string, revision: number): StoredRegistration => ({
  registration: { subject, metadata: {} },
  revision,
  registeredAtMs: 1,
});

/** A store that only loads what `rows` holds and lets the test push changes, as the mirror would. */
function fakeStore(rows: StoredRegistration[]) {
  const followers = new Set<(c: RegistrationChange) => void>();
  const store: RegistrationStore & Required<Pick<RegistrationStore, "follow">> = {
    loadAll: async (only) => rows.filter((r) => only === undefined || only(r.registration.subject)),
    put: () => Promise.reject(new Error("not expected")),
    remove: () => Promise.resolve(),
    pull: () => Promise.reject(new Error("a partition's intake pulls nothing")),
    follow: (handler) => {
      followers.add(handler);
      return () => followers.delete(handler);
    },
  };
  return {
    store,
    push: (c: RegistrationChange) => {
      for (const f of followers) f(c);
    },
    followers,
  };
}

/** Subjects of `partitions` that fall in partition `p`, and ones that do not. */
function subjectsIn(p: number, partitions: number, n: number): { mine: string[]; others: string[] } {
  const mine: string[] = [];
  const others: string[] = [];
  for (let i = 0; mine.length < n || others.length < n; i++) {
    const s = `svc.feed.${i}`;
    (partitionOf(s, partitions) === p ? mine : others).push(s);
  }
  return { mine: mine.slice(0, n), others: others.slice(0, n) };
}

function describe(e: MonitorEvent): string {
  if (e.type === "REGISTERED") return `REGISTERED ${e.record.registration.subject}@${e.record.revision}`;
  if (e.type === "UNREGISTERED") return `UNREGISTERED ${e.subject}`;
  if (e.type === "REGISTRATIONS_LOADED" || e.type === "REGISTRATIONS_CHUNK")
    return `${e.type} ${e.records.map((r) => r.registration.subject).join(",")}`;
  return e.type;
}

/** An intake on `store`, with what it tells its monitor and which pings it forgets; a partition's if given its feed. */
function intakeOf(store: RegistrationStore, extra: Partial<RegistrationIntakeOptions> = {}) {
  const events: string[] = [];
  const forgotten: string[] = [];
  const intake = new RegistrationIntake({
    store,
    clusterId: "feed",
    maxClients: 100,
    log: quiet(),
    leaseIsValid: () => true,
    toMonitor: (e) => events.push(describe(e)),
    onUnregistered: (s) => forgotten.push(s),
    ...extra,
  });
  return { intake, events, forgotten };
}

test("registration feed - a takeover loads only its partition's registrations", async () => {
  const { mine, others } = subjectsIn(1, 4, 2);
  const { store } = fakeStore([stored(mine[0]!, 5), stored(others[0]!, 6), stored(mine[1]!, 7), stored(others[1]!, 8)]);
  const router = new RegistrationRouter(store, 4);
  const { intake, events } = intakeOf(store, { feed: router.feed(1) });
  intake.load();
  await flush();
  assert.equal(events, [`REGISTRATIONS_LOADED ${mine[0]},${mine[1]}`]);
});

test("registration feed - changes during the load wait for it, each is told once, and other partitions' are not told", async () => {
  const { mine, others } = subjectsIn(2, 4, 3);
  const fake = fakeStore([stored(mine[0]!, 5)]);
  const router = new RegistrationRouter(fake.store, 4);
  const { intake, events, forgotten } = intakeOf(fake.store, { feed: router.feed(2) });
  intake.load();
  // Stored while the load is in flight: already in the load (same revision), newer, and new.
  fake.push({ op: "put", stored: stored(mine[0]!, 5) });
  fake.push({ op: "put", stored: stored(mine[1]!, 9) });
  fake.push({ op: "put", stored: stored(others[0]!, 10) });
  await flush();
  assert.equal(events, [`REGISTRATIONS_LOADED ${mine[0]}`], "nothing is told before the load is in");
  intake.pull(); // the monitor is running: the changes heard meanwhile go now
  assert.equal(events.slice(1), [`REGISTERED ${mine[1]}@9`]);
  fake.push({ op: "put", stored: stored(mine[0]!, 11) }); // registered again
  fake.push({ op: "delete", subject: mine[1]!, revision: 12 });
  fake.push({ op: "delete", subject: mine[2]!, revision: 13 }); // never monitored here
  fake.push({ op: "delete", subject: others[0]!, revision: 14 });
  assert.equal(events.slice(2), [`REGISTERED ${mine[0]}@11`, `UNREGISTERED ${mine[1]}`]);
  assert.equal(forgotten, [mine[1]]);
});

test("registration feed - a client removed as dead is not told to leave when its delete comes back", async () => {
  const { mine } = subjectsIn(0, 2, 1);
  const fake = fakeStore([stored(mine[0]!, 3)]);
  const router = new RegistrationRouter(fake.store, 2);
  const { intake, events } = intakeOf(fake.store, { feed: router.feed(0) });
  intake.load();
  await flush();
  intake.pull();
  intake.removeDead(mine[0]!, 3);
  fake.push({ op: "delete", subject: mine[0]!, revision: 4 });
  assert.equal(events, [`REGISTRATIONS_LOADED ${mine[0]}`]);
  // Registered again later: a new client for this leader.
  fake.push({ op: "put", stored: stored(mine[0]!, 5) });
  assert.equal(events.at(-1), `REGISTERED ${mine[0]}@5`);
});

test("registration feed - leadership ended: the feed is no longer followed, and the router lets go of the mirror", async () => {
  const fake = fakeStore([]);
  const router = new RegistrationRouter(fake.store, 3);
  const a = intakeOf(fake.store, { feed: router.feed(0) });
  const b = intakeOf(fake.store, { feed: router.feed(1) });
  a.intake.load();
  b.intake.load();
  await flush();
  assert.is(fake.followers.size, 1, "one watch of the mirror for the coordinator");
  a.intake.stop();
  assert.is(fake.followers.size, 1, "partition 1 still follows");
  b.intake.stop();
  assert.is(fake.followers.size, 0);
  const { mine } = subjectsIn(0, 3, 1);
  fake.push({ op: "put", stored: stored(mine[0]!, 2) });
  assert.equal(a.events, ["REGISTRATIONS_LOADED "]);
});

test("registration feed - a leave is stored only by the leader of its client's partition; others hand it back", async () => {
  const removed: string[] = [];
  let handle: ((m: RegistrationMessage) => Promise<void>) | undefined;
  const store: RegistrationStore = {
    loadAll: () => Promise.resolve([]),
    put: () => Promise.resolve(7),
    remove: (subject) => {
      removed.push(subject);
      return Promise.resolve();
    },
    pull: (h) => {
      handle = h;
      return Promise.resolve({ close: () => Promise.resolve() });
    },
  };
  const leads = new Set(["svc.mine"]);
  const { intake } = intakeOf(store, { mayStore: (subject, leaving) => !leaving || leads.has(subject) });
  intake.pull();
  await flush();
  const settled: string[] = [];
  const message = (subject: string, leaving: boolean): RegistrationMessage => ({
    subject: leaving ? "presence.unregister.feed" : "presence.register.feed",
    data: new TextEncoder().encode(JSON.stringify({ myPresenceSubject: subject })),
    ack: () => settled.push(`ack ${subject}`),
    nak: (ms) => settled.push(`nak ${subject} ${ms}`),
  });
  await handle!(message("svc.other", true));
  await handle!(message("svc.mine", true));
  await handle!(message("svc.other", false));
  assert.equal(settled, [`nak svc.other ${NOT_MINE_RETRY_DELAY_MS}`, "ack svc.mine", "ack svc.other"]);
  assert.equal(removed, ["svc.mine"], "the leave of a partition it does not lead is not stored");
});

test.run();
