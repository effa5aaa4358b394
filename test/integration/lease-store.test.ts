/** The lease store against a real JetStream KV bucket. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Kvm, type KV } from "@nats-io/kv";
import { resources } from "../../src/protocol/election.js";
import { KvLeaseStore, LeaseLostError, LeaseStoreError, LeaseTakenError, recordedPartitions } from "../../src/election/lease-store.js";
import { ConfigError } from "../../src/config/config.js";
import { createLogger } from "../../src/observe/logger.js";
import { NatsServer } from "../../src/nats/server.js";

/** Fails unless `fn` rejects with an error that `ok` accepts. */
async function rejects(fn: () => Promise<unknown>, ok: (e: unknown) => boolean, what: string): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.ok(ok(err), `${what}: ${String(err)}`);
    return;
  }
  assert.unreachable(`${what}: it did not fail`);
}

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

test("lease store - renewing against an old revision is refused when someone else wrote since", async () => {
  await withStore(async (store, nc) => {
    const { epoch, revision } = await store.acquire("a");
    // Another writer (a process that took the lease after it expired, say) wrote the key.
    const kv = await new Kvm(nc).open(resources.leadershipBucket("ls"));
    await kv.put(resources.leaseKey, JSON.stringify({ coordinatorId: "b", epoch: epoch + 5 }));
    try {
      await store.renew({ coordinatorId: "a", epoch }, revision);
      assert.unreachable("renewing against a superseded revision must fail");
    } catch (err) {
      assert.instance(err, LeaseLostError);
    }
    assert.equal(await store.holder(), { coordinatorId: "b", epoch: epoch + 5 }, "and the other writer's lease is untouched");
  });
});

test("lease store - a renewal that timed out but landed does not lose the lease: the next one renews against its revision", async () => {
  await withStore(async (store) => {
    const { epoch, revision } = await store.acquire("a");
    const landed = await store.renew({ coordinatorId: "a", epoch }, revision); // the renewal whose answer came too late
    const next = await store.renew({ coordinatorId: "a", epoch }, revision); // the next one still names the old revision
    assert.ok(next > landed, `renewed again, against the landed write: ${landed} -> ${next}`);
    assert.equal(await store.holder(), { coordinatorId: "a", epoch });
    // The same holder id under another epoch is someone else.
    try {
      await store.renew({ coordinatorId: "a", epoch: epoch - 1 }, revision);
      assert.unreachable("another epoch's holder must not renew");
    } catch (err) {
      assert.instance(err, LeaseLostError);
    }
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

/**
 * The real bucket, with the answer to every create lost: the create is applied, then
 * `meanwhile` runs, then the caller hears a timeout (as when the connection drops after the
 * request went out).
 */
async function losingCreateAnswer(nc: NatsConnection, meanwhile: (revision: number) => Promise<void> = async () => {}): Promise<KV> {
  const kv = await new Kvm(nc).open(resources.leadershipBucket("ls"));
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (prop !== "create") return Reflect.get(target, prop, receiver) as unknown;
      return async (key: string, value: string) => {
        await meanwhile(await target.create(key, value));
        throw new Error("TIMEOUT (the create's answer was lost)");
      };
    },
  });
}

test("lease store - a create whose answer was lost is cleaned up while it is still unstamped", async () => {
  await withStore(async (store, nc) => {
    const losing = new KvLeaseStore(await losingCreateAnswer(nc), 1000, logger);
    try {
      await losing.acquire("a");
      assert.unreachable("the create's answer was lost");
    } catch (err) {
      assert.instance(err, LeaseStoreError);
    }
    assert.is(await store.holder(), null, "the unstamped lease was deleted: no lease nobody acts on");
    const next = await store.acquire("b");
    assert.equal(await store.holder(), { coordinatorId: "b", epoch: next.epoch }, "the next election need not wait for its expiry");
  });
});

test("lease store - a lease stamped by another process with the same id is never cleaned up", async () => {
  await withStore(async (store, nc) => {
    // The create was applied and answered to nobody; before the cleanup reads it, a process
    // with the same id stamps it (as the real creator would).
    const stamping = await losingCreateAnswer(nc, async (revision) => {
      await store.renew({ coordinatorId: "same", epoch: revision }, revision);
    });
    const losing = new KvLeaseStore(stamping, 1000, logger);
    try {
      await losing.acquire("same");
      assert.unreachable("the create's answer was lost");
    } catch (err) {
      assert.instance(err, LeaseStoreError);
    }
    const holder = await store.holder();
    assert.ok(
      holder !== null && holder.coordinatorId === "same" && holder.epoch > 0,
      `the stamped lease stands: ${JSON.stringify(holder)}`,
    );
  });
});

test("lease store - each partition has a lease of its own under leader.{p}; one partition keeps the key leader", async () => {
  await withStore(async (store, nc) => {
    const kv = await new Kvm(nc).open(resources.leadershipBucket("ls"));
    const p0 = store.forPartition(0, 4);
    const p3 = store.forPartition(3, 4);
    const a = await p0.acquire("a");
    const b = await p3.acquire("b");
    assert.ok(b.epoch > a.epoch, "epochs are revisions of one bucket, so they differ across partitions");
    assert.equal(await p3.holder(), { coordinatorId: "b", epoch: b.epoch });
    assert.ok((await kv.get("leader.0"))?.operation === "PUT" && (await kv.get("leader.3"))?.operation === "PUT");
    assert.is(await kv.get("leader"), null, "no lease under the one-partition key");
    await rejects(
      () => p0.acquire("c"),
      (e) => e instanceof LeaseTakenError,
      "a second create on partition 0",
    );
    await p0.release({ coordinatorId: "a", epoch: a.epoch }, a.revision);
    assert.is(await p0.holder(), null);
    assert.equal(await p3.holder(), { coordinatorId: "b", epoch: b.epoch }, "releasing one partition leaves the others");
    assert.is(store.forPartition(0, 1).key, "leader");
  });
});

test("lease store - the number of partitions is recorded in the bucket; another is refused while someone leads", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  const open = (partitions: number) =>
    KvLeaseStore.open(nc, { clusterId: "lp", ttlMs: 2000, replicas: 1, timeoutMs: 1000, partitions, logger });
  try {
    // A bucket as today's version (and the Java original) makes it: no record, so one partition.
    await new Kvm(nc).create(resources.leadershipBucket("lp"), { ttl: 2000, history: 1 });
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(nc);
    const described = async () => (await jsm.streams.info(`KV_${resources.leadershipBucket("lp")}`)).config.description;
    const one = await open(1);
    assert.is(recordedPartitions(await described()), 1, "one partition on a bucket without a record");
    const lease = await one.acquire("old");
    try {
      await open(6);
      assert.unreachable("another number of partitions must be refused while a partition has a leader");
    } catch (err) {
      assert.instance(err, ConfigError);
      const message = (err as Error).message;
      assert.match(message, "--partitions: 6 does not match the cluster, which runs 1 partition and is led by old (leader)");
      assert.match(message, "start this one with --partitions 1");
    }
    assert.is(recordedPartitions(await described()), 1, "the record is untouched");
    // Nobody leads: the new number is recorded.
    await one.release({ coordinatorId: "old", epoch: lease.epoch }, lease.revision);
    const six = await open(6);
    assert.is(recordedPartitions(await described()), 6);
    const p5 = await six.forPartition(5, 6).acquire("new");
    await rejects(
      () => open(1),
      (e) => e instanceof ConfigError && e.message.includes("start this one with --partitions 6"),
      "back to one partition while partition 5 is led",
    );
    assert.ok(p5.epoch > 0);
  } finally {
    await nc.close();
    await server.stop();
  }
});

test("lease store - the record is read from the description, whatever else it says", () => {
  assert.is(recordedPartitions(undefined), 1);
  assert.is(recordedPartitions(""), 1);
  assert.is(recordedPartitions("presence coordinator leadership; partitions=12"), 12);
  assert.is(recordedPartitions("partitions=3"), 3);
  assert.is(recordedPartitions("no partitions=here"), 1, "only as its own item");
});

test.run();
