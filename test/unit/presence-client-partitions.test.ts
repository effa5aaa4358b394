/**
 * Which leader heartbeats a PresenceClient heeds when the cluster runs partitions: its own
 * partition's new epochs, not another partition's; all of them when it does not know its
 * partition; and what it does when the `partitions` option contradicts the heartbeats.
 * The client runs on a strict fake connection (no NATS): heartbeats go straight into its
 * subscription's callback.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { LeaderEpochs } from "../../src/client/leader-epochs.js";
import { PresenceClient, PresenceClientError } from "../../src/client/presence-client.js";
import type { Heartbeat } from "../../src/protocol/election.js";
import { partitionOf } from "../../src/protocol/partition.js";

const CLUSTER = "c";
const HEARTBEATS = `coordinator.leader.heartbeat.${CLUSTER}`;

/** A subject in partition `p` of 4: svc.1 → 0, svc.2 → 1, svc.3 → 2, svc.0 → 3. */
const inPartition = (p: number) => ["svc.1", "svc.2", "svc.3", "svc.0"][p]!;

/** The calls PresenceClient makes; anything else throws. */
function fakeConnection() {
  const callbacks = new Map<string, (err: Error | null, msg: Msg) => void>();
  const published: string[] = [];
  const impl = {
    subscribe(subject: string, opts: { callback: (err: Error | null, msg: Msg) => void }) {
      callbacks.set(subject, opts.callback);
      return { unsubscribe: () => callbacks.delete(subject) };
    },
    publish(subject: string) {
      published.push(subject);
    },
    flush: async () => {},
    isClosed: () => false,
    isDraining: () => false,
    status() {
      return { stop() {}, [Symbol.asyncIterator]: () => ({ next: () => new Promise<never>(() => {}) }) };
    },
  };
  const nc = new Proxy(impl, {
    get(target, prop) {
      if (!(prop in target)) throw new Error(`fake connection: unexpected use of ${String(prop)}`);
      return target[prop as keyof typeof target];
    },
  }) as unknown as NatsConnection;
  const heartbeat = (hb: Heartbeat) => {
    const cb = callbacks.get(HEARTBEATS);
    if (cb === undefined) throw new Error("fake connection: nobody subscribed to the heartbeats");
    cb(null, { data: new TextEncoder().encode(JSON.stringify(hb)) } as Msg);
  };
  return { nc, published, heartbeat };
}

async function startedClient(subject: string, partitions?: number) {
  const conn = fakeConnection();
  const client = new PresenceClient(conn.nc, { clusterId: CLUSTER, subject, partitions, newLeaderGraceMs: 60_000 });
  const leaders: string[] = [];
  const errors: PresenceClientError[] = [];
  client.on("leader", ({ coordinatorId, epoch, partition }) => leaders.push(`${coordinatorId}@${epoch} p${partition}`));
  client.on("error", (err) => errors.push(err));
  await client.start();
  return { client, leaders, errors, ...conn };
}

const hb = (partition: number | undefined, epoch: number, coordinatorId = "a", extra: Partial<Heartbeat> = {}): Heartbeat => ({
  coordinatorId,
  epoch,
  ts: 1,
  ...(partition === undefined ? {} : { partition }),
  ...extra,
});

test("client partitions - the test subjects lie in the partitions they are named for", () => {
  assert.equal(
    [0, 1, 2, 3].map((p) => partitionOf(inPartition(p), 4)),
    [0, 1, 2, 3],
  );
});

test("client partitions - a client heeds its own partition's new leaders only", async () => {
  const { client, leaders, errors, heartbeat } = await startedClient(inPartition(3), 4);
  assert.is(client.partition, 3);
  heartbeat(hb(1, 263, "c")); // another partition, at a higher epoch
  heartbeat(hb(0, 300, "c"));
  assert.equal(leaders, [], "other partitions' leaders are nothing to this client");
  assert.is(client.epoch, 0);
  heartbeat(hb(3, 161, "d"));
  heartbeat(hb(3, 161, "d")); // the same leader's next heartbeat
  assert.equal(leaders, ["d@161 p3"], "its own partition's leader, lower epoch than the others' and all");
  heartbeat(hb(1, 400, "d")); // an unrelated failover
  heartbeat(hb(3, 161, "d", { resigning: true, successor: "c" }));
  assert.equal(leaders, ["d@161 p3"], "neither another failover nor a resigning heartbeat is a new leader");
  heartbeat(hb(3, 410, "c"));
  assert.equal(leaders, ["d@161 p3", "c@410 p3"]);
  assert.is(client.epoch, 410);
  heartbeat(hb(3, 161, "d")); // the old leader, late
  assert.equal(leaders, ["d@161 p3", "c@410 p3"]);
  assert.equal(errors, []);
  await client.close();
});

test("client partitions - with one partition (option or not) every heartbeat without a partition counts, as before", async () => {
  for (const partitions of [undefined, 1]) {
    const { client, leaders, errors, heartbeat } = await startedClient("svc.one", partitions);
    assert.is(client.partition, partitions === undefined ? undefined : 0);
    heartbeat(hb(undefined, 5, "a"));
    heartbeat(hb(undefined, 5, "a"));
    heartbeat(hb(undefined, 4, "old"));
    heartbeat(hb(undefined, 9, "b"));
    assert.equal(leaders, ["a@5 p0", "b@9 p0"], `partitions ${partitions}`);
    assert.is(client.epoch, 9);
    assert.equal(errors, []);
    await client.close();
  }
});

test("client partitions - without the partitions option a client follows every partition", async () => {
  const { client, leaders, heartbeat } = await startedClient(inPartition(3));
  heartbeat(hb(1, 263, "c"));
  heartbeat(hb(3, 161, "d"));
  heartbeat(hb(1, 263, "c"));
  heartbeat(hb(1, 200, "x"));
  assert.equal(leaders, ["c@263 p1", "d@161 p3"], "each partition judged against its own epochs");
  assert.is(client.epoch, 263, "the highest of any partition");
  await client.close();
});

test("client partitions - a partitions option the heartbeats contradict is reported once, then every partition is followed", async () => {
  const { client, leaders, errors, heartbeat } = await startedClient(inPartition(1), 4);
  heartbeat(hb(5, 20, "c")); // partition 5 of a cluster of 4?
  heartbeat(hb(6, 21, "c"));
  assert.is(errors.length, 1);
  assert.is(errors[0]!.code, "partitions-mismatch");
  assert.match(errors[0]!.message, /partition 5, but partitions is 4/);
  assert.is(client.partition, undefined);
  assert.equal(leaders, ["c@20 p5", "c@21 p6"]);
  await client.close();
  const one = await startedClient("svc.x", 4);
  one.heartbeat(hb(undefined, 3, "a")); // a one-partition cluster
  assert.equal(
    one.errors.map((e) => e.code),
    ["partitions-mismatch"],
  );
  assert.equal(one.leaders, ["a@3 p0"]);
  await one.client.close();
});

test("client partitions - a partitions option out of range is refused at construction", () => {
  const { nc } = fakeConnection();
  for (const partitions of [0, 1025, 2.5]) {
    assert.throws(
      () => new PresenceClient(nc, { clusterId: CLUSTER, subject: "svc.a", partitions }),
      (e: unknown) => e instanceof PresenceClientError && e.code === "invalid-options",
      `partitions ${partitions}`,
    );
  }
});

test("client partitions - LeaderEpochs without a client: own partition, unknown, and the resigning rule", () => {
  const own = new LeaderEpochs(inPartition(2), 4);
  assert.equal(own.observe(hb(2, 7)), { newLeader: true, partition: 2, mismatch: null });
  assert.equal(own.observe(hb(0, 8)), { newLeader: false, partition: 0, mismatch: null });
  assert.equal(own.observe(hb(2, 9, "b", { resigning: true })), { newLeader: false, partition: 2, mismatch: null });
  assert.is(own.epoch, 7);
  const unknown = new LeaderEpochs("svc.a", undefined);
  assert.ok(unknown.observe(hb(0, 8)).newLeader);
  assert.ok(unknown.observe(hb(2, 7)).newLeader);
  assert.not.ok(unknown.observe(hb(2, 6)).newLeader);
  assert.is(unknown.epoch, 8);
});

test.run();
