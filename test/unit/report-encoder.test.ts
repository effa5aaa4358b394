/**
 * The per-client report encoder against the generated one (`encodeReport`): for runs of
 * random reports through one encoder (clients reporting again and again, registering again
 * with new metadata, leaderships changing epoch, the encoder serving partition 0 or another),
 * what it writes decodes field for field to what `encodeReport` writes, and is the same bytes.
 */
import fc from "fast-check";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromBinary, type JsonObject } from "@bufbuild/protobuf";
import { PresenceReportSchema } from "../../src/protocol/gen/presence/v1/report_pb.js";
import { MAX_PARTITIONS } from "../../src/protocol/partition.js";
import {
  CLIENT_STATES,
  decodeReport,
  encodeReport,
  REPORT_TYPES,
  type ClientReport,
  type Report,
  type ReportEncoding,
} from "../../src/protocol/presence.js";
import { createReportEncoder } from "../../src/protocol/report-encoder.js";

const ENCODINGS = ["protobuf", "json"] as const satisfies readonly ReportEncoding[];

/** Integers around the edges that matter to varints: 0, one byte, 2^32, up to 2^53. */
const unsigned = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 127 }),
  fc.integer({ min: 2 ** 32 - 2, max: 2 ** 32 + 2 }),
  // Above 2^32 the low 28 bits go first: values whose low bits are all 0 or all 1, and times.
  fc.constantFrom(2 ** 33, 2 ** 35, 2 ** 35 - 1, 2 ** 52, Number.MAX_SAFE_INTEGER, 1_795_336_518_000),
  fc.integer({ min: 1_700_000_000_000, max: 2_000_000_000_000 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const signed = fc.oneof(unsigned, fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }));
const text = fc.oneof(fc.constant(""), fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 12 }));
const metadata: fc.Arbitrary<JsonObject> = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== "__proto__"),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 3 },
) as fc.Arbitrary<JsonObject>;

/** One step of a run: a report from one of a few clients, under one of a few epochs. */
const step = fc.record({
  client: fc.integer({ min: 0, max: 3 }),
  /** Registered again: a new metadata object (possibly equal to the old one). */
  reregistered: fc.boolean(),
  newMetadata: metadata,
  epoch: fc.oneof(fc.constantFrom(1, 2 ** 32 + 5), unsigned),
  seq: unsigned,
  ts: signed,
  type: fc.constantFrom(...REPORT_TYPES),
  state: fc.constantFrom(...CLIENT_STATES),
  lastSeenMs: signed,
  rttMs: fc.oneof(fc.constantFrom(0, -0, 0.5, 1.25, NaN, Infinity), fc.double()),
  missedPings: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
  /** The key its batch gives it: few, so that clients share them (a key whose slot was reused), or none (-1). */
  key: fc.oneof(fc.integer({ min: -1, max: 4 }), fc.constantFrom(0.5, 2 ** 22 + 1, 2 ** 40)),
  /** Forgotten (dead or left) just before its batch. */
  forgotten: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
});
/** The encoder's partition: 0 (one partition, no field on the wire) about half the time. */
const partition = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_PARTITIONS - 1 }), fc.constantFrom(1, 127, 128));
const run = fc.record({
  encoding: fc.constantFrom(...ENCODINGS),
  clusterId: text,
  coordinatorId: text,
  partition,
  // "" is no valid subject, but the encoder leaves an empty string out as the generated one does.
  subjects: fc.uniqueArray(fc.oneof(fc.constant(""), fc.stringMatching(/^[A-Za-z0-9_-]{1,8}(\.[A-Za-z0-9_é-]{1,8}){0,3}$/)), {
    minLength: 4,
    maxLength: 4,
  }),
  initial: fc.array(metadata, { minLength: 4, maxLength: 4 }),
  steps: fc.array(step, { minLength: 1, maxLength: 25 }),
});

/**
 * The report as the publisher builds it for `encodeReport`: the body, then what the leader
 * adds; the partition only when it is not 0, as decodeReport gives it.
 */
function published(
  body: ClientReport,
  clusterId: string,
  coordinatorId: string,
  epoch: number,
  seq: number,
  ts: number,
  partition = 0,
): Report {
  return { ...body, clusterId, coordinatorId, epoch, seq, ts, ...(partition === 0 ? {} : { partition }) };
}

type Run = typeof run extends fc.Arbitrary<infer T> ? T : never;

type Step = Run["steps"][number];

/** The report body of each step of `r`, in order: a step registered again brings its new metadata object. */
function clientBodies(r: Run): (s: Step) => ClientReport {
  const meta = [...r.initial];
  return (s) => {
    if (s.reregistered) meta[s.client] = s.newMetadata;
    return {
      type: s.type,
      clientSubject: r.subjects[s.client]!,
      state: s.state,
      lastSeenMs: s.lastSeenMs,
      rttMs: s.rttMs,
      missedPings: s.missedPings,
      metadata: meta[s.client]!,
    };
  };
}

/** Feeds every step of `r` through one encoder; calls `check` with the fast and the slow bytes. */
function replayRun(r: Run, check: (fast: Uint8Array, slow: Uint8Array, report: Report) => void) {
  const encoder = createReportEncoder(r.encoding, r.clusterId, r.coordinatorId, r.partition);
  const bodyOf = clientBodies(r);
  for (const s of r.steps) {
    const body = bodyOf(s);
    const report = published(body, r.clusterId, r.coordinatorId, s.epoch, s.seq, s.ts, r.partition);
    check(encoder.encode(body, s.epoch, s.seq, s.ts), encodeReport(report, r.encoding), report);
  }
}

test("report encoder - what the fast path writes decodes field for field to the generated encoder's report, in both encodings", () => {
  fc.assert(
    fc.property(run, (r) =>
      replayRun(r, (fast, slow, report) => {
        const decoded = decodeReport(fast, r.encoding);
        assert.equal(decoded, decodeReport(slow, r.encoding), "decodeReport: fast = slow");
        // -0 comes back as 0 through JSON, NaN and Infinity as null; everything else as published.
        if (Number.isFinite(report.rttMs)) {
          assert.equal(decoded, JSON.parse(JSON.stringify(report)) as Report, "decodeReport: the report published");
        }
        if (r.encoding === "protobuf") {
          assert.equal(fromBinary(PresenceReportSchema, fast), fromBinary(PresenceReportSchema, slow), "fromBinary: fast = slow");
        }
      }),
    ),
    { numRuns: 500 },
  );
});

test("report encoder - the fast path writes the same bytes as the generated encoder, in both encodings", () => {
  fc.assert(
    fc.property(run, (r) =>
      replayRun(r, (fast, slow) => {
        assert.equal(Buffer.from(fast).toString("hex"), Buffer.from(slow).toString("hex"));
      }),
    ),
    { numRuns: 500 },
  );
});

/**
 * Feeds the steps of `r` through one encoder in batches of `sizes` (cycled): each batch under
 * its first step's epoch and ts, with seqs counting up from its first step's seq.
 */
function replayBatches(r: Run, sizes: number[], check: (fast: Uint8Array, slow: Uint8Array, report: Report) => void, withKeys = false) {
  const encoder = createReportEncoder(r.encoding, r.clusterId, r.coordinatorId, r.partition);
  const bodyOf = clientBodies(r);
  const done: { payload: Uint8Array; report: Report }[] = [];
  let at = 0;
  for (let b = 0; at < r.steps.length; b++) {
    const steps = r.steps.slice(at, at + sizes[b % sizes.length]!);
    at += steps.length;
    const { epoch, ts } = steps[0]!;
    const firstSeq = Math.min(steps[0]!.seq, Number.MAX_SAFE_INTEGER - steps.length);
    const bodies = steps.map(bodyOf);
    if (withKeys) for (const s of steps) if (s.forgotten) encoder.forget(r.subjects[s.client]!);
    const encoded = encoder.encodeAll(bodies, epoch, firstSeq, ts, withKeys ? steps.map((s) => s.key) : undefined);
    assert.is(encoded.length, bodies.length, "one payload per report");
    for (const [i, body] of bodies.entries()) {
      done.push({ payload: encoded[i]!, report: published(body, r.clusterId, r.coordinatorId, epoch, firstSeq + i, ts, r.partition) });
    }
  }
  // Checked once every batch is written: a payload is still queued to be sent while later
  // batches are encoded, so no batch may write over an earlier one's bytes.
  for (const { payload, report } of done) check(payload, encodeReport(report, r.encoding), report);
}

test("report encoder - a batch gives every report the bytes the generated encoder writes for it, in both encodings", () => {
  fc.assert(
    fc.property(run, fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }), (r, sizes) =>
      replayBatches(r, sizes, (fast, slow, report) => {
        assert.equal(Buffer.from(fast).toString("hex"), Buffer.from(slow).toString("hex"));
        assert.equal(decodeReport(fast, r.encoding), decodeReport(slow, r.encoding), `seq ${report.seq}`);
      }),
    ),
    { numRuns: 500 },
  );
});

test("report encoder - with the clients' keys, however they collide or go stale, every report gets the generated encoder's bytes", () => {
  fc.assert(
    fc.property(run, fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }), (r, sizes) =>
      replayBatches(
        r,
        sizes,
        (fast, slow, report) => {
          assert.equal(Buffer.from(fast).toString("hex"), Buffer.from(slow).toString("hex"), `seq ${report.seq}`);
        },
        true,
      ),
    ),
    { numRuns: 1000 },
  );
  // Two clients on one key in one batch, then a client's new metadata on its old key.
  for (const encoding of ENCODINGS) {
    const encoder = createReportEncoder(encoding, "prod", "c1");
    const a: ClientReport = {
      type: "NodeState",
      clientSubject: "svc.a",
      state: "alive",
      lastSeenMs: 5,
      rttMs: 0.5,
      missedPings: 0,
      metadata: { zone: "eu" },
    };
    const b: ClientReport = { ...a, clientSubject: "svc.b", metadata: { zone: "us" } };
    const a2: ClientReport = { ...a, metadata: { zone: "ap" } };
    const got = encoder.encodeAll([a, b, a, a2, b], 7, 1, 10, [3, 3, 3, 3, 3]).map((p) => decodeReport(p, encoding));
    assert.equal(
      got.map((g) => `${g.clientSubject} ${JSON.stringify(g.metadata)}`),
      ['svc.a {"zone":"eu"}', 'svc.b {"zone":"us"}', 'svc.a {"zone":"eu"}', 'svc.a {"zone":"ap"}', 'svc.b {"zone":"us"}'],
      encoding,
    );
    assert.is(encoder.cachedClients, 2, `${encoding}: one cached part per client`);
    // Clients may share one metadata object (the takeover rehearsal's made-up clients do).
    const c: ClientReport = { ...a2, clientSubject: "svc.c" };
    const shared = encoder.encodeAll([a2, c], 7, 6, 10, [4, 4]).map((p) => decodeReport(p, encoding).clientSubject);
    assert.equal(shared, ["svc.a", "svc.c"], `${encoding}: the same metadata on one key is still another client`);
    encoder.forget("svc.a");
    encoder.forget("svc.b");
    encoder.forget("svc.c");
    assert.is(encoder.cachedClients, 0, `${encoding}: forgotten, by key as well`);
  }
});

/** A NodeSuspect as the coordinator published it before reports had a partition (commit bf263f3), one encoder's output per encoding. */
const SUSPECT: ClientReport = {
  type: "NodeSuspect",
  clientSubject: "svc.worker.3",
  state: "suspect",
  lastSeenMs: 1_795_336_518_000,
  rttMs: 1.25,
  missedPings: 2,
  metadata: { zone: "eu-1", nested: { a: [1, true, null] } },
};
const SUSPECT_BEFORE_PARTITIONS = {
  protobuf:
    "0a0b4e6f646553757370656374120470726f641a026331208580808010281130bb839593a0343a0c7376632e776f726b65722e334207737573706563744" +
    "8f0f29493a03451000000000000f43f5802623a0a0e0a047a6f6e6512061a0465752d310a280a066e6573746564121e2a1c0a1a0a0161121532130a09" +
    "11000000000000f03f0a0220010a020800",
  json:
    '{"type":"NodeSuspect","clientSubject":"svc.worker.3","state":"suspect","lastSeenMs":1795336518000,"rttMs":1.25,' +
    '"missedPings":2,"metadata":{"zone":"eu-1","nested":{"a":[1,true,null]}},"clusterId":"prod","coordinatorId":"c1",' +
    '"epoch":4294967301,"seq":17,"ts":1795336520123}',
} as const;
const wire = (data: Uint8Array, encoding: ReportEncoding) =>
  encoding === "json" ? new TextDecoder().decode(data) : Buffer.from(data).toString("hex");

test("report encoder - at partition 0, the default, it writes exactly what it wrote before reports had a partition", () => {
  for (const encoding of ENCODINGS) {
    const before = SUSPECT_BEFORE_PARTITIONS[encoding];
    for (const encoder of [createReportEncoder(encoding, "prod", "c1"), createReportEncoder(encoding, "prod", "c1", 0)]) {
      assert.is(wire(encoder.encode(SUSPECT, 4_294_967_301, 17, 1_795_336_520_123), encoding), before, `${encoding}: one`);
      const [, batched] = encoder.encodeAll([SUSPECT, SUSPECT], 4_294_967_301, 16, 1_795_336_520_123, [0, 0]);
      assert.is(wire(batched!, encoding), before, `${encoding}: in a batch, by key`);
    }
  }
});

test("report encoder - a partition's encoder writes its partition last in every report, as the generated encoder does", () => {
  for (const encoding of ENCODINGS) {
    for (const partition of [1, 55, 128, MAX_PARTITIONS - 1]) {
      const encoder = createReportEncoder(encoding, "prod", "c1", partition);
      const report: Report = {
        ...SUSPECT,
        clusterId: "prod",
        coordinatorId: "c1",
        epoch: 4_294_967_301,
        seq: 17,
        ts: 1_795_336_520_123,
        partition,
      };
      const fast = encoder.encode(SUSPECT, 4_294_967_301, 17, 1_795_336_520_123);
      assert.is(wire(fast, encoding), wire(encodeReport(report, encoding), encoding), `${encoding} ${partition}: encodeReport's bytes`);
      assert.equal(decodeReport(fast, encoding), report, `${encoding} ${partition}: decodes with its partition`);
      // Cached parts, shared metadata and a batch on keys carry it too.
      const other: ClientReport = { ...SUSPECT, clientSubject: "svc.worker.4", type: "NodeState", state: "alive", missedPings: 0 };
      const batch = encoder.encodeAll([other, SUSPECT, other], 4_294_967_301, 18, 1_795_336_520_124, [1, 0, 1]);
      const decoded = batch.map((p) => decodeReport(p, encoding));
      assert.equal(
        decoded.map((d) => [d.clientSubject, d.seq, d.partition]),
        [
          ["svc.worker.4", 18, partition],
          ["svc.worker.3", 19, partition],
          ["svc.worker.4", 20, partition],
        ],
        `${encoding} ${partition}: in a batch`,
      );
      if (encoding === "json") {
        assert.ok(wire(fast, encoding).endsWith(`"ts":1795336520123,"partition":${partition}}`), `json ${partition}: the last key`);
      } else {
        // Today's report, then field 13: what a consumer without the field reads is the rest.
        assert.ok(wire(fast, encoding).startsWith(SUSPECT_BEFORE_PARTITIONS.protobuf), `protobuf ${partition}: today's bytes first`);
      }
    }
  }
});

test("report encoder - a partition that is no partition is refused when the encoder is made", () => {
  for (const encoding of ENCODINGS) {
    for (const bad of [-1, 1.5, MAX_PARTITIONS, Number.NaN]) {
      assert.throws(
        () => createReportEncoder(encoding, "prod", "c1", bad),
        (err: unknown) => err instanceof RangeError && /report encoder: partition must be a whole number from 0 to 1023/.test(err.message),
        `${encoding} ${bad}`,
      );
    }
  }
});

test("report encoder - a report it cannot encode fails alone: the encoder goes on with the next", () => {
  const encoder = createReportEncoder("protobuf", "prod", "c1");
  const good: ClientReport = {
    type: "NodeState",
    clientSubject: "svc.a",
    state: "alive",
    lastSeenMs: 5,
    rttMs: 0.5,
    missedPings: 0,
    metadata: {},
  };
  // A fraction is no integer field's value: the generated encoder refuses it too.
  assert.throws(() => encoder.encodeAll([good, { ...good, lastSeenMs: 1.5 }], 7, 1, 10));
  assert.throws(() =>
    encodeReport({ ...good, lastSeenMs: 1.5, clusterId: "prod", coordinatorId: "c1", epoch: 7, seq: 1, ts: 10 }, "protobuf"),
  );
  const [after] = encoder.encodeAll([good], 7, 3, 10);
  assert.equal(decodeReport(after!, "protobuf"), { ...good, clusterId: "prod", coordinatorId: "c1", epoch: 7, seq: 3, ts: 10 });
  assert.equal(decodeReport(encoder.encode(good, 7, 4, 10), "protobuf").seq, 4);
});

test("report encoder - a client registered again with new metadata is reported with the new metadata, not the cached one", () => {
  for (const encoding of ENCODINGS) {
    const encoder = createReportEncoder(encoding, "prod", "c1");
    const body: ClientReport = {
      type: "NodeState",
      clientSubject: "svc.a",
      state: "alive",
      lastSeenMs: 1_795_336_518_000,
      rttMs: 0.5,
      missedPings: 0,
      metadata: { zone: "eu-1" },
    };
    assert.equal(decodeReport(encoder.encode(body, 7, 1, 1_795_336_520_000), encoding).metadata, { zone: "eu-1" }, encoding);
    const again = { ...body, type: "NodePresent" as const, metadata: { zone: "us-2" } };
    const after = decodeReport(encoder.encode(again, 7, 2, 1_795_336_521_000), encoding);
    assert.equal([after.type, after.metadata, after.seq], ["NodePresent", { zone: "us-2" }, 2], encoding);
    const next = decodeReport(encoder.encode(body, 9, 1, 1_795_336_522_000), encoding);
    assert.equal([next.epoch, next.seq, next.metadata], [9, 1, { zone: "eu-1" }], `${encoding}: a new epoch`);
    assert.is(encoder.cachedClients, 1, encoding);
    encoder.forget("svc.a");
    assert.is(encoder.cachedClients, 0, `${encoding}: forgotten`);
  }
});

test("report encoder - clients whose metadata reads the same as JSON each get the generated encoder's bytes, -0 and Infinity included", () => {
  // Metadata encodings are shared by JSON text, where -0 reads as 0 and Infinity as null: they must not be shared.
  const infinite = JSON.parse('{"n":1e400}') as JsonObject;
  const metadatas: JsonObject[] = [
    {},
    {},
    { zone: "eu-1", n: 0 },
    { zone: "eu-1", n: -0 },
    { zone: "eu-1", n: 0 },
    { n: [-0, 1] },
    { n: [0, 1] },
    { zone: "eu-1", n: -0 },
    { n: null },
    infinite,
    { n: null },
    infinite,
  ];
  for (const encoding of ENCODINGS) {
    const encoder = createReportEncoder(encoding, "prod", "c1");
    metadatas.forEach((metadata, i) => {
      const body: ClientReport = {
        type: "NodePresent",
        clientSubject: `svc.${i}`,
        state: "alive",
        lastSeenMs: 1_795_336_518_000,
        rttMs: 0,
        missedPings: 0,
        metadata,
      };
      const fast = encoder.encode(body, 7, i + 1, 1_795_336_520_000);
      const slow = encodeReport({ ...body, clusterId: "prod", coordinatorId: "c1", epoch: 7, seq: i + 1, ts: 1_795_336_520_000 }, encoding);
      assert.equal(Buffer.from(fast).toString("hex"), Buffer.from(slow).toString("hex"), `${encoding}: client ${i}`);
    });
    if (encoding === "protobuf") {
      const n = (i: number) =>
        fromBinary(
          PresenceReportSchema,
          encoder.encode(
            {
              type: "NodeState",
              clientSubject: `svc.${i}`,
              state: "alive",
              lastSeenMs: 1,
              rttMs: 0,
              missedPings: 0,
              metadata: metadatas[i]!,
            },
            7,
            20,
            2,
          ),
        ).metadata?.n;
      assert.ok(Object.is(n(3), -0) && Object.is(n(4), 0), "-0 and 0 stay apart");
      assert.ok(n(8) === null && n(9) === Infinity && n(10) === null, "null and Infinity stay apart");
    }
  }
});

test.run();
