/**
 * Property-based tests (fast-check) of what arrives from the network: registrations, presence
 * reports in both encodings, and heartbeats. Arbitrary bytes must never escape a parser as
 * anything but its own typed error, and what we encode must decode to itself.
 */
import fc from "fast-check";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { JsonObject } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { parseHeartbeat, WireFormatError } from "../../src/protocol/election.js";
import { MAX_PARTITIONS } from "../../src/protocol/partition.js";
import {
  CLIENT_STATES,
  decodeReport,
  encodeReport,
  MAX_SUBJECT_LENGTH,
  COORDINATOR_SUBJECT_PREFIXES,
  parseRegistration,
  RegistrationError,
  REPORT_TYPES,
  ReportDecodeError,
  type Report,
} from "../../src/protocol/presence.js";

const STATES = CLIENT_STATES;
const bytes = fc.uint8Array({ maxLength: 512 });
/** Bytes that are mostly JSON-looking, so the parsers get past their first check. */
const jsonish = fc.oneof(
  bytes,
  fc.json().map((s) => new TextEncoder().encode(s)),
  fc
    .record({ myPresenceSubject: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) })
    .map((o) => new TextEncoder().encode(JSON.stringify(o))),
);

const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const validSubject = fc
  .array(token, { minLength: 1, maxLength: 6 })
  .map((t) => t.join("."))
  .filter(
    (s) =>
      s.length <= MAX_SUBJECT_LENGTH &&
      !s.startsWith("$") &&
      !s.startsWith("_INBOX.") &&
      !COORDINATOR_SUBJECT_PREFIXES.some((p) => s.startsWith(p)),
  );
const metadata: fc.Arbitrary<JsonObject> = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== "myPresenceSubject" && k !== "__proto__"),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 4 },
) as fc.Arbitrary<JsonObject>;

test("fuzz - any bytes on the registration subject give a registration or a RegistrationError, never anything else", () => {
  fc.assert(
    fc.property(jsonish, (data) => {
      try {
        const r = parseRegistration(data);
        assert.type(r.subject, "string");
        assert.ok(r.subject.length > 0 && r.subject.length <= MAX_SUBJECT_LENGTH);
        assert.not.match(r.subject, /[\s*>]/);
      } catch (err) {
        if (!(err instanceof RegistrationError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

test("fuzz - a valid registration keeps its subject and every metadata field", () => {
  fc.assert(
    fc.property(validSubject, metadata, (subject, meta) => {
      const r = parseRegistration(new TextEncoder().encode(JSON.stringify({ ...meta, myPresenceSubject: subject })));
      assert.is(r.subject, subject);
      assert.equal(r.metadata, JSON.parse(JSON.stringify(meta)) as JsonObject);
    }),
    { numRuns: 500 },
  );
});

const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
/** Every key but `partition`, which a report may leave out (it is 0 then). */
const REQUIRED = [
  "type",
  "clusterId",
  "coordinatorId",
  "epoch",
  "seq",
  "ts",
  "clientSubject",
  "state",
  "lastSeenMs",
  "rttMs",
  "missedPings",
  "metadata",
] as const;
const report: fc.Arbitrary<Report> = fc.record(
  {
    type: fc.constantFrom(...REPORT_TYPES),
    clusterId: fc.string({ maxLength: 20 }),
    coordinatorId: fc.string({ maxLength: 20 }),
    epoch: safe,
    seq: safe,
    ts: safe,
    clientSubject: validSubject,
    state: fc.constantFrom(...STATES),
    lastSeenMs: safe,
    rttMs: fc.double({ min: 0, max: 1e9, noNaN: true, noDefaultInfinity: true }),
    missedPings: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    metadata,
    partition: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_PARTITIONS - 1 })),
  },
  { requiredKeys: [...REQUIRED] },
);

/** The report as decodeReport gives it: a partition only when it is not 0. */
function canonical({ partition, ...r }: Report): Report {
  return JSON.parse(JSON.stringify(partition ? { ...r, partition } : r)) as Report;
}

test("fuzz - decode(encode(report)) is the report, in both encodings", () => {
  fc.assert(
    fc.property(report, fc.constantFrom("protobuf", "json") as fc.Arbitrary<"protobuf" | "json">, (r, encoding) => {
      const back = decodeReport(encodeReport(r, encoding), encoding);
      assert.equal(back, canonical(r));
    }),
    { numRuns: 1000 },
  );
});

test("fuzz - a report's partition at 0 leaves the wire as it was; any other is accepted below the maximum and refused from it", () => {
  const uint32 = fc.oneof(
    fc.integer({ min: 0, max: MAX_PARTITIONS + 2 }),
    fc.integer({ min: MAX_PARTITIONS - 2, max: 2 ** 32 - 1 }),
    fc.constant(2 ** 32 - 1),
  );
  fc.assert(
    fc.property(report, uint32, fc.constantFrom("protobuf", "json") as fc.Arbitrary<"protobuf" | "json">, (r, partition, encoding) => {
      const { partition: _, ...without } = r;
      const today = encodeReport(without, encoding);
      assert.equal(encodeReport({ ...without, partition: 0 }, encoding), today, "partition 0 is the report without one");
      // Written by hand, as another implementation might: today's report with the field after it.
      const data =
        encoding === "protobuf"
          ? new Uint8Array([
              ...today,
              ...new BinaryWriter()
                .uint32((13 << 3) | WireType.Varint)
                .uint32(partition)
                .finish(),
            ])
          : new TextEncoder().encode(`${new TextDecoder().decode(today).slice(0, -1)},"partition":${partition}}`);
      if (partition < MAX_PARTITIONS) {
        assert.equal(decodeReport(data, encoding), canonical({ ...without, partition }));
      } else {
        assert.throws(
          () => decodeReport(data, encoding),
          (err: unknown) => err instanceof ReportDecodeError,
          `partition ${partition}`,
        );
      }
    }),
    { numRuns: 1000 },
  );
});

test("fuzz - any bytes under any encoding header give a well-formed report or a ReportDecodeError", () => {
  fc.assert(
    fc.property(jsonish, fc.constantFrom(undefined, "", "protobuf", "json", "xml"), (data, encoding) => {
      try {
        const r = decodeReport(data, encoding);
        assert.ok((REPORT_TYPES as readonly string[]).includes(r.type), `type ${r.type}`);
        assert.ok((STATES as readonly string[]).includes(r.state), `state ${JSON.stringify(r.state)}`);
        assert.ok(Number.isFinite(r.epoch) && r.epoch >= 0);
        const p = r.partition;
        assert.ok(p === undefined || (Number.isInteger(p) && p > 0 && p < MAX_PARTITIONS), `partition ${p}`);
      } catch (err) {
        if (!(err instanceof ReportDecodeError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

test("fuzz - a report that names an unknown state or type is refused, not passed on", () => {
  const odd = report.chain((r) =>
    fc
      .record({
        state: fc.oneof(fc.constantFrom(...STATES), fc.string({ maxLength: 8 })),
        type: fc.oneof(fc.constantFrom(...REPORT_TYPES), fc.string({ maxLength: 8 })),
      })
      .map((o) => ({ ...r, ...o }) as unknown as Report),
  );
  fc.assert(
    fc.property(odd, fc.constantFrom("protobuf", "json") as fc.Arbitrary<"protobuf" | "json">, (r, encoding) => {
      const valid = (STATES as readonly string[]).includes(r.state) && (REPORT_TYPES as readonly string[]).includes(r.type);
      try {
        const back = decodeReport(encodeReport(r, encoding), encoding);
        assert.ok(valid, `accepted state ${JSON.stringify(back.state)}, type ${JSON.stringify(back.type)}`);
      } catch (err) {
        if (!(err instanceof ReportDecodeError)) throw err;
        assert.not.ok(valid, `refused a valid report: ${(err as Error).message}`);
      }
    }),
    { numRuns: 1000 },
  );
});

test("fuzz - any bytes on the heartbeat subject give a heartbeat with a coordinator and a positive epoch, or a WireFormatError", () => {
  const heartbeatish = fc.oneof(
    jsonish,
    fc
      .record({
        coordinatorId: fc.oneof(fc.string(), fc.integer()),
        epoch: fc.oneof(fc.integer(), fc.double(), fc.string()),
        resigning: fc.anything(),
      })
      .map((o) => new TextEncoder().encode(JSON.stringify(o))),
  );
  fc.assert(
    fc.property(heartbeatish, (data) => {
      try {
        const hb = parseHeartbeat(data);
        assert.ok(hb.coordinatorId.length > 0);
        assert.ok(Number.isSafeInteger(hb.epoch) && hb.epoch > 0);
        assert.ok(hb.resigning === undefined || hb.resigning === true);
      } catch (err) {
        if (!(err instanceof WireFormatError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

test.run();
