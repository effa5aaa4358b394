/**
 * The presence edge's registration path with strict fakes (no NATS): a registration store
 * whose calls wait until the test answers them, registration messages that record how they
 * were settled, and a connection and feed that fail on any call nobody expected.
 */
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { MonitorEvent } from "../../src/machines/monitor.js";
import {
  decodeReport,
  encodeReport,
  presenceSubjects,
  REPORT_HEADERS,
  REPORT_SCHEMA,
  type ClientReport,
  type Registration,
  type Report,
  type ReportEncoding,
} from "../../src/protocol/presence.js";
import { createLogger } from "../../src/services/logger.js";
import {
  PresenceEdge,
  type PresenceConnection,
  type RegistrationFeed,
  type RegistrationMessage,
} from "../../src/services/presence-edge.js";
import type { RegistrationStore, StoredRegistration } from "../../src/services/registration-store.js";

const CLUSTER = "edge";
const flush = () => new Promise((r) => setImmediate(r));

/** Everything the edge did that a user could notice, in order: settled messages, monitor events, closed pulls. */
type Log = string[];

/**
 * A registration store whose every call must be expected; calls wait until the test
 * answers them. An unexpected call is recorded and throws; `verify()` fails on it.
 */
class StrictStore implements RegistrationStore {
  readonly pending: { op: string; args: unknown[]; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  readonly unexpected: string[] = [];
  private expected: string[] = [];

  expect(...ops: string[]) {
    this.expected.push(...ops);
  }

  verify() {
    assert.equal(this.unexpected, [], "no unexpected store call");
    assert.equal(this.expected, [], "every expected store call was made");
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    const next = this.expected.shift();
    if (next !== op) {
      this.unexpected.push(`${op} (expected ${next ?? "none"})`);
      throw new Error(`unexpected registration store call: ${op} (expected ${next ?? "none"})`);
    }
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, args, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** Answers the oldest unanswered call, which must be `op`. */
  answer(op: string, value: unknown, fail = false) {
    const i = this.pending.findIndex((c) => c.op === op);
    if (i < 0) throw new Error(`no pending ${op} call`);
    const [c] = this.pending.splice(i, 1);
    if (fail) c!.reject(value);
    else c!.resolve(value);
  }

  loadAll(): Promise<StoredRegistration[]> {
    return this.call("loadAll");
  }
  put(registration: Registration): Promise<number> {
    return this.call("put", registration);
  }
  remove(subject: string, revision?: number): Promise<void> {
    return this.call("remove", subject, revision);
  }
}

/** A pulled message that logs how it was settled; settling it twice is a wiring mistake. */
function message(log: Log, subject: string, body: unknown): RegistrationMessage {
  let settled = false;
  const settle = (what: string) => {
    if (settled) throw new Error(`message settled twice (${what})`);
    settled = true;
    log.push(what);
  };
  return {
    subject,
    data: new TextEncoder().encode(JSON.stringify(body)),
    ack: () => settle("ack"),
    nak: (millis?: number) => settle(millis === undefined ? "nak" : `nak ${millis}`),
  };
}

function describeEvent(event: MonitorEvent): string {
  switch (event.type) {
    case "REGISTERED":
      return `monitor REGISTERED ${event.record.registration.subject} revision ${event.record.revision} ${JSON.stringify(event.record.registration.metadata)}`;
    case "UNREGISTERED":
      return `monitor UNREGISTERED ${event.subject}`;
    default:
      return `monitor ${event.type}`;
  }
}

/** An edge with strict fakes around it, pulling registrations. */
async function pullingEdge() {
  const log: Log = [];
  const store = new StrictStore();
  const lease = { valid: true };
  let handle: ((m: RegistrationMessage) => Promise<void>) | undefined;
  const feed: RegistrationFeed = {
    pull: (h) => {
      if (handle) throw new Error("unexpected second pull");
      handle = h;
      return Promise.resolve({
        close: () => {
          log.push("pull closed");
          return Promise.resolve();
        },
      });
    },
  };
  // No ping and no report is expected on the registration path.
  const nc: PresenceConnection = {
    subscribe: (subject) => {
      throw new Error(`unexpected subscription to ${subject}`);
    },
    publish: (subject) => {
      throw new Error(`unexpected publish on ${subject}`);
    },
  };
  const edge = new PresenceEdge({
    nc,
    feed,
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store,
    pingIntervalMs: 750,
    reportEncoding: "json",
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => lease.valid,
    epoch: () => 1,
    isConnected: () => true,
    toMonitor: (event) => log.push(describeEvent(event)),
    maxClients: 100,
  });
  edge.handle({ type: "registrations.pull" });
  await flush();
  if (!handle) throw new Error("the edge did not start pulling");
  const deliver = handle;
  return {
    edge,
    log,
    store,
    lease,
    register: (subject: string, extra: Record<string, unknown> = {}) =>
      deliver(message(log, presenceSubjects.register(CLUSTER), { myPresenceSubject: subject, ...extra })),
    unregister: (subject: string) => deliver(message(log, presenceSubjects.unregister(CLUSTER), { myPresenceSubject: subject })),
  };
}

test("presence edge - a registration whose put is still pending is neither acknowledged nor handed back", async () => {
  const { log, store, register } = await pullingEdge();
  store.expect("put");
  void register("svc.a", { zone: "eu" });
  await flush();
  await flush();
  assert.is(store.pending.length, 1, "the put was sent");
  assert.equal(store.pending[0]!.args[0], { subject: "svc.a", metadata: { zone: "eu" } });
  assert.equal(log, [], "no ack, no nak and nothing for the monitor while the put is pending");
  store.verify();
});

test("presence edge - a put that resolves: the message is acknowledged, then the registration reaches the monitor", async () => {
  const { log, store, register } = await pullingEdge();
  store.expect("put");
  const done = register("svc.a", { zone: "eu" });
  await flush();
  store.answer("put", 7);
  await done;
  assert.equal(log, ["ack", 'monitor REGISTERED svc.a revision 7 {"zone":"eu"}']);
  store.verify();
});

test("presence edge - a put that rejects: the message is handed back after 1000 ms, never acknowledged, the monitor hears nothing", async () => {
  const { log, store, register } = await pullingEdge();
  store.expect("put");
  const done = register("svc.a");
  await flush();
  store.answer("put", new Error("no quorum"), true);
  await done;
  assert.equal(log, ["nak 1000"]);
  store.verify();
});

test("presence edge - the lease invalid when the put resolves: handed back at once, not acknowledged", async () => {
  const { log, store, lease, register } = await pullingEdge();
  store.expect("put");
  const done = register("svc.a");
  await flush();
  lease.valid = false; // the renew deadline passed while the write was in flight
  store.answer("put", 7);
  await done;
  assert.equal(log, ["nak"]);
  store.verify();
});

test("presence edge - leadership ended before the put resolves: handed back at once, not acknowledged", async () => {
  const { edge, log, store, register } = await pullingEdge();
  store.expect("put");
  const done = register("svc.a");
  await flush();
  edge.handle({ type: "monitor.stop" });
  store.answer("put", 7);
  await done;
  assert.equal(log, ["pull closed", "nak"]);
  store.verify();
});

test("presence edge - an unregistration is acknowledged only once the registration is removed, then the monitor hears of it", async () => {
  const { log, store, register, unregister } = await pullingEdge();
  store.expect("put", "remove");
  const registered = register("svc.a");
  await flush();
  store.answer("put", 7);
  await registered;
  const left = unregister("svc.a");
  await flush();
  await flush();
  assert.equal(store.pending.map((c) => [c.op, ...c.args]), [["remove", "svc.a", undefined]]);
  assert.equal(log, ["ack", "monitor REGISTERED svc.a revision 7 {}"], "nothing settled while the remove is pending");
  store.answer("remove", undefined);
  await left;
  assert.equal(log.slice(2), ["ack", "monitor UNREGISTERED svc.a"]);
  store.verify();
});

/** An edge that leads under `lease.epoch` and records what it publishes; a ping is unexpected. */
function publishingEdge(reportEncoding: ReportEncoding) {
  const lease = { valid: true, epoch: 5 };
  const published: { subject: string; data: Uint8Array; encoding?: string; schema?: string }[] = [];
  const nc: PresenceConnection = {
    subscribe: (subject) => {
      throw new Error(`unexpected subscription to ${subject}`);
    },
    publish: (subject, data, opts) => {
      if (opts?.reply !== undefined) throw new Error(`unexpected ping of ${subject}`);
      published.push({
        subject,
        data: data as Uint8Array,
        encoding: opts?.headers?.get(REPORT_HEADERS.encoding),
        schema: opts?.headers?.get(REPORT_HEADERS.schema),
      });
    },
  };
  const feed: RegistrationFeed = { pull: () => Promise.reject(new Error("unexpected pull")) };
  const edge = new PresenceEdge({
    nc,
    feed,
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store: new StrictStore(),
    pingIntervalMs: 750,
    reportEncoding,
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => lease.valid,
    epoch: () => lease.epoch,
    isConnected: () => true,
    toMonitor: () => {
      throw new Error("unexpected monitor event");
    },
    maxClients: 100,
  });
  return { edge, lease, published };
}

const body = (subject: string, type: ClientReport["type"], metadata = { zone: "eu-1" }): ClientReport => ({
  type,
  clientSubject: subject,
  state: type === "NodeDead" ? "dead" : "alive",
  lastSeenMs: 1_795_336_518_000,
  rttMs: 0.75,
  missedPings: type === "NodeDead" ? 7 : 0,
  metadata,
});

test("presence edge - every report goes out with its headers, the leader's fields and a contiguous seq per epoch, as encodeReport writes it", async () => {
  for (const encoding of ["protobuf", "json"] as const) {
    const { edge, lease, published } = publishingEdge(encoding);
    const sent: ClientReport[] = [body("svc.a", "NodePresent"), body("svc.b", "NodePresent"), body("svc.a", "NodeState"), body("svc.b", "NodeState")];
    for (const r of sent) edge.handle({ type: "report.presence", report: r });
    await flush();
    lease.epoch = 9; // a new leadership: seq starts again
    const again: ClientReport[] = [body("svc.a", "NodeState"), body("svc.b", "NodeState", { zone: "us-2" })];
    for (const r of again) edge.handle({ type: "report.presence", report: r });
    await flush();
    const reports = published.map((p) => decodeReport(p.data, p.encoding));
    const expected = [...sent.map((r, i) => ({ r, epoch: 5, seq: i + 1 })), ...again.map((r, i) => ({ r, epoch: 9, seq: i + 1 }))];
    assert.equal(
      reports.map((r) => ({ ...r, ts: 0 })),
      expected.map(({ r, epoch, seq }): Report => ({ ...r, clusterId: CLUSTER, coordinatorId: "c1", epoch, seq, ts: 0 })),
      encoding,
    );
    assert.equal(
      published.map((p) => [p.subject, p.encoding, p.schema]),
      published.map(() => [presenceSubjects.report(CLUSTER), encoding, REPORT_SCHEMA]),
      `${encoding}: subject and headers`,
    );
    published.forEach((p, i) => {
      const { r, epoch, seq } = expected[i]!;
      const report = { ...r, clusterId: CLUSTER, coordinatorId: "c1", epoch, seq, ts: reports[i]!.ts };
      assert.equal(Buffer.from(p.data).toString("hex"), Buffer.from(encodeReport(report, encoding)).toString("hex"), `${encoding}: report ${i} bytes`);
    });
  }
});

test("presence edge - a dead or departed client's cached report fields are dropped, and all of them when monitoring stops", async () => {
  const { edge, published } = publishingEdge("protobuf");
  for (const s of ["svc.a", "svc.b", "svc.c"]) edge.handle({ type: "report.presence", report: body(s, "NodePresent") });
  await flush();
  assert.is(edge.cachedReportClients, 3);
  edge.handle({ type: "report.presence", report: body("svc.a", "NodeDead") });
  edge.handle({ type: "report.presence", report: { ...body("svc.b", "NodeLeft"), state: "left" } });
  await flush();
  assert.is(published.length, 5, "the dead and the departed client are reported");
  assert.is(edge.cachedReportClients, 1, "only svc.c is still cached");
  edge.handle({ type: "monitor.stop" });
  assert.is(edge.cachedReportClients, 0, "nothing cached once monitoring stopped");
});

/**
 * An edge that pings: a connection that takes only pings (a publish with a reply subject and
 * an empty payload) and callback subscriptions, which the test answers as a client would.
 */
function pingingEdge() {
  const log: Log = [];
  const pings: { subject: string; reply: string }[] = [];
  const subscriptions: { subject: string; callback: (err: Error | null, msg: { subject: string; data: Uint8Array }) => void; active: boolean }[] = [];
  const recorded: string[] = [];
  const store = new StrictStore();
  const nc: PresenceConnection = {
    publish: (subject, payload, options) => {
      if (!options?.reply || !(payload instanceof Uint8Array) || payload.length !== 0) throw new Error(`unexpected publish on ${subject}`);
      pings.push({ subject, reply: options.reply });
    },
    subscribe: (subject, options) => {
      const sub = { subject, callback: options.callback, active: true };
      subscriptions.push(sub);
      return { unsubscribe: () => void (sub.active = false) };
    },
  };
  const edge = new PresenceEdge({
    nc,
    feed: { pull: () => Promise.reject(new Error("unexpected pull")) },
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store,
    pingIntervalMs: 60_000,
    reportEncoding: "json",
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => true,
    epoch: () => 1,
    isConnected: () => true,
    toMonitor: (event) => log.push(event.type === "PONG" ? `monitor PONG ${event.subject} rtt ${typeof event.rttMs}` : describeEvent(event)),
    recorder: { record: (e) => void recorded.push(e.kind === "info" && e.what === "ping-failed" ? `ping-failed ${e.subject} ${e.error}` : e.kind) },
    maxClients: 100,
  });
  /** The client answers the i-th ping through whichever subscription listened for it then. */
  const answer = (i: number, sub = subscriptions.find((s) => s.active)!) => sub.callback(null, { subject: pings[i]!.reply, data: new Uint8Array(0) });
  return { edge, log, pings, subscriptions, recorded, store, answer };
}

test("presence edge - a ping is an empty request on the client's subject; its reply reaches the monitor as a PONG", async () => {
  const { edge, log, pings, subscriptions, answer } = pingingEdge();
  edge.handle({ type: "client.ping", subject: "svc.a" });
  edge.handle({ type: "client.ping", subject: "svc.b" });
  await flush();
  assert.equal(pings.map((p) => p.subject), ["svc.a", "svc.b"]);
  assert.is(subscriptions.length, 1, "one subscription for all replies");
  assert.match(subscriptions[0]!.subject, /^_INBOX\.[^.]+\.\*$/);
  answer(1);
  answer(0);
  assert.equal(log, ["monitor PONG svc.b rtt number", "monitor PONG svc.a rtt number"]);
});

test("presence edge - after monitoring stops, a reply to its pings is no PONG and the reply subscription is gone", async () => {
  const { edge, log, pings, subscriptions, answer } = pingingEdge();
  edge.handle({ type: "client.ping", subject: "svc.a" });
  await flush();
  const old = subscriptions[0]!;
  edge.handle({ type: "monitor.stop" });
  assert.is(old.active, false, "unsubscribed when monitoring stopped");
  edge.handle({ type: "client.ping", subject: "svc.a" }); // the next leadership
  await flush();
  assert.is(pings.length, 2);
  answer(0, old);
  assert.equal(log, [], "the earlier leadership's reply is dropped");
  answer(1);
  assert.equal(log, ["monitor PONG svc.a rtt number"]);
});

test("presence edge - a ping superseded by the next one is recorded as ping-failed and its reply is no PONG", async () => {
  const { edge, log, recorded, answer } = pingingEdge();
  edge.handle({ type: "client.ping", subject: "svc.a" });
  await flush();
  edge.handle({ type: "client.ping", subject: "svc.a" });
  await flush();
  assert.equal(recorded, ["ping-failed svc.a superseded"]);
  answer(0);
  assert.equal(log, []);
  answer(1);
  assert.equal(log, ["monitor PONG svc.a rtt number"]);
});

test("presence edge - the reply of a client found dead is no PONG", async () => {
  const { edge, log, store, answer } = pingingEdge();
  store.expect("remove");
  edge.handle({ type: "client.ping", subject: "svc.a" });
  await flush();
  edge.handle({ type: "registration.remove", subject: "svc.a", revision: 3 });
  answer(0);
  assert.equal(log, []);
  store.verify();
});

test.run();
