/** The member keys against a real JetStream KV bucket: who is live, who leaves, who succeeds. */
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Membership, type MembershipOptions } from "../../src/election/membership.js";
import { resources } from "../../src/protocol/election.js";
import { createLogger } from "../../src/observe/logger.js";
import { NatsServer } from "../../src/nats/server.js";
import { waitFor } from "../../harness/coordinators.js";

const logger = createLogger({ format: "json", verbose: false, level: "error" });
const LIVENESS_MS = 3000;

test("membership - members see each other, a leave is seen at once, a halted member ages out, the successor leads the fewest", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  const joined: Membership[] = [];
  try {
    await new Kvm(nc).create(resources.leadershipBucket("mb"), { ttl: 2000, history: 1 });
    const led = new Map<string, number>([
      ["a", 0],
      ["b.1", 3],
      ["c:2", 1],
    ]);
    const join = async (id: string) => {
      const options: MembershipOptions = {
        clusterId: "mb",
        coordinatorId: id,
        intervalMs: 200,
        livenessMs: LIVENESS_MS,
        timeoutMs: 1000,
        led: () => led.get(id)!,
        logger,
      };
      const m = await Membership.join(nc, options);
      joined.push(m);
      return m;
    };
    const a = await join("a");
    const b = await join("b.1");
    const c = await join("c:2");
    const ids = (m: Membership) => m.live().map((v) => v.coordinatorId);
    await waitFor("a sees all three", () => ids(a).length === 3, 5000);
    assert.equal(ids(a), ["a", "b.1", "c:2"]);
    assert.is(a.successor(), "c:2", "of b.1 (3) and c:2 (1), the one that leads fewer");
    assert.is(b.successor(), "a", "a leads none");
    // c:2 now leads none too: after its next write, a tie goes to the lowest id.
    led.set("c:2", 0);
    c.ledChanged();
    await waitFor("b sees c:2 lead none", () => b.live().find((v) => v.coordinatorId === "c:2")?.led === 0, 5000);
    assert.is(b.successor(), "a");
    // A leave deletes the key: seen at once, well before the liveness window.
    const left = performance.now();
    await a.leave();
    await waitFor("b sees a leave", () => !ids(b).includes("a"), 5000);
    assert.ok(performance.now() - left < 1000, "the leave was seen long before a would have aged out");
    assert.is(b.successor(), "c:2");
    // A halt leaves the key to expire: the others count it live until they stop hearing it.
    c.halt();
    assert.ok(ids(b).includes("c:2"), "a halted member is still live at first");
    await waitFor("b stops counting c:2", () => !ids(b).includes("c:2"), 5000);
    assert.is(b.successor(), undefined, "nobody left to hand over to");
  } finally {
    for (const m of joined) m.halt();
    await nc.close();
    await server.stop();
  }
});

test.run();
