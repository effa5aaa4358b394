/**
 * The query service and the `status` command against a real nats-server, with two
 * coordinators started through the built CLI and clients on the client library.
 */
import { Svcm, ServiceErrorCodeHeader } from "@nats-io/services";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PresenceClient } from "../../src/client/index.js";
import type { GetResponse, ListResponse, QueryErrorBody, StatsResponse } from "../../src/protocol/query.js";
import { NatsServer } from "../../src/nats/server.js";
import { waitForStream } from "../../harness/presence.js";
import type { ClusterStatus } from "../../src/observe/query/status.js";
import { Observer, runCli, spawnCoordinator, type CoordinatorProcess } from "../../harness/coordinators.js";

const cluster = `qs${process.pid}`;
let server: NatsServer;
let app: NatsConnection;
let observer: Observer;
let coordinators: CoordinatorProcess[] = [];
let clients: PresenceClient[] = [];
let leaderId = "";
let followerId = "";

const request = (subject: string, body = "") => app.request(subject, body, { timeout: 3000 });
const json = <T>(m: Msg) => JSON.parse(m.string()) as T;
const errorCode = (m: Msg) => m.headers?.get(ServiceErrorCodeHeader) ?? "";

/** Every coordinator's service stats, by coordinator id. */
async function serviceStats() {
  const out = new Map<string, { name: string; num_requests: number }[]>();
  for await (const s of await new Svcm(app).client({ strategy: "timer", maxWait: 500 }).stats("presence-coordinator")) {
    if (s.metadata?.clusterId === cluster) out.set(s.metadata.coordinatorId!, s.endpoints ?? []);
  }
  return out;
}

test.before(async () => {
  server = await NatsServer.start();
  app = await connect({ servers: server.url });
  observer = await Observer.start([server.url], cluster);
  // A long dead timeout keeps the silent client suspect for the whole file.
  coordinators = ["qa", "qb"].map((id) =>
    spawnCoordinator({ urls: [server.url], clusterId: cluster, id, args: ["--dead-timeout", "60000"] }),
  );
  await waitForStream(app, cluster);
  const leader = await observer.waitForHeartbeat("a leader", (hb) => !hb.resigning, 15_000);
  leaderId = leader.msg.coordinatorId;
  followerId = leaderId === "qa" ? "qb" : "qa";
  clients = [0, 1, 2, 3].map((i) => new PresenceClient(app, { clusterId: cluster, subject: `app.q.${i}`, metadata: { i } }));
  for (const c of clients) await c.start();
  // One more that answers nothing: suspect after two ping intervals.
  app.publish(`presence.register.${cluster}`, JSON.stringify({ myPresenceSubject: "app.q.silent" }));
  await app.flush();
});

test.after(async () => {
  for (const c of clients) await c.close();
  await Promise.all(coordinators.map((c) => c.kill()));
  await observer.close();
  await app.close();
  await server.stop();
});

test("query - list, get and stats answer from the leader whichever coordinator receives them", async () => {
  // Polls until the leader monitors all five clients.
  let stats: StatsResponse | undefined;
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const m = await request(`presence.query.stats.${cluster}`);
    stats = json<StatsResponse>(m);
    if (errorCode(m) === "" && stats.clients.total === 5) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(stats, "stats answered");
  assert.is(stats!.leader, leaderId);
  assert.is(stats!.coordinatorId, leaderId);
  assert.is(stats!.clusterId, cluster);
  assert.is(stats!.epoch, observer.currentLeader()!.epoch);
  assert.is(stats!.clients.total, 5);
  assert.ok(stats!.uptimeMs > 0);

  // Twenty requests over the queue group: every one answered by the leader, with data.
  for (let i = 0; i < 20; i++) {
    const m = await request(`presence.query.list.${cluster}`);
    assert.is(errorCode(m), "", `request ${i} answered without error`);
    const list = json<ListResponse>(m);
    assert.is(list.leader, leaderId);
    assert.is(list.total, 5);
  }
  // The follower received some of them and forwarded them.
  const perCoordinator = await serviceStats();
  const followerList = perCoordinator.get(followerId)!.find((e) => e.name === "list")!;
  assert.ok(followerList.num_requests > 0, "the follower took its share of the queue group and forwarded it");

  const m = await request(`presence.query.list.${cluster}`, JSON.stringify({ limit: 2 }));
  const page1 = json<ListResponse>(m);
  assert.equal(
    page1.clients.map((c) => c.subject),
    ["app.q.0", "app.q.1"],
    "sorted by subject, two per page",
  );
  assert.is(page1.nextOffset, 2);
  assert.equal(page1.clients[1]!.metadata, { i: 1 });
  const page3 = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ offset: 4, limit: 2 })));
  assert.equal(
    page3.clients.map((c) => c.subject),
    ["app.q.silent"],
  );
  assert.is(page3.nextOffset, null);

  const got = await request(`presence.query.get.${cluster}`, JSON.stringify({ subject: "app.q.2" }));
  const client = json<GetResponse>(got).client;
  assert.is(client.subject, "app.q.2");
  assert.is(client.state, "alive");
  assert.equal(client.metadata, { i: 2 });
  assert.ok(client.lastSeenMs > Date.now() - 60_000);
  const bare = json<GetResponse>(await request(`presence.query.get.${cluster}`, "app.q.3"));
  assert.is(bare.client.subject, "app.q.3", "the bare subject works as the request body too");
  const missing = await request(`presence.query.get.${cluster}`, JSON.stringify({ subject: "app.nobody" }));
  assert.is(errorCode(missing), "404");
  assert.is(json<QueryErrorBody>(missing).error, "not-found");
  const bad = await request(`presence.query.list.${cluster}`, JSON.stringify({ limit: "lots" }));
  assert.is(errorCode(bad), "400");
});

test("query - list filters by state: the silent client is suspect", async () => {
  const deadline = performance.now() + 10_000;
  let list: ListResponse | undefined;
  while (performance.now() < deadline) {
    list = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ state: "suspect" })));
    if (list.total === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(
    list!.clients.map((c) => c.subject),
    ["app.q.silent"],
  );
  assert.is(list!.clients[0]!.state, "suspect");
  assert.ok(list!.clients[0]!.missedPings >= 1);
  const alive = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ state: "alive" })));
  assert.equal(
    alive.clients.map((c) => c.subject),
    ["app.q.0", "app.q.1", "app.q.2", "app.q.3"],
  );
});

test("query - a follower asked directly answers not-leader and names the leader", async () => {
  const m = await request(`presence.query.stats.${cluster}.${followerId}`);
  assert.is(errorCode(m), "421");
  const body = json<QueryErrorBody>(m);
  assert.is(body.error, "not-leader");
  assert.is(body.leader, leaderId);
  assert.is(body.coordinatorId, followerId);
  assert.is(body.role, "follower");
  assert.is(body.epoch, observer.currentLeader()!.epoch);
  const direct = await request(`presence.query.stats.${cluster}.${leaderId}`);
  assert.is(errorCode(direct), "");
  assert.is(json<StatsResponse>(direct).coordinatorId, leaderId);
});

test("query - every coordinator's service is discoverable via $SRV.PING and $SRV.INFO", async () => {
  const seen: { coordinatorId: string; clusterId: string; version: string }[] = [];
  for await (const p of await new Svcm(app).client({ strategy: "timer", maxWait: 500 }).ping("presence-coordinator")) {
    if (p.metadata?.clusterId === cluster)
      seen.push({ coordinatorId: p.metadata.coordinatorId!, clusterId: p.metadata.clusterId, version: p.version });
  }
  assert.equal(seen.map((s) => s.coordinatorId).sort(), ["qa", "qb"]);
  assert.ok(
    seen.every((s) => /^\d+\.\d+\.\d+/.test(s.version)),
    "versioned from package.json",
  );
  const raw = await app.request("$SRV.PING.presence-coordinator", "", { timeout: 1000 });
  assert.is(json<{ name: string }>(raw).name, "presence-coordinator", "the plain $SRV.PING subject answers");
  for await (const info of await new Svcm(app).client({ strategy: "timer", maxWait: 500 }).info("presence-coordinator")) {
    if (info.metadata?.clusterId !== cluster) continue;
    const subjects = info.endpoints.map((e) => e.subject).sort();
    assert.equal(subjects, [
      `presence.query.*.${cluster}.${info.metadata.coordinatorId}`,
      `presence.query.get.${cluster}`,
      `presence.query.list.${cluster}`,
      `presence.query.stats.${cluster}`,
    ]);
  }
});

test("status - prints the leader, epoch, coordinators seen and client counts; --json for scripts", async () => {
  const epoch = observer.currentLeader()!.epoch;
  const text = await runCli(["status", "--nats-url", server.url, "--cluster-id", cluster]);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`leader +${leaderId} \\(epoch ${epoch}`));
  assert.match(text.stdout, /coordinators +2 seen/);
  assert.match(text.stdout, new RegExp(`${followerId} +follower +following ${leaderId} \\(epoch ${epoch}\\)`));
  const js = await runCli(["status", "--nats-url", server.url, "--cluster-id", cluster, "--json"]);
  assert.is(js.code, 0, js.stderr);
  const status = JSON.parse(js.stdout) as ClusterStatus;
  assert.is(status.leader, leaderId);
  assert.is(status.epoch, epoch);
  assert.equal(
    status.coordinators.map((c) => [c.coordinatorId, c.role]).sort(),
    [
      [leaderId, "leader"],
      [followerId, "follower"],
    ].sort(),
  );
  // The four clients on the library answer; the silent one is suspect.
  assert.equal(status.clients, { total: 5, alive: 4, suspect: 1 });
  assert.match(text.stdout, /clients +5 \(alive 4, suspect 1\)/);
});

test("status - exits 1 with a clear message when no coordinator answers", async () => {
  const r = await runCli(["status", "--nats-url", server.url, "--cluster-id", "nobody-here", "--timeout", "500"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /no coordinator of cluster "nobody-here" answered within 500 ms/);
  assert.is(r.stdout, "");
});

test.run();
