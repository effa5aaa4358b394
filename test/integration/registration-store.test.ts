/** The registration store's load against a real JetStream KV bucket: in batches, as read. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { presenceResources } from "../../src/protocol/presence.js";
import { createLogger } from "../../src/services/logger.js";
import { NatsServer } from "../../src/services/nats-server.js";
import { KvRegistrationStore, registrationKey, type StoredRegistration } from "../../src/services/registration-store.js";

const logger = createLogger({ format: "json", verbose: false, level: "error" });
const CLUSTER = "rs";

async function withStore(body: (store: KvRegistrationStore, nc: NatsConnection) => Promise<void>) {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  try {
    const store = await KvRegistrationStore.open(nc, { clusterId: CLUSTER, replicas: 1, ackWaitMs: 5000, logger });
    await body(store, nc);
  } finally {
    await nc.close();
    await server.stop();
  }
}

test("registration store - load hands every stored registration over in batches, the next after the last was taken", async () => {
  await withStore(async (store, nc) => {
    const subjects = Array.from({ length: 1234 }, (_, i) => `svc.node-${i}`);
    const revisions = new Map<string, number>();
    for (const subject of subjects) revisions.set(subject, await store.put({ subject, metadata: { i: subject } }));
    await store.remove("svc.node-7"); // a delete marker is no registration
    revisions.delete("svc.node-7");
    // Stored by an older version under a rule that refuses it today: not handed over, and deleted.
    const kv = await new Kvm(nc).open(presenceResources.registrationBucket(CLUSTER));
    await kv.put(registrationKey("svc.*"), JSON.stringify({ myPresenceSubject: "svc.*", registeredAtMs: 1, metadata: {} }));

    const batches: StoredRegistration[][] = [];
    let inBatch = false;
    const handed = await store.load(async (batch) => {
      assert.not.ok(inBatch, "a batch comes only after the last one was taken");
      inBatch = true;
      batches.push(batch);
      await new Promise((r) => setTimeout(r, 5));
      inBatch = false;
      return true;
    }, 500);
    assert.is(handed, 1233);
    assert.equal(batches.map((b) => b.length), [500, 500, 233]);
    const all = batches.flat();
    assert.equal(new Map(all.map((s) => [s.registration.subject, s.revision])), revisions, "each once, with its revision");
    assert.equal(all.find((s) => s.registration.subject === "svc.node-3")?.registration.metadata, { i: "svc.node-3" });
    const refused = await kv.get(registrationKey("svc.*"));
    assert.ok(refused === null || refused.operation !== "PUT", "the refused one is deleted");
  });
});

test("registration store - load stops when a batch says so, and an empty bucket hands over nothing", async () => {
  await withStore(async (store) => {
    assert.is(await store.load(() => Promise.reject(new Error("no batch expected")), 500), 0);
    for (let i = 0; i < 1200; i++) await store.put({ subject: `svc.n${i}`, metadata: {} });
    const sizes: number[] = [];
    const handed = await store.load(async (batch) => {
      sizes.push(batch.length);
      return false;
    }, 500);
    assert.equal(sizes, [500], "nothing after the batch that stopped it");
    assert.is(handed, 500);
  });
});

test.run();
