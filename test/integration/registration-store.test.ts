/** The registration store's load against a real JetStream KV bucket. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { presenceResources } from "../../src/protocol/presence.js";
import { createLogger } from "../../src/services/logger.js";
import { NatsServer } from "../../src/services/nats-server.js";
import { KvRegistrationStore, registrationKey } from "../../src/services/registration-store.js";

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

test("registration store - an empty bucket loads as nothing", async () => {
  await withStore(async (store) => {
    assert.equal(await store.loadAll(), []);
  });
});

test("registration store - loadAll gives every stored registration once, with its revision; deleted and refused ones are not", async () => {
  await withStore(async (store, nc) => {
    const subjects = Array.from({ length: 1234 }, (_, i) => `svc.node-${i}`);
    const revisions = new Map<string, number>();
    for (const subject of subjects) revisions.set(subject, await store.put({ subject, metadata: { i: subject } }));
    await store.remove("svc.node-7"); // a delete marker is no registration
    revisions.delete("svc.node-7");
    revisions.set("svc.node-9", await store.put({ subject: "svc.node-9", metadata: { again: true } })); // the newest value counts
    // Stored by an older version under a rule that refuses it today: not loaded, and deleted.
    const kv = await new Kvm(nc).open(presenceResources.registrationBucket(CLUSTER));
    await kv.put(registrationKey("svc.*"), JSON.stringify({ myPresenceSubject: "svc.*", registeredAtMs: 1, metadata: {} }));

    const all = await store.loadAll();
    assert.is(all.length, 1233);
    assert.equal(new Map(all.map((s) => [s.registration.subject, s.revision])), revisions, "each once, with its latest revision");
    assert.equal(all.find((s) => s.registration.subject === "svc.node-3")?.registration.metadata, { i: "svc.node-3" });
    assert.equal(all.find((s) => s.registration.subject === "svc.node-9")?.registration.metadata, { again: true });
    const refused = await kv.get(registrationKey("svc.*"));
    assert.ok(refused === null || refused.operation !== "PUT", "the refused one is deleted");
  });
});

test.run();
