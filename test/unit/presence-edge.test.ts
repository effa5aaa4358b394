/**
 * The presence edge with strict fakes (no NATS): a registration store whose calls wait until
 * the test answers them, registration messages that record how they were settled, a
 * connection, feed and metrics sink that fail on any call nobody expected. Pings go out per
 * `clients.ping` command; their replies reach the monitor only in the one SWEEP that answers
 * a `replies.collect`, after the I/O of that turn of the event loop.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { ReplyFact } from "../../src/machines/liveness.js";
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
import { createLogger } from "../../src/observe/logger.js";
import type { MetricsSink } from "../../src/observe/metrics.js";
import { PresenceEdge, type PresenceConnection } from "../../src/presence/presence-edge.js";
import type { RegistrationMessage, RegistrationStore, StoredRegistration } from "../../src/presence/registration-store.js";
import { STALL_THRESHOLD_MS, STALL_WARN_MS, stallThresholdMs } from "../../src/presence/stall-credit.js";

const CLUSTER = "edge";
const flush = () => new Promise((r) => setImmediate(r));
/** The end of the current turn's synchronous work: what the edge sends at the end of a turn has gone out. */
const microtask = () => new Promise<void>((r) => queueMicrotask(r));

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
  /** Pulling the stream is not expected unless a test sets its own pull. */
  pull: RegistrationStore["pull"] = () => Promise.reject(new Error("unexpected pull"));
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
  store.pull = (h) => {
    if (handle) throw new Error("unexpected second pull");
    handle = h;
    return Promise.resolve({
      close: () => {
        log.push("pull closed");
        return Promise.resolve();
      },
    });
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
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store,
    sweepIntervalMs: 50,
    deadTimeoutMs: 5000,
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

/** Each subject's key, as a shard gives it: one per subject, kept across commands. */
const keys = new Map<string, number>();
const keyOf = (subject: string): number => keys.get(subject) ?? keys.set(subject, keys.size * 3 + 1).get(subject)!;
/** A shard's clients.ping for these subjects, with their keys. */
const pingCommand = (subjects: string[]) => ({ type: "clients.ping" as const, subjects, keys: subjects.map(keyOf) });
/** A shard's reports.state for these reports, with their clients' keys. */
const statesCommand = (reports: ClientReport[]) => ({
  type: "reports.state" as const,
  reports,
  keys: reports.map((r) => keyOf(r.clientSubject)),
});

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
  assert.equal(
    store.pending.map((c) => [c.op, ...c.args]),
    [["remove", "svc.a", undefined]],
  );
  assert.equal(log, ["ack", "monitor REGISTERED svc.a revision 7 {}"], "nothing settled while the remove is pending");
  store.answer("remove", undefined);
  await left;
  assert.equal(log.slice(2), ["ack", "monitor UNREGISTERED svc.a"]);
  store.verify();
});

/** An edge that leads under `lease.epoch` and records what it publishes; a ping is unexpected. */
function publishingEdge(reportEncoding: ReportEncoding, partition?: number) {
  /** `afterPublish`: runs after each report is published (a lease that runs out in a batch). */
  const lease: { valid: boolean; epoch: number; afterPublish?: () => void } = { valid: true, epoch: 5 };
  const published: { subject: string; data: Uint8Array; encoding?: string; schema?: string }[] = [];
  const sweeps: MonitorEvent[] = [];
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
      lease.afterPublish?.();
    },
  };
  const edge = new PresenceEdge({
    nc,
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store: new StrictStore(),
    sweepIntervalMs: 50,
    deadTimeoutMs: 5000,
    reportEncoding,
    ...(partition !== undefined ? { partition } : {}),
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => lease.valid,
    epoch: () => lease.epoch,
    isConnected: () => true,
    toMonitor: (event) => {
      if (event.type !== "SWEEP") throw new Error(`unexpected monitor event ${event.type}`);
      sweeps.push(event);
    },
    maxClients: 100,
  });
  return { edge, lease, published, sweeps };
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
    const sent: ClientReport[] = [
      body("svc.a", "NodePresent"),
      body("svc.b", "NodePresent"),
      body("svc.a", "NodeState"),
      body("svc.b", "NodeState"),
    ];
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
      assert.equal(
        Buffer.from(p.data).toString("hex"),
        Buffer.from(encodeReport(report, encoding)).toString("hex"),
        `${encoding}: report ${i} bytes`,
      );
    });
  }
});

test("presence edge - an edge given a partition stamps it on every report, as encodeReport writes it; 0 is no partition", async () => {
  for (const encoding of ["protobuf", "json"] as const) {
    const sent = [body("svc.a", "NodePresent"), body("svc.a", "NodeState"), body("svc.b", "NodeState")];
    const bytesOf = async (partition?: number) => {
      const { edge, published } = publishingEdge(encoding, partition);
      edge.handle({ type: "report.presence", report: sent[0]! });
      edge.handle(statesCommand(sent.slice(1)));
      await flush();
      return published.map((p) => p.data);
    };
    const stamped = await bytesOf(55);
    const reports = stamped.map((data) => decodeReport(data, encoding));
    assert.equal(
      reports.map((r) => [r.type, r.clientSubject, r.partition]),
      [
        ["NodePresent", "svc.a", 55],
        ["NodeState", "svc.a", 55],
        ["NodeState", "svc.b", 55],
      ],
      encoding,
    );
    sent.forEach((r, i) => {
      const report: Report = { ...r, clusterId: CLUSTER, coordinatorId: "c1", epoch: 5, seq: i + 1, ts: reports[i]!.ts, partition: 55 };
      assert.is(Buffer.from(stamped[i]!).toString("hex"), Buffer.from(encodeReport(report, encoding)).toString("hex"), `${encoding}: ${i}`);
    });
    // Partition 0, given or not: the same reports with no partition at all (ts aside).
    const without = reports.map(({ partition: _, ...r }) => ({ ...r, ts: 0 }));
    const unstamped = [...(await bytesOf()), ...(await bytesOf(0))].map((data) => ({ ...decodeReport(data, encoding), ts: 0 }));
    assert.equal(unstamped, [...without, ...without], `${encoding}: partition 0`);
  }
});

test("presence edge - the reports of a turn are published in that turn, once, after the commands that queued them", async () => {
  const { edge, published } = publishingEdge("json");
  edge.handle({ type: "report.presence", report: body("svc.a", "NodePresent") });
  edge.handle(statesCommand([body("svc.a", "NodeState"), body("svc.b", "NodeState")]));
  assert.is(published.length, 0, "not while the machines may still queue more");
  await new Promise<void>((r) => queueMicrotask(r));
  // Before any later turn of the event loop: a busy leader's next turn may be tens of ms away.
  assert.equal(
    published.map((p) => decodeReport(p.data, p.encoding).type),
    ["NodePresent", "NodeState", "NodeState"],
  );
  await flush();
  assert.is(published.length, 3, "and not again");
});

test("presence edge - a turn sends its lifecycle reports first, then its pings, then its NodeStates", async () => {
  // A sweep of 50,000 clients sends thousands of pings and NodeStates: a NodeDead behind them would be late by that much.
  const wire: string[] = [];
  const nc: PresenceConnection = {
    subscribe: () => ({ unsubscribe: () => undefined }),
    publish: (subject, data, opts) => {
      if (opts?.reply !== undefined) return void wire.push(`ping ${subject}`);
      const r = decodeReport(data as Uint8Array, opts?.headers?.get(REPORT_HEADERS.encoding));
      wire.push(`${r.seq} ${r.type} ${r.clientSubject}`);
    },
  };
  const edge = new PresenceEdge({
    nc,
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store: new StrictStore(),
    sweepIntervalMs: 50,
    deadTimeoutMs: 5000,
    reportEncoding: "json",
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => true,
    epoch: () => 1,
    isConnected: () => true,
    toMonitor: () => undefined,
    maxClients: 100,
  });
  // As two shards' sweeps queue them: each its states, its pings, and a verdict of one of its clients.
  edge.handle(statesCommand([body("svc.a", "NodeState")]));
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  edge.handle({ type: "report.presence", report: { ...body("svc.c", "NodeSuspect"), state: "suspect" } });
  edge.handle(statesCommand([body("svc.d", "NodeState")]));
  edge.handle(pingCommand(["svc.d"]));
  edge.handle({ type: "report.presence", report: body("svc.e", "NodeDead") });
  assert.equal(wire, [], "nothing while the machines may still queue more");
  await microtask();
  assert.equal(wire, [
    "1 NodeSuspect svc.c",
    "2 NodeDead svc.e",
    "ping svc.a",
    "ping svc.b",
    "ping svc.d",
    "3 NodeState svc.a",
    "4 NodeState svc.d",
  ]);
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

test("presence edge - reports.state publishes its reports in order after the turn's lifecycle reports, in one seq with them, and withheld ones take no seq", async () => {
  const { edge, lease, published } = publishingEdge("json");
  edge.handle({ type: "report.presence", report: body("svc.a", "NodePresent") });
  edge.handle(statesCommand([body("svc.c", "NodeState"), body("svc.a", "NodeState"), body("svc.b", "NodeState")]));
  edge.handle({ type: "report.presence", report: { ...body("svc.b", "NodeSuspect"), state: "suspect" } });
  edge.handle(statesCommand([]));
  await flush();
  const seen = () => published.map((p) => decodeReport(p.data, p.encoding)).map((r) => `${r.seq} ${r.type} ${r.clientSubject}`);
  assert.equal(seen(), ["1 NodePresent svc.a", "2 NodeSuspect svc.b", "3 NodeState svc.c", "4 NodeState svc.a", "5 NodeState svc.b"]);
  lease.valid = false;
  edge.handle(statesCommand([body("svc.a", "NodeState"), body("svc.b", "NodeState")]));
  await flush();
  assert.is(published.length, 5, "nothing goes out while the lease is not valid");
  lease.valid = true;
  edge.handle(statesCommand([body("svc.b", "NodeState"), body("svc.a", "NodeState")]));
  await flush();
  assert.equal(seen().slice(5), ["6 NodeState svc.b", "7 NodeState svc.a"], "seq goes on with no gap for the withheld reports");
});

test("presence edge - a lease that runs out in the middle of a turn's reports stops them there: the rest are withheld and take no seq", async () => {
  for (const encoding of ["protobuf", "json"] as const) {
    const { edge, lease, published } = publishingEdge(encoding);
    const seen = () => published.map((p) => decodeReport(p.data, p.encoding)).map((r) => `${r.seq} ${r.type} ${r.clientSubject}`);
    lease.afterPublish = () => {
      if (published.length === 2) lease.valid = false; // the renew deadline passes while the batch goes out
    };
    edge.handle({ type: "report.presence", report: body("svc.a", "NodePresent") });
    edge.handle({ type: "report.presence", report: body("svc.b", "NodePresent") });
    edge.handle(statesCommand([body("svc.a", "NodeState")]));
    edge.handle({ type: "report.presence", report: { ...body("svc.c", "NodeSuspect"), state: "suspect" } });
    edge.handle(statesCommand([body("svc.d", "NodeState")]));
    await flush();
    assert.equal(seen(), ["1 NodePresent svc.a", "2 NodePresent svc.b"], `${encoding}: nothing after the lease ran out`);
    lease.afterPublish = undefined;
    lease.valid = true; // the lease check succeeded: this leadership goes on
    edge.handle({ type: "report.presence", report: body("svc.e", "NodePresent") });
    await flush();
    assert.equal(
      seen().slice(2),
      ["3 NodeSuspect svc.c", "4 NodePresent svc.e"],
      `${encoding}: the held lifecycle report goes out first, with the next seq; the NodeState is not sent late`,
    );
  }
});

test("presence edge - a report that cannot be encoded fails alone: the rest of its turn goes out, and it takes its seq", async () => {
  const { edge, published } = publishingEdge("protobuf");
  const seen = () => published.map((p) => decodeReport(p.data, p.encoding)).map((r) => `${r.seq} ${r.type} ${r.clientSubject}`);
  // A fraction is no integer field's value: the generated encoder refuses it too.
  edge.handle(statesCommand([body("svc.a", "NodeState"), { ...body("svc.b", "NodeState"), lastSeenMs: 1.5 }, body("svc.c", "NodeState")]));
  await flush();
  assert.equal(seen(), ["1 NodeState svc.a", "3 NodeState svc.c"]);
  edge.handle({ type: "report.presence", report: body("svc.d", "NodePresent") });
  await flush();
  assert.equal(seen().at(-1), "4 NodePresent svc.d", "the encoder goes on with the next turn");
});

test("presence edge - lifecycle reports that could not go out are published in order once the lease is valid again; NodeState is not; a leadership that ends drops them", async () => {
  const { edge, lease, published } = publishingEdge("json");
  const seen = () => published.map((p) => decodeReport(p.data, p.encoding)).map((r) => `${r.seq} ${r.type} ${r.clientSubject}`);
  lease.valid = false;
  edge.handle({ type: "report.presence", report: body("svc.a", "NodePresent") });
  edge.handle(statesCommand([body("svc.a", "NodeState")]));
  edge.handle({ type: "report.presence", report: { ...body("svc.b", "NodeDead"), state: "dead" } });
  await flush();
  assert.equal(seen(), [], "nothing goes out while the lease is unsure");
  lease.valid = true; // the lease check succeeded: this leadership goes on
  edge.handle({ type: "report.presence", report: body("svc.c", "NodePresent") });
  await flush();
  assert.equal(
    seen(),
    ["1 NodePresent svc.a", "2 NodeDead svc.b", "3 NodePresent svc.c"],
    "held ones first, in order; the withheld NodeState is not sent late",
  );
  lease.valid = false;
  edge.handle({ type: "report.presence", report: { ...body("svc.c", "NodeSuspect"), state: "suspect" } });
  await flush();
  edge.handle({ type: "monitor.stop" }); // the check failed: the leadership ended
  lease.valid = true;
  edge.handle({ type: "report.presence", report: body("svc.d", "NodePresent") });
  await flush();
  assert.equal(seen().slice(3), ["4 NodePresent svc.d"], "a held report of an ended leadership is never published");
});

test("presence edge - held lifecycle reports go out at the next sweep once the lease is valid, without waiting for a newer report", async () => {
  const { edge, lease, published } = publishingEdge("json");
  lease.valid = false;
  edge.handle({ type: "report.presence", report: { ...body("svc.b", "NodeDead"), state: "dead" } });
  await flush();
  lease.valid = true;
  edge.handle({ type: "replies.collect" });
  await flush();
  assert.equal(
    published.map((p) => decodeReport(p.data, p.encoding).type),
    ["NodeDead"],
  );
});

test("presence edge - a new leader hands stored registrations over in chunks, each stamped when it is handed over", async () => {
  const store = new StrictStore();
  store.expect("loadAll");
  const events: MonitorEvent[] = [];
  const edge = new PresenceEdge({
    nc: {
      subscribe: (subject) => {
        throw new Error(`unexpected subscription to ${subject}`);
      },
      publish: (subject) => {
        throw new Error(`unexpected publish on ${subject}`);
      },
    },
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store,
    sweepIntervalMs: 50,
    deadTimeoutMs: 5000,
    reportEncoding: "json",
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, done) => done() }) }),
    leaseIsValid: () => true,
    epoch: () => 1,
    isConnected: () => true,
    toMonitor: (event) => {
      events.push(event);
      // Spawning a chunk's client actors takes time: the next chunk comes that much later.
      const until = performance.now() + 30;
      while (performance.now() < until);
    },
    maxClients: 10,
  });
  edge.handle({ type: "registrations.load" });
  const stored = Array.from({ length: 4500 }, (_, i) => ({ registration: { subject: `svc.s${i}`, metadata: {} }, revision: i + 1 }));
  store.answer("loadAll", stored);
  for (let i = 0; i < 10 && events.at(-1)?.type !== "REGISTRATIONS_LOADED"; i++) await flush();
  store.verify();
  assert.equal(
    events.map((e) => e.type),
    ["REGISTRATIONS_CHUNK", "REGISTRATIONS_CHUNK", "REGISTRATIONS_LOADED"],
  );
  const records = events.flatMap((e) => ("records" in e ? e.records : []));
  assert.equal(
    records.map((r) => r.registration.subject),
    stored.map((s) => s.registration.subject),
    "every stored client, once, in order, past --max-clients too",
  );
  const stamps = events.map((e) => ("records" in e ? e.records[0]!.atMs : 0));
  assert.ok(
    stamps[1]! - stamps[0]! >= 25 && stamps[2]! - stamps[1]! >= 25,
    `a chunk is stamped when handed over, not when the load began: ${stamps.map((t) => t - stamps[0]!).join(", ")} ms`,
  );
  edge.handle({ type: "monitor.stop" });
});

/** What the edge told the metrics, in order; a call nobody expects on this path throws. */
function strictMetrics(calls: string[]): MetricsSink {
  const unexpected = (what: string) => () => {
    throw new Error(`unexpected metrics call: ${what}`);
  };
  return {
    electionTransition: unexpected("electionTransition"),
    reportPublished: unexpected("reportPublished"),
    registrationError: unexpected("registrationError"),
    pingSent: (count?: number) => void calls.push(`pingSent ${count}`),
    pingFailed: () => void calls.push("pingFailed"),
    pingReplied: (rttMs: number) => void calls.push(`pingReplied ${typeof rttMs}`),
    sweepStalled: (stalledMs: number) => void calls.push(`sweepStalled ${stalledMs}`),
  };
}

type Sweep = Extract<MonitorEvent, { type: "SWEEP" }>;

/** Holds the event loop for `ms` after `from` (performance.now()): what a long GC or a CPU-bound callback does. */
function blockUntil(from: number, ms: number): void {
  while (performance.now() - from < ms) {
    // busy: no timer, no I/O and no callback runs meanwhile
  }
}

/**
 * An edge that pings: a connection that takes only pings (a publish with a reply subject and
 * an empty payload) and one callback subscription at a time, which the test answers as a
 * client would. Counts how often the lease and the connection are checked; keeps what the
 * monitor, the recorder, the metrics and the log (warnings and up) were told.
 */
function pingingEdge(sweepIntervalMs = 50, deadTimeoutMs = 5000, pingIntervalMs?: number) {
  const sweeps: Sweep[] = [];
  const pings: { subject: string; reply: string }[] = [];
  const subscriptions: {
    subject: string;
    callback: (err: Error | null, msg: { subject: string; data: Uint8Array }) => void;
    active: boolean;
  }[] = [];
  const recorded: string[] = [];
  const metrics: string[] = [];
  const logged: Record<string, unknown>[] = [];
  const checks = { lease: 0, connected: 0 };
  const state: { leaseValid: boolean; connected: boolean; losses: number; onLeaseCheck?: () => void } = {
    leaseValid: true,
    connected: true,
    losses: 0,
  };
  const store = new StrictStore();
  const nc: PresenceConnection = {
    publish: (subject, payload, options) => {
      if (!options?.reply || !(payload instanceof Uint8Array) || payload.length !== 0) throw new Error(`unexpected publish on ${subject}`);
      pings.push({ subject, reply: options.reply });
    },
    subscribe: (subject, options) => {
      if (subscriptions.some((s) => s.active)) throw new Error(`unexpected second subscription (${subject})`);
      const sub = { subject, callback: options.callback, active: true };
      subscriptions.push(sub);
      return {
        unsubscribe: () => {
          if (!sub.active) throw new Error(`unexpected second unsubscribe of ${subject}`);
          sub.active = false;
        },
      };
    },
  };
  const stream = new Writable({
    write: (chunk: Buffer, _e, done) => {
      for (const line of chunk.toString().split("\n")) if (line) logged.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const edge = new PresenceEdge({
    nc,
    clusterId: CLUSTER,
    coordinatorId: "c1",
    store,
    sweepIntervalMs,
    deadTimeoutMs,
    ...(pingIntervalMs !== undefined ? { pingIntervalMs } : {}),
    reportEncoding: "json",
    logger: createLogger({ format: "json", verbose: false, stream }),
    leaseIsValid: () => {
      checks.lease++;
      state.onLeaseCheck?.();
      return state.leaseValid;
    },
    epoch: () => 1,
    isConnected: () => {
      checks.connected++;
      return state.connected;
    },
    connectionLosses: () => state.losses,
    toMonitor: (event) => {
      if (event.type !== "SWEEP") throw new Error(`unexpected monitor event ${event.type}`);
      sweeps.push(event);
    },
    recorder: {
      record: (e) => void recorded.push(e.kind === "info" && e.what === "ping-failed" ? `ping-failed ${e.subject} ${e.error}` : e.kind),
    },
    metrics: strictMetrics(metrics),
    maxClients: 100,
  });
  /** The client answers the i-th ping through whichever subscription listened for it then. */
  const answer = (i: number, sub = subscriptions.find((s) => s.active)!) =>
    sub.callback(null, { subject: pings[i]!.reply, data: new Uint8Array(0) });
  const collect = () => edge.handle({ type: "replies.collect" });
  return { edge, sweeps, pings, subscriptions, recorded, metrics, logged, checks, state, store, answer, collect };
}

const subjectsOf = (replies: readonly ReplyFact[]) => replies.map((r) => r.subject);

test("presence edge - clients.ping sends each subject an empty request with a reply under one inbox, checking the lease once per command", async () => {
  const { edge, pings, subscriptions, checks, metrics } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b", "svc.c"]));
  assert.equal(pings, [], "not while the machines may still queue more");
  await microtask();
  assert.equal(
    pings.map((p) => p.subject),
    ["svc.a", "svc.b", "svc.c"],
    "sent in the same turn, in order",
  );
  assert.is(subscriptions.length, 1, "one subscription for all replies");
  const [, inbox] = /^(_INBOX\.[^.]+)\.\*$/.exec(subscriptions[0]!.subject) ?? [];
  assert.ok(inbox, `a wildcard under an inbox: ${subscriptions[0]!.subject}`);
  assert.ok(
    pings.every((p) => new RegExp(`^${inbox!.replace(".", "\\.")}\\.\\d+$`).test(p.reply)),
    "each reply subject: the inbox and a number",
  );
  assert.is(new Set(pings.map((p) => p.reply)).size, 3, "a reply subject per ping");
  assert.equal(checks, { lease: 1, connected: 1 }, "the lease and the connection checked once for the command, not per subject");
  edge.handle(pingCommand(["svc.d"]));
  await microtask();
  assert.equal(checks, { lease: 2, connected: 2 });
  assert.is(subscriptions.length, 1, "the next command pings through the same subscription");
  assert.equal(metrics, ["pingSent 3", "pingSent 1"]);
});

test("presence edge - clients.ping sends nothing while the lease is not valid or the connection is down", async () => {
  const { edge, pings, subscriptions, state, metrics } = pingingEdge();
  state.leaseValid = false;
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  state.leaseValid = true;
  state.connected = false;
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  assert.equal(pings, [], "no ping");
  assert.equal(subscriptions, [], "not even the reply subscription");
  assert.equal(metrics, [], "nothing counted as sent");
  state.connected = true;
  edge.handle(pingCommand(["svc.b"]));
  await microtask();
  assert.equal(
    pings.map((p) => p.subject),
    ["svc.b"],
  );
  assert.equal(metrics, ["pingSent 1"]);
});

test("presence edge - replies reach the monitor only in the one SWEEP that answers replies.collect, all of them, once", async () => {
  const { edge, sweeps, answer, collect, metrics } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b", "svc.c"]));
  await microtask();
  // Machine times come from a monotonic clock anchored at process start: within a few ms of the wall clock here.
  const before = Date.now() - 20;
  answer(1);
  answer(0);
  await flush();
  await flush();
  assert.equal(sweeps, [], "no event per reply");
  collect();
  assert.equal(sweeps, [], "not before this turn's I/O is read");
  await flush();
  const after = Date.now() + 20;
  assert.is(sweeps.length, 1);
  const sweep = sweeps[0]!;
  assert.equal(subjectsOf(sweep.replies), ["svc.b", "svc.a"], "every reply read since the last sweep, in the order read");
  assert.equal(
    sweep.replies.map((r) => r.key),
    [keyOf("svc.b"), keyOf("svc.a")],
    "each reply brings back the key its ping carried",
  );
  for (const r of sweep.replies) {
    assert.ok(r.atMs >= before && r.atMs <= after, "a reply's atMs: when it was read");
    assert.ok(r.rttMs >= 0 && Number.isFinite(r.rttMs));
  }
  assert.ok(sweep.atMs >= before && sweep.atMs <= after);
  assert.is(sweep.stalledMs, 0, "the first sweep of a leadership follows no stall");
  assert.equal(metrics, ["pingSent 3", "pingReplied number", "pingReplied number"]);
  // Handed over once: the next sweep brings only what was read since.
  answer(2);
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => subjectsOf(s.replies)),
    [["svc.b", "svc.a"], ["svc.c"]],
  );
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => subjectsOf(s.replies)),
    [["svc.b", "svc.a"], ["svc.c"], []],
    "a sweep with nothing read is still answered",
  );
});

test("presence edge - a reply read after the ask but in the same turn (later in the callback, a tick, a microtask) is in that SWEEP", async () => {
  const { edge, sweeps, answer, collect } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b", "svc.c"]));
  await microtask();
  await new Promise<void>((resolve) =>
    setTimeout(() => {
      collect();
      process.nextTick(() => answer(1));
      queueMicrotask(() => answer(2));
      answer(0);
      resolve();
    }, 1),
  );
  await flush(); // queued after the edge's own: runs once the SWEEP is out
  assert.is(sweeps.length, 1);
  assert.equal(subjectsOf(sweeps[0]!.replies), ["svc.a", "svc.b", "svc.c"], "nothing read in the turn waits for the next sweep");
});

test("presence edge - a reply waiting in a socket when the sweep timer fires is read before the SWEEP goes out", async () => {
  const { edge, sweeps, answer, collect } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  // A real socket pair (a Unix socket, no NATS): what is written to one end is in the other's
  // receive queue at once, and Node reads it in the poll phase of the loop's next turn.
  const dir = mkdtempSync(join(tmpdir(), "presence-edge-"));
  const server = createServer();
  const sockets: Socket[] = [];
  try {
    await new Promise<void>((resolve) => server.listen(join(dir, "replies.sock"), resolve));
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    const reader = connect(join(dir, "replies.sock"));
    sockets.push(reader);
    await new Promise((resolve) => reader.once("connect", resolve));
    const writer = await accepted;
    sockets.push(writer);
    reader.on("data", (chunk: Buffer) => {
      for (const i of chunk) answer(i); // each byte: the index of the ping a client answers
    });
    await new Promise<void>((resolve) =>
      setTimeout(() => {
        // The timers phase: the reply is in the socket, unread, when the sweep is asked for.
        writer.write(Buffer.from([1, 0]));
        collect();
        resolve();
      }, 1),
    );
    await flush(); // queued after the edge's own: runs once the SWEEP is out
    assert.is(sweeps.length, 1);
    assert.equal(subjectsOf(sweeps[0]!.replies), ["svc.b", "svc.a"], "the replies in the socket were read before the SWEEP");
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("presence edge - pings in flight when the connection was lost go back to the shards, and their late replies count for nothing", async () => {
  const { edge, sweeps, answer, collect, state, logged } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b", "svc.c"]));
  await microtask();
  answer(0); // svc.a answered before the connection was lost
  collect();
  await flush();
  assert.equal(subjectsOf(sweeps[0]!.replies), ["svc.a"]);
  assert.is(sweeps[0]!.unsent, undefined, "nothing lost yet");
  state.losses += 1; // lost and back between two sweeps (a server of the cluster stopped)
  answer(1); // a reply to a ping sent before the loss, read after it
  collect();
  await flush();
  assert.equal(sweeps[1]!.unsent, ["svc.c"], "the unanswered ping goes back: it proves nothing");
  assert.equal(subjectsOf(sweeps[1]!.replies), ["svc.b"], "a reply read before the sweep still counts");
  answer(2); // svc.c's reply comes after all: its ping was abandoned
  collect();
  await flush();
  assert.equal(subjectsOf(sweeps[2]!.replies), [], "a reply to an abandoned ping counts for nothing");
  assert.is(sweeps[2]!.unsent, undefined, "and each loss gives its pings back once");
  assert.ok(logged.some((l) => String(l.message) === "the NATS connection was lost: 1 unanswered pings are sent again"));
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - a second ask in the same turn brings no second SWEEP", async () => {
  const { edge, sweeps, answer, collect } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  collect();
  answer(0);
  collect();
  answer(1);
  await flush();
  await flush();
  assert.equal(
    sweeps.map((s) => subjectsOf(s.replies)),
    [["svc.a", "svc.b"]],
    "one SWEEP answers both asks",
  );
  collect();
  await flush();
  assert.is(sweeps.length, 2, "an ask of the next turn is answered again");
});

test("presence edge - after monitor.stop no SWEEP of the old leadership is delivered and its replies are dropped", async () => {
  const { edge, sweeps, subscriptions, answer, collect } = pingingEdge();
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  const old = subscriptions[0]!;
  answer(0); // read, waiting for the sweep
  collect();
  edge.handle({ type: "monitor.stop" }); // leadership ends before the SWEEP goes out
  assert.is(old.active, false, "unsubscribed when monitoring stopped");
  answer(1, old); // a reply the client library had queued for the old subscription
  await flush();
  await flush();
  assert.equal(sweeps, [], "no SWEEP for a monitor that is gone");
  // The next leadership: its first SWEEP has only its own replies.
  edge.handle(pingCommand(["svc.c"]));
  await microtask();
  assert.is(subscriptions.length, 2, "a fresh reply subscription");
  answer(1, old);
  answer(2);
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => subjectsOf(s.replies)),
    [["svc.c"]],
  );
});

test("presence edge - a ping superseded by the next one is recorded as ping-failed and its reply is in no SWEEP", async () => {
  const { edge, sweeps, recorded, metrics, answer, collect } = pingingEdge();
  edge.handle(pingCommand(["svc.a"]));
  edge.handle(pingCommand(["svc.a"]));
  await microtask();
  assert.equal(recorded, ["ping-failed svc.a superseded"]);
  assert.equal(metrics, ["pingSent 1", "pingFailed", "pingSent 1"]);
  answer(0);
  collect();
  await flush();
  assert.equal(subjectsOf(sweeps[0]!.replies), [], "the superseded ping's reply");
  answer(1);
  collect();
  await flush();
  assert.equal(subjectsOf(sweeps[1]!.replies), ["svc.a"], "the latest ping's reply");
});

test("presence edge - the reply of a client found dead is in no SWEEP", async () => {
  const { edge, sweeps, store, recorded, answer, collect } = pingingEdge();
  store.expect("remove");
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  edge.handle({ type: "registration.remove", subject: "svc.a", revision: 3 });
  assert.equal(
    store.pending.map((c) => [c.op, ...c.args]),
    [["remove", "svc.a", 3]],
  );
  answer(0);
  answer(1);
  collect();
  await flush();
  assert.equal(subjectsOf(sweeps[0]!.replies), ["svc.b"]);
  assert.equal(recorded, [], "a forgotten ping is not a failed one");
  store.verify();
});

const INTERVAL_MS = 50;

test("presence edge - the stall threshold is a third of the ping interval, between 100 and 250 ms", async () => {
  assert.equal([undefined, 150, 300, 600, 750, 5000].map(stallThresholdMs), [100, 100, 100, 200, 250, 250]);
  // Default timings: a sweep 200 ms late is a busy leader, not a stall; 300 ms late is one.
  const { sweeps, metrics, collect } = pingingEdge(INTERVAL_MS, 5000, 750);
  collect();
  await flush();
  let askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS + 200);
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => s.stalledMs),
    [0, 0],
    "200 ms late: no credit",
  );
  askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS + 300);
  collect();
  await flush();
  assert.ok(sweeps[2]!.stalledMs >= 280, `300 ms late is a stall: ${sweeps[2]!.stalledMs}`);
  assert.equal(metrics, [`sweepStalled ${sweeps[2]!.stalledMs}`]);
});

test("presence edge - a sweep asked for late after a stall says how long, warns and counts it; one on time says 0", async () => {
  const { edge, sweeps, metrics, logged, collect } = pingingEdge(INTERVAL_MS);
  let askedAt = performance.now();
  collect();
  await flush();
  askedAt = performance.now();
  collect(); // on time: one turn after the last
  await flush();
  // A little late, but less than the threshold: the SWEEP comes after the replies were read anyway.
  blockUntil(askedAt, INTERVAL_MS + STALL_THRESHOLD_MS / 2);
  askedAt = performance.now();
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => s.stalledMs),
    [0, 0, 0],
  );
  assert.equal(metrics, [], "no stall counted");
  // The event loop is held for three thresholds past the interval.
  blockUntil(askedAt, INTERVAL_MS + 3 * STALL_THRESHOLD_MS);
  collect();
  await flush();
  const stalledMs = sweeps[3]!.stalledMs;
  // Measured between two SWEEPs, each sent a little after its ask: within a few ms of the hold.
  assert.ok(stalledMs >= 3 * STALL_THRESHOLD_MS - 20, `stalledMs ${stalledMs}: about what the loop was held past the interval`);
  assert.equal(metrics, [`sweepStalled ${stalledMs}`]);
  const stallLines = logged.filter((l) => String(l.message).startsWith("event loop stalled"));
  assert.equal(
    stallLines.map(({ level, component, message, stalledMs }) => ({ level, component, message, stalledMs })),
    [{ level: "info", component: "monitor", message: `event loop stalled ${stalledMs} ms; verdicts deferred`, stalledMs }],
    "a stall shorter than STALL_WARN_MS is logged at info",
  );
  assert.equal(
    logged.filter((l) => l.level === "warn"),
    [],
    "and is no warning",
  );
  collect(); // on time again
  await flush();
  assert.is(sweeps[4]!.stalledMs, 0);
  assert.equal(metrics, [`sweepStalled ${stalledMs}`], "counted once");
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - a stall that begins while a SWEEP is being made is credited, whatever point it begins at", async () => {
  // A SIGSTOP or a long GC can begin at any instruction. Here the event loop is held inside
  // the SWEEP's own making (in its lease check): the time held must be either before the
  // SWEEP's time and in its stall, or after its time and in the next SWEEP's stall. Never
  // unaccounted for: a SWEEP stamped after a stall that says 0 judges every client on a
  // deadline the stall spent, and once reported every answering client dead.
  const { edge, sweeps, state, collect } = pingingEdge(INTERVAL_MS);
  const heldMs = 3 * STALL_THRESHOLD_MS;
  collect();
  await flush();
  let askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS);
  state.onLeaseCheck = () => {
    state.onLeaseCheck = undefined;
    blockUntil(performance.now(), heldMs);
  };
  collect();
  await flush();
  askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS);
  collect();
  await flush();
  assert.is(sweeps.length, 3);
  const unaccounted = sweeps.slice(1).map((s, i) => s.atMs - sweeps[i]!.atMs - s.stalledMs - INTERVAL_MS);
  for (const [i, ms] of unaccounted.entries()) {
    assert.ok(
      ms <= STALL_THRESHOLD_MS + 1,
      `SWEEP ${i + 1}: ${ms} ms since the last SWEEP is neither the interval nor in its stall (stalls ${sweeps.map((s) => s.stalledMs).join(", ")})`,
    );
  }
  assert.ok(
    sweeps[1]!.stalledMs + sweeps[2]!.stalledMs >= heldMs - 20,
    `the hold is credited: stalls ${sweeps.map((s) => s.stalledMs).join(", ")}`,
  );
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - the first sweep of a new leadership follows no stall, however long ago the last one was", async () => {
  const { edge, sweeps, metrics, logged, collect } = pingingEdge(INTERVAL_MS);
  const askedAt = performance.now();
  collect();
  await flush();
  edge.handle({ type: "monitor.stop" });
  blockUntil(askedAt, INTERVAL_MS + 3 * STALL_THRESHOLD_MS);
  collect();
  await flush();
  assert.equal(
    sweeps.map((s) => s.stalledMs),
    [0, 0],
  );
  assert.equal(metrics, []);
  assert.equal(
    logged.filter((l) => l.level === "warn"),
    [],
  );
});

test("presence edge - stall credit is capped at half of 6 dead timeouts: a leader late on every sweep still judges", async () => {
  // Dead timeout 200/3 ms: within any 400 ms, at most 200 ms of stall is credited.
  const { edge, sweeps, metrics, logged, collect } = pingingEdge(INTERVAL_MS, 200 / 3);
  let askedAt = performance.now();
  collect();
  await flush();
  askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS + 3 * STALL_THRESHOLD_MS);
  collect();
  await flush();
  assert.is(sweeps[1]!.stalledMs, 200, "credited up to the cap, not the whole stall");
  askedAt = performance.now();
  blockUntil(askedAt, INTERVAL_MS + 2 * STALL_THRESHOLD_MS);
  collect();
  await flush();
  assert.is(sweeps[2]!.stalledMs, 0, "the credit of this window is used up: verdicts are not deferred");
  assert.equal(metrics, ["sweepStalled 200"]);
  const lines = logged
    .filter((l) => String(l.message).startsWith("event loop stalled"))
    .map((l) => `${String(l.level)} ${String(l.message)}`);
  assert.is(lines.length, 2);
  assert.match(lines[0]!, /^info event loop stalled \d+ ms; verdicts deferred$/);
  assert.match(
    lines[1]!,
    /^warn event loop stalled \d+ ms; stall credit used up, verdicts not deferred$/,
    "judging on after a stall is a warning",
  );
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - while no ping can go out (lease unsure, NATS down) every sweep defers, without a stall warning", async () => {
  const { edge, sweeps, state, logged, metrics, collect } = pingingEdge(INTERVAL_MS);
  collect();
  await flush();
  state.leaseValid = false;
  collect();
  await flush();
  state.leaseValid = true;
  state.connected = false;
  collect();
  await flush();
  state.connected = true;
  collect();
  await flush();
  assert.is(sweeps[0]!.stalledMs, 0);
  assert.ok(sweeps[1]!.stalledMs > 0, "lease unsure: the time since the last sweep is not observed");
  assert.ok(sweeps[2]!.stalledMs > 0, "disconnected: likewise");
  assert.is(sweeps[3]!.stalledMs, 0, "judging again once pings can go out");
  // The same cap as a stall's: with the credit used up, an unsure leader judges on.
  const capped = pingingEdge(INTERVAL_MS, 5);
  capped.collect();
  await flush();
  blockUntil(performance.now(), 60);
  capped.state.leaseValid = false;
  capped.collect();
  await flush();
  assert.ok(
    capped.sweeps[1]!.stalledMs > 0 && capped.sweeps[1]!.stalledMs <= 15,
    `credited up to half of 6 dead timeouts (${capped.sweeps[1]!.stalledMs})`,
  );
  capped.collect(); // at once: the credit of the last 30 ms is used up
  await flush();
  capped.collect();
  await flush();
  assert.is(capped.sweeps[3]!.stalledMs, 0, "the cap is used up");
  capped.edge.handle({ type: "monitor.stop" });
  assert.equal(metrics, [], "no event-loop stall counted");
  assert.equal(
    logged.filter((l) => String(l.message).startsWith("event loop stalled")),
    [],
  );
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - a stall of STALL_WARN_MS or more is a warning", async () => {
  const { edge, sweeps, logged, collect } = pingingEdge(INTERVAL_MS);
  const askedAt = performance.now();
  collect();
  await flush();
  blockUntil(askedAt, INTERVAL_MS + STALL_WARN_MS + 50);
  collect();
  await flush();
  assert.ok(sweeps[1]!.stalledMs >= STALL_WARN_MS);
  const warnings = logged.filter((l) => l.level === "warn").map((l) => String(l.message));
  assert.equal(warnings, [`event loop stalled ${sweeps[1]!.stalledMs} ms; verdicts deferred`]);
  edge.handle({ type: "monitor.stop" });
});

test("presence edge - pings not sent (lease unsure, disconnected, publish failed) go back to the shards in the next SWEEP", async () => {
  const { edge, sweeps, pings, state, collect } = pingingEdge();
  state.leaseValid = false;
  edge.handle(pingCommand(["svc.a", "svc.b"]));
  await microtask();
  state.leaseValid = true;
  state.connected = false;
  edge.handle(pingCommand(["svc.c"]));
  await microtask();
  state.connected = true;
  edge.handle(pingCommand(["svc.d"]));
  await microtask();
  assert.equal(
    pings.map((p) => p.subject),
    ["svc.d"],
  );
  collect();
  await flush();
  assert.equal(sweeps[0]!.unsent, ["svc.a", "svc.b", "svc.c"], "every ping asked for and not sent, once");
  collect();
  await flush();
  assert.is(sweeps[1]!.unsent, undefined, "handed over once");
  edge.handle({ type: "monitor.stop" });
});

test.run();
