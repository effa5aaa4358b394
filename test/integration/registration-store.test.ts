/** The registration store's load against a real JetStream KV bucket. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { presenceResources } from "../../src/protocol/presence.js";
import { createLogger } from "../../src/observe/logger.js";
import { NatsServer } from "../../src/nats/server.js";
import { KvRegistrationStore, registrationKey } from "../../src/presence/registration-store.js";

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

/** A store as a coordinator opens it (mirroring the bucket), on a connection of its own. */
async function follower(url: string): Promise<{ store: KvRegistrationStore; close: () => Promise<void> }> {
  const nc = await connect({ servers: url });
  const store = await KvRegistrationStore.open(nc, { clusterId: CLUSTER, replicas: 1, ackWaitMs: 5000, logger, mirror: true });
  return {
    store,
    close: async () => {
      store.close();
      await nc.close();
    },
  };
}

const bySubject = (all: { registration: { subject: string }; revision: number }[]) =>
  new Map(all.map((s) => [s.registration.subject, s.revision]));

test("registration store - a mirrored store loads from its mirror exactly what the bucket holds, writes made just before the load included", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  try {
    const writer = await KvRegistrationStore.open(nc, { clusterId: CLUSTER, replicas: 1, ackWaitMs: 5000, logger });
    const early = await follower(server.url); // mirrors from before the first write
    try {
      for (let i = 0; i < 800; i++) await writer.put({ subject: `svc.node-${i}`, metadata: { i } });
      await writer.remove("svc.node-5");
      await writer.put({ subject: "svc.node-6", metadata: { again: true } });
      const late = await follower(server.url); // its mirror starts with 799 stored
      try {
        // Written just before the loads, without waiting for any mirror to see them.
        await Promise.all(Array.from({ length: 200 }, (_, i) => writer.put({ subject: `svc.last-${i}`, metadata: {} })));
        await writer.remove("svc.node-7");
        // And one that takes over at once: its mirror is still reading the bucket.
        const fresh = await follower(server.url);
        const [fromEarly, fromLate, fromFresh, fromBucket] = await Promise.all([
          early.store.loadAll(),
          late.store.loadAll(),
          fresh.store.loadAll(),
          writer.loadAll(),
        ]).finally(() => fresh.close());
        assert.is(fresh.store.lastLoadSource, "mirror");
        assert.equal(bySubject(fromFresh), bySubject(fromBucket), "the mirror that was still reading the bucket when asked");
        assert.is(writer.lastLoadSource, "bucket");
        assert.is(early.store.lastLoadSource, "mirror");
        assert.is(late.store.lastLoadSource, "mirror");
        assert.is(fromBucket.length, 998);
        assert.equal(bySubject(fromEarly), bySubject(fromBucket), "the mirror that saw every write");
        assert.equal(bySubject(fromLate), bySubject(fromBucket), "the mirror that started with a full bucket");
        assert.equal(fromEarly.find((s) => s.registration.subject === "svc.node-6")?.registration.metadata, { again: true });
      } finally {
        await late.close();
      }
    } finally {
      await early.close();
    }
  } finally {
    await nc.close();
    await server.stop();
  }
});

test("registration store - a mirror that has stopped is not used: the bucket is read", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  try {
    const writer = await KvRegistrationStore.open(nc, { clusterId: CLUSTER, replicas: 1, ackWaitMs: 5000, logger });
    const f = await follower(server.url);
    try {
      await writer.put({ subject: "svc.a", metadata: {} });
      f.store.close(); // its watch ends: what is written from here on never reaches the mirror
      await writer.put({ subject: "svc.b", metadata: {} });
      const all = await f.store.loadAll();
      assert.is(f.store.lastLoadSource, "bucket");
      assert.equal([...bySubject(all).keys()].sort(), ["svc.a", "svc.b"]);
    } finally {
      await f.close();
    }
  } finally {
    await nc.close();
    await server.stop();
  }
});

test.run();
