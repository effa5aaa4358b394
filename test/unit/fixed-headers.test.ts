/** Headers built once and published on every report: the bytes nats.js would write, encoded once. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { headers, MsgHdrsImpl } from "@nats-io/transport-node";
import { fixedHeaders } from "../../src/presence/fixed-headers.js";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

test("fixed headers - encode to what nats.js writes for the same headers, once", () => {
  const fixed = fixedHeaders({ "Presence-Encoding": "protobuf", "Presence-Schema": "presence.v1.PresenceReport" });
  const plain = headers();
  plain.set("Presence-Encoding", "protobuf");
  plain.set("Presence-Schema", "presence.v1.PresenceReport");
  const first = (fixed as MsgHdrsImpl).encode();
  assert.is(text(first), text((plain as MsgHdrsImpl).encode()));
  assert.is((fixed as MsgHdrsImpl).encode(), first, "the second publish reuses the same bytes");
  assert.equal(MsgHdrsImpl.decode(first).toRecord(), (plain as MsgHdrsImpl).toRecord(), "a receiver decodes the same headers");
});

test("fixed headers - a change is encoded again", () => {
  const fixed = fixedHeaders({ a: "1" }) as MsgHdrsImpl;
  const before = text(fixed.encode());
  fixed.set("a", "2");
  assert.ok(text(fixed.encode()).includes("a: 2"), "set");
  fixed.append("b", "3");
  assert.ok(text(fixed.encode()).includes("b: 3"), "append");
  fixed.delete("a");
  assert.not.ok(text(fixed.encode()).includes("a:"), "delete");
  assert.ok(before.includes("a: 1"));
});

test.run();
