import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  decodeReport,
  encodeReport,
  parseRegistration,
  RegistrationError,
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
