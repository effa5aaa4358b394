/** The lease store against a real JetStream KV bucket. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { KvLeaseStore, LeaseLostError, LeaseTakenError } from "../../src/services/lease-store.js";
import { createLogger } from "../../src/services/logger.js";
import { NatsServer } from "../../src/services/nats-server.js";

const logger = createLogger({ format: "json", verbose: false, level: "error" });

async function withStore(body: (store: KvLeaseStore, nc: NatsConnection) => Promise<void>) {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  try {
    const store = await KvLeaseStore.open(nc, { clusterId: "ls", ttlMs: 2000, replicas: 1, timeoutMs: 1000, logger });
    await body(store, nc);
  } finally {
    await nc.close();
    await server.stop();
  }
}

test("lease store - one create wins; the epoch is its revision and is stamped into the value", async () => {
  await withStore(async (store) => {
    const { epoch, revision } = await store.acquire("a");
    assert.ok(revision > epoch, "the stamp is a later write");
    assert.equal(await store.holder(), { coordinatorId: "a", epoch });
    try {
      await store.acquire("b");
      assert.unreachable("a second create must fail");
    } catch (err) {
      assert.instance(err, LeaseTakenError);
    }
  });
});

test("lease store - renewing against an old revision is refused", async () => {
  await withStore(async (store) => {
    const { epoch, revision } = await store.acquire("a");
    const next = await store.renew({ coordinatorId: "a", epoch }, revision);
    try {
      await store.renew({ coordinatorId: "a", epoch }, revision);
      assert.unreachable("renewing against a superseded revision must fail");
    } catch (err) {
      assert.instance(err, LeaseLostError);
    }
    assert.ok(next > revision);
  });
});

test("lease store - release deletes the lease even when a renewal landed after the revision it names", async () => {
  await withStore(async (store) => {
    const { epoch, revision } = await store.acquire("a");
    await store.renew({ coordinatorId: "a", epoch }, revision); // the renewal in flight at resign time
    await store.release({ coordinatorId: "a", epoch }, revision);
    assert.is(await store.holder(), null, "released");
    const next = await store.acquire("b");
    assert.ok(next.epoch > epoch, "the next epoch is higher");
  });
});

test("lease store - release leaves another holder's lease alone", async () => {
  await withStore(async (store) => {
    const first = await store.acquire("a");
    await store.release({ coordinatorId: "a", epoch: first.epoch }, first.revision);
    const second = await store.acquire("b");
    await store.release({ coordinatorId: "a", epoch: first.epoch }, first.revision);
    assert.equal(await store.holder(), { coordinatorId: "b", epoch: second.epoch });
  });
});

test.run();
