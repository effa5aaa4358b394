/**
 * The client library against coordinators run with `--partitions 4` (real nats-server, the
 * built CLI): watchPresence sees every client under its own partition's leader and drops
 * nothing from a live leader, and a PresenceClient heeds its own partition's leaders only.
 */
import { connect } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PresenceClient, partitionOf, watchPresence, type PresenceWatchEvents } from "../../src/client/index.js";
import { NatsServer } from "../../src/nats/server.js";
import { reportRecorder, waitForStream } from "../../harness/presence.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import type { Heartbeat } from "../../src/protocol/election.js";

const PARTITIONS = 4;
const ARGS = ["--partitions", String(PARTITIONS)];
/** A subject per partition of 4: svc.1 → 0, svc.2 → 1, svc.3 → 2, svc.0 → 3. */
const ONE_PER_PARTITION = ["svc.1", "svc.2", "svc.3", "svc.0"];

/** Each partition's leader as the heartbeats of the last `windowMs` name it (the latest non-resigning one). */
function leadersNow(observer: Observer, windowMs = 1200): Map<number, Heartbeat> {
  const leaders = new Map<number, Heartbeat>();
  for (const hb of observer.heartbeatsSince(performance.now() - windowMs)) {
    if (!hb.resigning) leaders.set(hb.partition ?? 0, hb);
  }
  return leaders;
}

/** Waits until every partition has a leader and the two coordinators lead two partitions each. */
function waitForBalance(observer: Observer, ids: string[], timeoutMs = 30_000) {
  return waitFor(
    "the partitions balanced over the coordinators",
    () => {
      const leaders = leadersNow(observer);
      if (leaders.size !== PARTITIONS) return false;
      const counts = ids.map((id) => [...leaders.values()].filter((hb) => hb.coordinatorId === id).length);
      return counts.every((n) => n === PARTITIONS / ids.length) && leaders;
    },
    timeoutMs,
  );
}

test("client partitions - watchPresence sees every client under its partition's leader and drops nothing from a live leader", async () => {
  const server = await NatsServer.start();
  const cluster = `wpp${process.pid}`;
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url });
  const viewer = await connect({ servers: server.url });
  const ids = ["pa", "pb"];
  const coordinators: CoordinatorProcess[] = ids.map((id) =>
    spawnCoordinator({ urls: [server.url], clusterId: cluster, id, args: [...ARGS, "--report-encoding", "json"] }),
  );
  const clients: PresenceClient[] = [];
  try {
    await waitForStream(app, cluster);
    const leaders = await waitForBalance(observer, ids);
    const epochs = [...leaders.values()].map((hb) => hb.epoch);
    assert.ok(Math.min(...epochs) < Math.max(...epochs), "the partitions' epochs differ, as they do in any cluster");

    const watch = await watchPresence(viewer, { clusterId: cluster });
    const stale: PresenceWatchEvents["stale"][0][] = [];
    watch.on("stale", (e) => stale.push(e));
    const subjects = Array.from({ length: 12 }, (_, i) => `svc.${i}`);
    assert.equal(new Set(subjects.map((s) => partitionOf(s, PARTITIONS))).size, PARTITIONS, "every partition has clients");
    for (const subject of subjects) {
      const client = new PresenceClient(app, { clusterId: cluster, subject, partitions: PARTITIONS });
      await client.start();
      clients.push(client);
    }
    await waitFor("every client present and alive", () => subjects.every((s) => watch.get(s)?.state === "alive"), 20_000);
    for (const subject of subjects) {
      const entry = watch.get(subject)!;
      const p = partitionOf(subject, PARTITIONS);
      assert.is(entry.partition, p, subject);
      assert.is(entry.coordinatorId, leaders.get(p)!.coordinatorId, `${subject} is reported by its partition's leader`);
      assert.is(entry.epoch, leaders.get(p)!.epoch, `${subject} under its partition's epoch`);
    }
    assert.equal(
      watch.partitions().map((l) => `${l.partition}:${l.coordinatorId}@${l.epoch}`),
      [...leaders.values()].sort((a, b) => a.partition! - b.partition!).map((hb) => `${hb.partition}:${hb.coordinatorId}@${hb.epoch}`),
    );
    assert.is(watch.epoch, Math.max(...epochs));
    // Two state intervals more: every client refreshed by a NodeState, none dropped.
    const refreshedAfter = Date.now();
    await waitFor("every client refreshed again", () => subjects.every((s) => watch.get(s)!.updatedAt > refreshedAfter), 10_000);
    assert.equal(stale, [], "no report of a live partition leader is taken for stale");
    assert.is(watch.size, subjects.length);
    await watch.stop();
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(coordinators.map((c) => c.kill()));
    await observer.close();
    await app.close();
    await viewer.close();
    await server.stop();
  }
});

test("client partitions - a client registers again for its own partition's leader, and ignores another partition's failover", async () => {
  const server = await NatsServer.start();
  const cluster = `cpp${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url });
  const ids = ["qa", "qb"];
  const coordinators: CoordinatorProcess[] = [];
  type Seen = { leaders: { epoch: number; partition: number; at: number }[]; reregistered: { reason: string; at: number }[] };
  const clients: { client: PresenceClient; partition: number; seen: Seen }[] = [];
  try {
    // Registered before any coordinator ran: no stream stores them, so no leader knows them.
    for (const [partition, subject] of ONE_PER_PARTITION.entries()) {
      const client = new PresenceClient(app, { clusterId: cluster, subject, partitions: PARTITIONS, newLeaderGraceMs: 1500 });
      const seen: Seen = { leaders: [], reregistered: [] };
      client.on("leader", ({ epoch, partition: p }) => seen.leaders.push({ epoch, partition: p, at: performance.now() }));
      client.on("reregistered", ({ reason }) => seen.reregistered.push({ reason, at: performance.now() }));
      await client.start();
      assert.is(client.partition, partition);
      clients.push({ client, partition, seen });
    }
    // A client of partition 0 without the option: it follows every partition.
    const unknowing = new PresenceClient(app, { clusterId: cluster, subject: "svc.5", newLeaderGraceMs: 1500 });
    const unknowingLeaders: number[] = [];
    unknowing.on("leader", ({ partition }) => unknowingLeaders.push(partition));
    await unknowing.start();
    for (const id of ids) coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id, args: ARGS }));
    const leaders = await waitForBalance(observer, ids);
    for (const { client, partition } of clients) {
      await waitFor(`${client.subject} NodePresent`, () => rec.types(client.subject).includes("NodePresent"), 15_000);
      assert.ok(
        rec.seen.some((s) => s.report.clientSubject === client.subject && (s.report.partition ?? 0) === partition),
        `${client.subject} reported in partition ${partition}`,
      );
    }
    await waitFor(
      "every client's epoch is its partition leader's",
      () => clients.every(({ client, partition }) => client.epoch === leaders.get(partition)!.epoch),
      5000,
    );
    for (const { client, partition, seen } of clients) {
      assert.ok(
        seen.leaders.every((l) => l.partition === partition),
        `${client.subject} heard leaders of its partition ${partition} only: ${JSON.stringify(seen.leaders)}`,
      );
      assert.is(
        seen.reregistered.filter((r) => r.reason === "new-leader").length,
        1,
        `${client.subject} registered again once, for the leader that did not know it`,
      );
    }
    assert.ok(new Set(unknowingLeaders).size > 1, "a client without the option hears every partition's leaders");

    // A crash: the coordinator that does not lead partition 0 dies; its partitions go to the other.
    const survivor = leaders.get(0)!.coordinatorId;
    const victim = coordinators.find((c) => c.id !== survivor)!;
    const moved = [...leaders.values()].filter((hb) => hb.coordinatorId === victim.id).map((hb) => hb.partition!);
    assert.is(moved.length, 2);
    const killedAt = performance.now();
    victim.signal("SIGKILL");
    const takeovers = await waitFor(
      "the survivor leads every partition",
      () => {
        const now = leadersNow(observer);
        return moved.every((p) => now.get(p)?.coordinatorId === survivor && now.get(p)!.epoch > leaders.get(p)!.epoch) && now;
      },
      20_000,
    );
    for (const { client, partition } of clients.filter((c) => moved.includes(c.partition))) {
      await waitFor(`${client.subject} hears its partition's new epoch`, () => client.epoch === takeovers.get(partition)!.epoch, 5000);
      await waitFor(
        `${client.subject} NodePresent from the heir`,
        () => rec.seen.some((s) => s.at > killedAt && s.report.clientSubject === client.subject && s.report.type === "NodePresent"),
        10_000,
      );
    }
    await new Promise((r) => setTimeout(r, 1500 + 500)); // past the grace
    for (const { client, partition, seen } of clients) {
      const after = seen.leaders.filter((l) => l.at > killedAt);
      if (moved.includes(partition)) {
        assert.equal(
          after.map((l) => l.epoch),
          [takeovers.get(partition)!.epoch],
          `${client.subject}: one new leader, its partition's`,
        );
      } else {
        assert.equal(after, [], `${client.subject}: another partition's failover is nothing to it`);
        assert.is(client.epoch, leaders.get(partition)!.epoch);
      }
      assert.equal(
        seen.reregistered.filter((r) => r.at > killedAt),
        [],
        `${client.subject}: pinged by its leader, so no registration again`,
      );
    }
    await unknowing.close();
  } finally {
    await Promise.all(clients.map((c) => c.client.close()));
    await Promise.all(coordinators.map((c) => c.kill()));
    await observer.close();
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test.run();
