/**
 * The client library against a real nats-server and coordinators started through the built
 * CLI: PresenceClient (register, answer pings, re-register, unregister) and watchPresence
 * (the live view, its events, stale epochs dropped).
 */
import { connect, headers } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PresenceClient, PresenceClientError, watchPresence, type PresenceWatchEvents } from "../../src/client/index.js";
import { encodeReport, RegistrationError, type Report } from "../../src/protocol/presence.js";
import { NatsServer } from "../../src/nats/server.js";
import { reportRecorder, waitForStream } from "../../harness/presence.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";

const PING_INTERVAL_MS = 750;

/** Waits until a leader monitors (it logged that it loaded the stored registrations). */
function waitForMonitoring(coordinators: CoordinatorProcess[], timeoutMs = 15_000) {
  return waitFor(
    "a leader monitoring",
    () => coordinators.find((c) => c.logs().some((l) => l.message === "loaded stored registrations")),
    timeoutMs,
  );
}

test("client - refuses a subject or cluster id the coordinator would refuse, before touching NATS", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  try {
    const wildcard = (() => {
      try {
        new PresenceClient(nc, { clusterId: "c", subject: "svc.*" });
      } catch (err) {
        return err;
      }
      return null;
    })();
    assert.instance(wildcard, RegistrationError);
    assert.is((wildcard as RegistrationError).reason, "wildcard");
    assert.throws(
      () => new PresenceClient(nc, { clusterId: "c", subject: "_INBOX.x" }),
      (e: unknown) => e instanceof RegistrationError && e.reason === "reserved-prefix",
    );
    assert.throws(
      () => new PresenceClient(nc, { clusterId: "a.b", subject: "svc.a" }),
      (e: unknown) => e instanceof PresenceClientError && e.code === "invalid-options",
    );
    assert.throws(
      () => new PresenceClient(nc, { clusterId: "c", subject: "svc.a", metadata: { blob: "x".repeat(70_000) } }),
      (e: unknown) => e instanceof RegistrationError && e.reason === "too-large",
    );
  } finally {
    await nc.close();
    await server.stop();
  }
});

test("client - registers and is reported NodePresent, answers pings (never suspect), and is reported NodeLeft on close", async () => {
  const server = await NatsServer.start();
  const cluster = `cl${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "k1" });
  try {
    await waitForStream(app, cluster);
    const client = new PresenceClient(app, { clusterId: cluster, subject: "app.api.1", metadata: { zone: "eu-1" } });
    const events: string[] = [];
    client.on("registered", () => events.push("registered"));
    client.on("pinged", () => events.push("pinged"));
    client.on("closed", () => events.push("closed"));
    await client.start();
    assert.is(client.status, "registered");
    await waitFor(
      "NodePresent",
      () => rec.seen.find((s) => s.report.clientSubject === "app.api.1" && s.report.type === "NodePresent"),
      15_000,
    );
    const present = rec.seen.find((s) => s.report.type === "NodePresent")!;
    assert.equal(present.report.metadata, { zone: "eu-1" }, "metadata travels in the reports");
    // Several ping intervals: pinged each time, never suspect.
    const since = performance.now();
    await waitFor("five pings answered", () => events.filter((e) => e === "pinged").length >= 5, 10_000);
    await new Promise((r) => setTimeout(r, 2 * PING_INTERVAL_MS));
    assert.not.ok(rec.types("app.api.1").includes("NodeSuspect"), `never suspect: ${rec.types("app.api.1").join(",")}`);
    assert.ok(rec.types("app.api.1", since).includes("NodeState"), "keeps being reported");
    await client.close();
    assert.is(client.status, "closed");
    await waitFor("NodeLeft", () => rec.types("app.api.1").includes("NodeLeft"), 10_000);
    assert.not.ok(rec.types("app.api.1").includes("NodeDead"));
    assert.equal(
      events.filter((e) => e !== "pinged"),
      ["registered", "closed"],
    );
    assert.not.ok(app.isClosed(), "the application's connection stays open");
    await client.close(); // twice is fine
  } finally {
    await coordinator.kill();
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("client - re-registers after a reconnect", async () => {
  const server = await NatsServer.start();
  const cluster = `rc${process.pid}`;
  const app = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  let coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "r1" });
  try {
    await waitForStream(app, cluster);
    await waitForMonitoring([coordinator]);
    const client = new PresenceClient(app, { clusterId: cluster, subject: "app.reconnecting" });
    const reregistered: string[] = [];
    let pings = 0;
    client.on("reregistered", (e) => reregistered.push(e.reason));
    client.on("pinged", () => (pings += 1));
    await client.start();
    await waitFor("a ping", () => pings > 0, 10_000);
    assert.equal(reregistered, []);
    // The server goes away and comes back on the same port with the same store.
    await coordinator.kill();
    await server.stop({ keepStore: true });
    await server.launch();
    await waitFor("the reconnect re-registration", () => reregistered.includes("reconnect"), 15_000);
    // A coordinator started now finds the client registered and monitors it.
    const rec = await reportRecorder(server.url, cluster);
    coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "r2" });
    await waitFor("NodePresent after the restart", () => rec.types("app.reconnecting").includes("NodePresent"), 15_000);
    await client.close();
    await rec.nc.close();
  } finally {
    await coordinator.kill();
    await app.close();
    await server.stop();
  }
});

test("client - registers again when a leader does not know it, but not when a new leader pings it", async () => {
  const server = await NatsServer.start();
  const cluster = `nl${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const observer = await Observer.start([server.url], cluster);
  const coordinators: CoordinatorProcess[] = [];
  try {
    // Registered before any coordinator ever ran: no stream stores it, so no leader will know it.
    const client = new PresenceClient(app, { clusterId: cluster, subject: "app.early", newLeaderGraceMs: 1500 });
    const reregistered: { reason: string; at: number }[] = [];
    client.on("reregistered", (e) => reregistered.push({ reason: e.reason, at: performance.now() }));
    await client.start();
    for (const id of ["e1", "e2"]) coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id }));
    await waitFor("re-registered for the leader that does not know it", () => reregistered.some((r) => r.reason === "new-leader"), 20_000);
    await waitFor("NodePresent", () => rec.types("app.early").includes("NodePresent"), 10_000);
    assert.is(reregistered.length, 1);
    // A crash failover: the new leader loads the registration and pings; no re-registration.
    const leader = observer.currentLeader()!;
    const victim = coordinators.find((c) => c.id === leader.coordinatorId)!;
    const killedAt = performance.now();
    victim.signal("SIGKILL");
    const next = await observer.waitForHeartbeat("a new leader", (hb) => hb.epoch > leader.epoch && !hb.resigning, 15_000, killedAt);
    await waitFor("the client hears the new epoch", () => client.epoch === next.msg.epoch, 5000);
    await waitFor(
      "NodePresent from the new leader",
      () => rec.seen.some((s) => s.at > killedAt && s.report.clientSubject === "app.early" && s.report.type === "NodePresent"),
      10_000,
    );
    await new Promise((r) => setTimeout(r, 1500 + 500)); // past the grace
    assert.is(reregistered.length, 1, "a new leader that pings the client gets no re-registration");
    const presents = rec.seen.filter((s) => s.at > killedAt && s.report.clientSubject === "app.early" && s.report.type === "NodePresent");
    assert.is(presents.length, 1, "exactly one NodePresent under the new leader (from its load)");
    await client.close();
  } finally {
    await Promise.all(coordinators.map((c) => c.kill()));
    await observer.close();
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("watch - watchPresence shows join, update and leave, and ignores a forged stale-epoch report", async () => {
  const server = await NatsServer.start();
  const cluster = `wp${process.pid}`;
  const app = await connect({ servers: server.url });
  const viewer = await connect({ servers: server.url });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "w1", args: ["--report-encoding", "json"] });
  try {
    await waitForStream(app, cluster);
    await waitForMonitoring([coordinator]);
    const watch = await watchPresence(viewer, { clusterId: cluster });
    const events: { type: keyof PresenceWatchEvents; subject: string; detail: string }[] = [];
    watch.on("join", ({ entry }) => events.push({ type: "join", subject: entry.subject, detail: entry.state }));
    watch.on("update", ({ entry, previous }) =>
      events.push({ type: "update", subject: entry.subject, detail: `${previous.state}->${entry.state}` }),
    );
    watch.on("leave", ({ subject, reason }) => events.push({ type: "leave", subject, detail: reason }));
    const stale: number[] = [];
    watch.on("stale", ({ report }) => stale.push(report.epoch));

    const a = new PresenceClient(app, { clusterId: cluster, subject: "app.a", metadata: { n: 1 } });
    const b = new PresenceClient(app, { clusterId: cluster, subject: "app.b" });
    await a.start();
    await b.start();
    await waitFor("both joined", () => watch.get("app.a") && watch.get("app.b"), 15_000);
    assert.equal(watch.get("app.a")!.metadata, { n: 1 });
    assert.is(watch.get("app.a")!.state, "alive");
    assert.equal(
      watch.list().map((e) => e.subject),
      ["app.a", "app.b"],
    );
    const epoch = watch.epoch;
    assert.ok(epoch > 0);
    assert.is(watch.leader, "w1");

    // A forged report of an older epoch saying app.a is dead: dropped, app.a stays.
    const h = headers();
    h.set("Presence-Encoding", "protobuf");
    const forged: Report = {
      type: "NodeDead",
      clusterId: cluster,
      coordinatorId: "old-leader",
      epoch: epoch - 1,
      seq: 99,
      ts: Date.now(),
      clientSubject: "app.a",
      state: "dead",
      lastSeenMs: 0,
      rttMs: 0,
      missedPings: 5,
      metadata: {},
    };
    app.publish(`presence.report.${cluster}`, encodeReport(forged, "protobuf"), { headers: h });
    await waitFor("the forged report dropped", () => stale.includes(epoch - 1), 5000);
    assert.ok(watch.get("app.a"), "a stale epoch's NodeDead does not remove the client");

    // b stops answering (closing its subscription without unregistering): suspect, then dead.
    const silent = await connect({ servers: server.url });
    const c = new PresenceClient(silent, { clusterId: cluster, subject: "app.c" });
    await c.start();
    await waitFor("c joined", () => watch.get("app.c"), 10_000);
    await silent.close(); // the process "dies": no unregistration
    await waitFor(
      "c suspect (update)",
      () => events.some((e) => e.type === "update" && e.subject === "app.c" && e.detail === "alive->suspect"),
      10_000,
    );
    await waitFor("c dead (leave)", () => events.some((e) => e.type === "leave" && e.subject === "app.c" && e.detail === "dead"), 15_000);
    assert.is(watch.get("app.c"), undefined);
    // a leaves gracefully.
    await a.close();
    await waitFor("a left (leave)", () => events.some((e) => e.type === "leave" && e.subject === "app.a" && e.detail === "left"), 10_000);
    assert.equal(
      watch.list().map((e) => e.subject),
      ["app.b"],
    );
    assert.equal(
      events.filter((e) => e.type === "join").map((e) => e.subject),
      ["app.a", "app.b", "app.c"],
      "one join per client",
    );
    await b.close();
    await watch.stop();
  } finally {
    await coordinator.kill();
    await app.close();
    await viewer.close();
    await server.stop();
  }
});

test.run();
