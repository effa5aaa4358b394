import { test } from "uvu";
import * as assert from "uvu/assert";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { MAX_PARTITIONS } from "../../src/protocol/partition.js";
import {
  decodeReport,
  encodeReport,
  parseRegistration,
  RegistrationError,
  ReportDecodeError,
  type RegistrationRefusal,
  type Report,
} from "../../src/protocol/presence.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const reg = (o: unknown) => bytes(JSON.stringify(o));

test("registration - good inputs are accepted and extra fields kept as metadata", () => {
  const good: [Uint8Array, string, Record<string, unknown>][] = [
    [reg({ myPresenceSubject: "svc.a" }), "svc.a", {}],
    [reg({ myPresenceSubject: "a" }), "a", {}],
    [
      reg({ myPresenceSubject: "fleet.eu-1.node_7", zone: "eu-1", tags: ["x"], n: 3 }),
      "fleet.eu-1.node_7",
      { zone: "eu-1", tags: ["x"], n: 3 },
    ],
    [reg({ myPresenceSubject: "ünïcode.subject" }), "ünïcode.subject", {}],
    [reg({ myPresenceSubject: "x".repeat(256) }), "x".repeat(256), {}],
    [reg({ myPresenceSubject: "a$b.c" }), "a$b.c", {}],
  ];
  for (const [data, subject, metadata] of good) {
    const r = parseRegistration(data);
    assert.is(r.subject, subject);
    assert.equal(r.metadata, metadata);
  }
});

test("registration - subjects that only look like a coordinator namespace are accepted", () => {
  for (const subject of ["presence", "coordinator", "presences.a", "coordinators.a", "svc.presence.register.prod", "Presence.a"]) {
    assert.is(parseRegistration(reg({ myPresenceSubject: subject })).subject, subject);
  }
});

test("registration - bad inputs are refused with a reason", () => {
  const bad: [Uint8Array, RegistrationRefusal][] = [
    [bytes("not json"), "not-json"],
    [new Uint8Array([0xff, 0xfe, 0x7b]), "not-json"],
    [reg([1, 2]), "not-an-object"],
    [reg("svc.a"), "not-an-object"],
    [reg(null), "not-an-object"],
    [reg({}), "missing-subject"],
    [reg({ myPresenceSubject: 42 }), "missing-subject"],
    [reg({ myPresenceSubject: "" }), "empty-subject"],
    [reg({ myPresenceSubject: "svc.*" }), "wildcard"],
    [reg({ myPresenceSubject: "svc.>" }), "wildcard"],
    [reg({ myPresenceSubject: "svc a" }), "whitespace"],
    [reg({ myPresenceSubject: "svc.a\t" }), "whitespace"],
    [reg({ myPresenceSubject: "svc..a" }), "empty-token"],
    [reg({ myPresenceSubject: ".svc" }), "empty-token"],
    [reg({ myPresenceSubject: "svc." }), "empty-token"],
    [reg({ myPresenceSubject: "$SYS.x" }), "reserved-prefix"],
    [reg({ myPresenceSubject: "_INBOX.abc" }), "reserved-prefix"],
    [reg({ myPresenceSubject: "presence.register.prod" }), "coordinator-subject"],
    [reg({ myPresenceSubject: "presence.query.list.prod" }), "coordinator-subject"],
    [reg({ myPresenceSubject: "presence.node-1" }), "coordinator-subject"],
    [reg({ myPresenceSubject: "coordinator.leader.heartbeat.prod" }), "coordinator-subject"],
    [reg({ myPresenceSubject: "x".repeat(257) }), "too-long"],
    [reg({ myPresenceSubject: "svc.a", pad: "x".repeat(64 * 1024) }), "too-large"],
  ];
  for (const [data, reason] of bad) {
    try {
      parseRegistration(data);
      assert.unreachable(`expected ${reason}`);
    } catch (err) {
      assert.instance(err, RegistrationError);
      assert.is((err as RegistrationError).reason, reason, new TextDecoder().decode(data.slice(0, 60)));
    }
  }
});

const sample: Report = {
  type: "NodeSuspect",
  clusterId: "prod",
  coordinatorId: "c1",
  epoch: 4_294_967_301,
  seq: 17,
  ts: 1_795_336_520_123,
  clientSubject: "svc.worker.3",
  state: "suspect",
  lastSeenMs: 1_795_336_518_000,
  rttMs: 1.25,
  missedPings: 2,
  metadata: { zone: "eu-1", nested: { a: [1, true, null] } },
};

test("report - protobuf and JSON encodings round-trip every field", () => {
  for (const encoding of ["protobuf", "json"] as const) {
    assert.equal(decodeReport(encodeReport(sample, encoding), encoding), sample, encoding);
  }
  const json = JSON.parse(new TextDecoder().decode(encodeReport(sample, "json"))) as Record<string, unknown>;
  assert.is(json.clientSubject, "svc.worker.3", "JSON uses the camelCase field names");
  assert.is(json.epoch, 4_294_967_301, "numbers stay JSON numbers");
  assert.ok(encodeReport(sample, "protobuf").byteLength < encodeReport(sample, "json").byteLength);
});

/**
 * `sample` as the coordinator published it before reports had a partition (commit bf263f3):
 * a cluster of one partition must go on writing exactly this.
 */
const SAMPLE_BEFORE_PARTITIONS = {
  protobuf:
    "0a0b4e6f646553757370656374120470726f641a026331208580808010281130bb839593a0343a0c7376632e776f726b65722e334207737573706563744" +
    "8f0f29493a03451000000000000f43f5802623a0a0e0a047a6f6e6512061a0465752d310a280a066e6573746564121e2a1c0a1a0a0161121532130a09" +
    "11000000000000f03f0a0220010a020800",
  json:
    '{"type":"NodeSuspect","clusterId":"prod","coordinatorId":"c1","epoch":4294967301,"seq":17,"ts":1795336520123,' +
    '"clientSubject":"svc.worker.3","state":"suspect","lastSeenMs":1795336518000,"rttMs":1.25,"missedPings":2,' +
    '"metadata":{"zone":"eu-1","nested":{"a":[1,true,null]}}}',
} as const;
const hex = (data: Uint8Array) => Buffer.from(data).toString("hex");
const wire = (data: Uint8Array, encoding: "protobuf" | "json") => (encoding === "json" ? new TextDecoder().decode(data) : hex(data));

test("report - partition 0 is the wire from before the field: no field 13 in protobuf, no key in JSON", () => {
  for (const encoding of ["protobuf", "json"] as const) {
    const before = SAMPLE_BEFORE_PARTITIONS[encoding];
    assert.is(wire(encodeReport(sample, encoding), encoding), before, `${encoding}: no partition`);
    assert.is(wire(encodeReport({ ...sample, partition: 0 }, encoding), encoding), before, `${encoding}: partition 0`);
    assert.is(wire(encodeReport({ partition: 0, ...sample }, encoding), encoding), before, `${encoding}: partition 0, first key`);
    const back = decodeReport(encodeReport({ ...sample, partition: 0 }, encoding), encoding);
    assert.equal(back, sample, `${encoding}: decodes without a partition`);
    assert.not.ok("partition" in back, `${encoding}: no partition key at 0`);
  }
});

test("report - a nonzero partition round-trips in both encodings, as the last field after the partition-0 wire", () => {
  for (const partition of [1, 55, MAX_PARTITIONS - 1]) {
    for (const encoding of ["protobuf", "json"] as const) {
      const report: Report = { ...sample, partition };
      assert.equal(decodeReport(encodeReport(report, encoding), encoding), report, `${encoding}: partition ${partition}`);
      // Wherever the object holds the key, it is written last.
      const first = encodeReport({ partition, ...sample }, encoding);
      assert.is(wire(first, encoding), wire(encodeReport(report, encoding), encoding), `${encoding}: key order`);
    }
    // What an old consumer reads: today's report, then one field it does not know.
    const field13 = hex(
      new BinaryWriter()
        .uint32((13 << 3) | WireType.Varint)
        .uint32(partition)
        .finish(),
    );
    assert.is(hex(encodeReport({ ...sample, partition }, "protobuf")), SAMPLE_BEFORE_PARTITIONS.protobuf + field13);
    assert.is(
      new TextDecoder().decode(encodeReport({ ...sample, partition }, "json")),
      `${SAMPLE_BEFORE_PARTITIONS.json.slice(0, -1)},"partition":${partition}}`,
    );
  }
});

test("report - a partition that is no partition is refused: on decode with ReportDecodeError, on encode with RangeError", () => {
  const isDecodeError = (err: unknown) => err instanceof ReportDecodeError && /report: .*partition/.test(err.message);
  const partition0 = encodeReport(sample, "protobuf");
  for (const bad of [MAX_PARTITIONS, MAX_PARTITIONS + 1, 2 ** 32 - 1]) {
    const field13 = new BinaryWriter()
      .uint32((13 << 3) | WireType.Varint)
      .uint32(bad)
      .finish();
    assert.throws(() => decodeReport(new Uint8Array([...partition0, ...field13]), "protobuf"), isDecodeError, `protobuf ${bad}`);
  }
  for (const bad of [MAX_PARTITIONS, 2 ** 32 - 1, -1, 1.5, '"x"', "true"]) {
    const text = `${SAMPLE_BEFORE_PARTITIONS.json.slice(0, -1)},"partition":${bad}}`;
    assert.throws(() => decodeReport(bytes(text), "json"), isDecodeError, `json ${bad}`);
  }
  for (const bad of [MAX_PARTITIONS, -1, 1.5, Number.NaN]) {
    for (const encoding of ["protobuf", "json"] as const) {
      assert.throws(
        () => encodeReport({ ...sample, partition: bad }, encoding),
        (err: unknown) => err instanceof RangeError && /report: partition must be a whole number from 0 to 1023/.test(err.message),
        `${encoding} ${bad}`,
      );
    }
  }
});

test("report - garbage and unknown encodings fail with a typed error", () => {
  for (const [data, encoding] of [
    [new Uint8Array([0xff, 0xff, 0xff]), "protobuf"],
    [bytes("{"), "json"],
    [bytes("{}"), "xml"],
    [bytes(JSON.stringify({ ...sample, type: "NodeExploded" })), "json"],
  ] as const) {
    assert.throws(() => decodeReport(data, encoding), /report:/);
  }
});

test.run();
