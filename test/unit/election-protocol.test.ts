/** The election's wire helpers: the member key and value, and the heartbeat's successor. */
import fc from "fast-check";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { encodeHeartbeat, leaseKeyOf, memberKey, parseHeartbeat, parseMemberValue, WireFormatError } from "../../src/protocol/election.js";

/** What @nats-io/kv accepts as a key. */
const isKvKey = (k: string) => /^[-/=.\w]+$/.test(k) && !k.startsWith(".") && !k.endsWith(".");
/** Coordinator ids as the config allows them. */
const coordinatorId = fc.stringMatching(/^[A-Za-z0-9.:_-]{1,128}$/);

test("election protocol - every coordinator id has a valid member key of its own", () => {
  assert.is(memberKey("c1"), "member.c1");
  assert.is(memberKey("node.a:7"), "member.node=2ea=3a7");
  assert.is(memberKey("."), "member.=2e");
  fc.assert(
    fc.property(coordinatorId, coordinatorId, (a, b) => {
      assert.ok(isKvKey(memberKey(a)), memberKey(a));
      if (a !== b) assert.is.not(memberKey(a), memberKey(b));
    }),
    { numRuns: 2000 },
  );
});

test("election protocol - a member value is read back, and a bad one refused", () => {
  assert.equal(parseMemberValue(JSON.stringify({ coordinatorId: "c1", led: 3, ts: 5 })), { coordinatorId: "c1", led: 3, ts: 5 });
  assert.equal(parseMemberValue(`{"coordinatorId":"c1","led":-1}`), { coordinatorId: "c1", led: 0, ts: 0 }, "an odd count reads as none");
  assert.throws(
    () => parseMemberValue(`{"led":1}`),
    (e: unknown) => e instanceof WireFormatError,
  );
  assert.throws(
    () => parseMemberValue("not json"),
    (e: unknown) => e instanceof WireFormatError,
  );
});

test("election protocol - a resigning heartbeat carries its successor; an empty one is dropped", () => {
  const hb = { coordinatorId: "c1", epoch: 4, ts: 1, resigning: true, successor: "c2" };
  assert.equal(parseHeartbeat(encodeHeartbeat(hb)), hb);
  assert.equal(parseHeartbeat(`{"coordinatorId":"c1","epoch":4,"ts":1}`), { coordinatorId: "c1", epoch: 4, ts: 1 }, "today's heartbeat");
  assert.is(parseHeartbeat(`{"coordinatorId":"c1","epoch":4,"resigning":true,"successor":""}`).successor, undefined);
});

test("election protocol - a heartbeat names its partition when the cluster runs several; a bad one is refused", () => {
  const hb = { coordinatorId: "c1", epoch: 4, ts: 1, partition: 7 };
  assert.equal(parseHeartbeat(encodeHeartbeat(hb)), hb);
  assert.is(parseHeartbeat(`{"coordinatorId":"c1","epoch":4,"partition":0}`).partition, 0);
  for (const bad of [-1, 1024, 1.5, "2"]) {
    assert.throws(
      () => parseHeartbeat(JSON.stringify({ coordinatorId: "c1", epoch: 4, partition: bad })),
      (e: unknown) => e instanceof WireFormatError,
      `partition ${JSON.stringify(bad)}`,
    );
  }
});

test("election protocol - lease keys: leader for one partition, leader.{p} for several", () => {
  assert.is(leaseKeyOf(0, 1), "leader");
  assert.is(leaseKeyOf(0, 2), "leader.0");
  assert.is(leaseKeyOf(1023, 1024), "leader.1023");
});

test.run();
