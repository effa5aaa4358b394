/**
 * Presence monitoring against a real nats-server. The clients here are written directly
 * against the NATS client (not through project code): they register by publishing JSON
 * and answer pings by replying on their subject.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type Msg } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_LEADER_TIMEOUT_MS, DEFAULT_PING_INTERVAL_MS } from "../../src/config/config.js";
import { presenceResources } from "../../src/protocol/presence.js";
import { NatsCluster, NatsServer } from "../../src/nats/server.js";
import { registrationKey } from "../../src/presence/registration-store.js";
import { pollUntil, RawClient, reportRecorder, waitForStream } from "../../harness/presence.js";
import { spawnCli, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";

const DEAD_TIMEOUT_MS = DEFAULT_DEAD_TIMEOUT_MS;
const PING_INTERVAL_MS = DEFAULT_PING_INTERVAL_MS;
/** How long a registration delivered to a leader that died waits before the next leader gets it (see coordinator.ts). */
const ACK_WAIT_MS = Math.max(5000, 2 * DEFAULT_LEADER_TIMEOUT_MS);

test("presence - 20 clients register, 5 go silent and each gets exactly one NodeDead; a crash failover keeps monitoring", async () => {
  const server = await NatsServer.start();
  const cluster = `pr${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const coordinators: CoordinatorProcess[] = [];
  try {
    for (const id of ["m1", "m2", "m3"]) coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id }));
    const clients = Array.from({ length: 20 }, (_, i) => new RawClient(app, cluster, `svc.worker.${i}`));
    for (const c of clients) c.answer();
    await app.flush();
    await waitForStream(app, cluster);
    // Registered before any coordinator leads (the election takes about 2 s): picked up once one does.
    for (const c of clients) c.register({ zone: "eu-1", index: clients.indexOf(c) });
    await waitFor("NodePresent for all 20", () => clients.every((c) => rec.types(c.subject).includes("NodePresent")), 15_000);
    const present = rec.of("svc.worker.3").find((s) => s.report.type === "NodePresent")!;
    assert.equal(present.report.metadata, { zone: "eu-1", index: 3 }, "extra fields travel as metadata");
    assert.is(present.encoding, "protobuf", "binary by default, named in a header");
    const leaderId = present.report.coordinatorId;

    // Bad input on the registration subject: refused with a logged reason, nothing else changes.
    app.publish(`presence.register.${cluster}`, "not json at all");
    app.publish(`presence.register.${cluster}`, JSON.stringify({ myPresenceSubject: "svc.*" }));
    await waitFor(
      "the refusals logged",
      () =>
        coordinators
          .find((c) => c.id === leaderId)!
          .logs()
          .filter((l) => l.message === "refused a registration").length >= 2,
      5000,
    );
    const reasons = coordinators
      .find((c) => c.id === leaderId)!
      .logs()
      .filter((l) => l.message === "refused a registration")
      .map((l) => l.reason);
    assert.equal(reasons.sort(), ["not-json", "wildcard"]);
    assert.not.ok(
      rec.seen.some((s) => s.report.clientSubject === "svc.*"),
      "a refused subject is never reported or pinged",
    );

    // Five stop answering.
    const silent = clients.slice(0, 5);
    const silencedAt = performance.now();
    for (const c of silent) c.silence();
    await waitFor("NodeDead for the 5 silent clients", () => silent.every((c) => rec.types(c.subject).includes("NodeDead")), 15_000);
    for (const c of silent) {
      const deaths = rec.of(c.subject).filter((s) => s.report.type === "NodeDead");
      assert.is(deaths.length, 1, `exactly one NodeDead for ${c.subject}`);
      const latency = deaths[0]!.at - silencedAt;
      assert.ok(latency < DEAD_TIMEOUT_MS + PING_INTERVAL_MS + 1000, `${c.subject} dead after ${latency.toFixed(0)} ms`);
      // Its last reply came at most about a ping interval before the silence; a silenced
      // client answers "no responders" at once, which must not make it dead early.
      assert.ok(latency > DEAD_TIMEOUT_MS - 2 * PING_INTERVAL_MS, `${c.subject} not dead early (${latency.toFixed(0)} ms)`);
      assert.ok(rec.types(c.subject).includes("NodeSuspect"), "suspect before dead");
    }
    // Their registrations are gone from the KV bucket; the others are still there.
    const kv = await new Kvm(jetstream(app)).open(`presence-registrations-${cluster}`);
    const stored = new Set<string>();
    for await (const key of await kv.keys()) {
      const entry = await kv.get(key);
      if (entry?.operation === "PUT") stored.add(entry.json<{ myPresenceSubject: string }>().myPresenceSubject);
    }
    for (const c of silent) assert.not.ok(stored.has(c.subject), `${c.subject} removed from the bucket`);
    for (const c of clients.slice(5)) assert.ok(stored.has(c.subject), `${c.subject} still stored`);
    const answering = clients.slice(5);
    for (const c of answering) assert.not.ok(rec.types(c.subject).includes("NodeDead"), `${c.subject} is alive`);

    // SIGKILL of the leader: the new leader reports every live client without re-registration.
    const leader = coordinators.find((c) => c.id === leaderId)!;
    const killedAt = performance.now();
    leader.signal("SIGKILL");
    const lateDeath = clients[5]!; // stops answering during the failover
    lateDeath.silence();
    await waitFor(
      "reports from the new leader for every live client",
      () => clients.slice(6).every((c) => rec.of(c.subject).some((s) => s.at > killedAt && s.report.coordinatorId !== leaderId)),
      15_000,
    );
    await waitFor(
      "NodeDead for the client that went silent during the failover",
      () => rec.of(lateDeath.subject).some((s) => s.report.type === "NodeDead"),
      20_000,
    );
    const newLeaderReports = rec.seen.filter((s) => s.at > killedAt && s.report.coordinatorId !== leaderId);
    const newEpoch = newLeaderReports[0]!.report.epoch;
    assert.ok(newEpoch > present.report.epoch, "the new leader reports under a higher epoch");
    // The dead five stay dead: the new leader does not bring them back.
    for (const c of silent) assert.not.ok(newLeaderReports.some((s) => s.report.clientSubject === c.subject));
    // seq rises by one per report within the new epoch.
    const seqs = rec.seen.filter((s) => s.report.epoch === newEpoch).map((s) => s.report.seq);
    assert.equal(
      seqs,
      seqs.map((_, i) => i + 1),
      "seq rises by one within an epoch",
    );

    // A client that unregisters gets NodeLeft.
    const leaving = clients[19]!;
    leaving.unregister();
    await waitFor("NodeLeft", () => rec.types(leaving.subject).includes("NodeLeft"), 10_000);
    for (const c of clients.slice(6, 19)) assert.not.ok(rec.types(c.subject).includes("NodeDead"), `${c.subject} never dead`);
    // Answering all along, through the crash failover: never even suspect, under either leader.
    for (const c of clients.slice(6)) {
      const suspect = rec.of(c.subject).filter((s) => s.report.type === "NodeSuspect");
      assert.equal(
        suspect.map((s) => `${s.report.coordinatorId} epoch ${s.report.epoch}`),
        [],
        `${c.subject} never suspect`,
      );
    }
  } finally {
    await Promise.all(coordinators.map((c) => c.kill()));
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - a leader killed between storing a registration and acknowledging it loses nothing: the next leader reports the client", async () => {
  const server = await NatsServer.start();
  const cluster = `held${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const jsm = await jetstreamManager(app);
  const bucket = presenceResources.registrationBucket(cluster);
  const kvStream = `KV_${bucket}`;
  let leader: CoordinatorProcess | undefined;
  let next: CoordinatorProcess | undefined;
  try {
    leader = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "k1" });
    await waitFor("k1 monitoring", () => leader!.logs().some((l) => l.message === "loaded stored registrations"), 15_000);
    next = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "k2" });
    await waitFor("k2 following k1", () => next!.logs().some((l) => l.message === "following the leader"), 15_000);
    const steady = new RawClient(app, cluster, "svc.steady");
    const held = new RawClient(app, cluster, "svc.held");
    const stored = new RawClient(app, cluster, "svc.stored");
    for (const c of [steady, held, stored]) c.answer();
    await app.flush();
    steady.register();
    const before = await waitFor(
      "svc.steady present under k1",
      () => rec.of(steady.subject).find((s) => s.report.type === "NodePresent"),
      10_000,
    );

    // How the puts are held: the bucket's stream stops listening on its subjects and the test
    // subscribes to them instead, so the leader's KV put (a request on $KV.<bucket>.<key>)
    // arrives here and is never answered. This is deterministic: when the test holds the
    // request, the message has been delivered to the leader and its put is in flight, and
    // nothing of it can land in the bucket. (A SIGSTOP timed on the delivery alone would
    // race the put, which takes about a millisecond; a cluster losing quorum would also stop
    // the lease and the stream.)
    const kvSubjects = (await jsm.streams.info(kvStream)).config.subjects;
    await jsm.streams.update(kvStream, { subjects: [`held.${cluster}`] });
    const puts: Msg[] = [];
    app.subscribe(`$KV.${bucket}.>`, { callback: (_e, m) => void puts.push(m) });
    await app.flush();
    held.register();
    stored.register();
    const putOf = (c: RawClient) => puts.find((m) => m.subject === `$KV.${bucket}.${registrationKey(c.subject)}`);
    await waitFor("both puts held", () => putOf(held) && putOf(stored), 10_000);
    const consumer = await jsm.consumers.info(presenceResources.registrationStream(cluster), presenceResources.registrationConsumer);
    assert.is(
      consumer.num_ack_pending,
      2,
      "both registrations delivered to the leader and neither acknowledged while their puts are in flight",
    );

    // The leader freezes with both puts unanswered. One of them then lands in the bucket (the
    // leader died after storing, before acknowledging); the other never does (it died storing).
    leader.signal("SIGSTOP");
    await jsm.streams.update(kvStream, { subjects: kvSubjects });
    const landed = putOf(stored)!;
    await jetstream(app).publish(landed.subject, landed.data);
    leader.signal("SIGKILL");
    await leader.exited;

    for (const c of [held, stored]) {
      const present = await waitFor(
        `NodePresent of ${c.subject} from the next leader`,
        () => rec.of(c.subject).find((s) => s.report.type === "NodePresent" && s.report.coordinatorId === "k2"),
        30_000,
      );
      assert.ok(present.report.epoch > before.report.epoch, `${c.subject} reported under the new epoch`);
    }
    assert.not.ok(
      rec.seen.some((s) => s.report.coordinatorId === "k1" && s.report.clientSubject !== steady.subject),
      "k1 reported neither held client",
    );
    assert.not.ok(rec.types(steady.subject).includes("NodeSuspect"), "a client that answers is never suspect across the crash failover");
  } finally {
    await Promise.all([leader?.kill(), next?.kill()]);
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - a client that unregistered is never reported by the leader that takes over after a crash", async () => {
  const server = await NatsServer.start();
  const cluster = `left${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  let leader: CoordinatorProcess | undefined;
  let next: CoordinatorProcess | undefined;
  try {
    leader = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "u1" });
    await waitFor("u1 monitoring", () => leader!.logs().some((l) => l.message === "loaded stored registrations"), 15_000);
    next = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "u2" });
    await waitFor("u2 following u1", () => next!.logs().some((l) => l.message === "following the leader"), 15_000);
    const stays = new RawClient(app, cluster, "svc.stays");
    // It goes on answering after it left: only its leave keeps it from being monitored.
    const gone = new RawClient(app, cluster, "svc.gone");
    for (const c of [stays, gone]) c.answer();
    await app.flush();
    stays.register();
    gone.register();
    await waitFor(
      "both present",
      () => rec.types(stays.subject).includes("NodePresent") && rec.types(gone.subject).includes("NodePresent"),
      10_000,
    );
    gone.unregister();
    await waitFor("NodeLeft of svc.gone", () => rec.types(gone.subject).includes("NodeLeft"), 10_000);
    leader.signal("SIGKILL");
    await leader.exited;
    const takeover = await waitFor(
      "u2 reporting svc.stays",
      () => rec.of(stays.subject).find((s) => s.report.coordinatorId === "u2"),
      15_000,
    );
    // Watched over a dead timeout and two ping intervals of u2 monitoring (u2 goes on
    // reporting svc.stays all along), which also covers the ack wait after which a leave that
    // was not acknowledged would be delivered again.
    const window = Math.max(DEAD_TIMEOUT_MS, ACK_WAIT_MS) + 2 * PING_INTERVAL_MS;
    await waitFor(
      "u2 monitoring for the whole window",
      () => rec.of(stays.subject).some((s) => s.report.coordinatorId === "u2" && s.at >= takeover.at + window),
      window + 15_000,
    );
    const afterLeaving = rec.of(gone.subject).filter((s) => s.report.coordinatorId === "u2");
    assert.equal(
      afterLeaving.map((s) => s.report.type),
      [],
      "the new leader never reports a client that left",
    );
    assert.not.ok(rec.types(stays.subject).includes("NodeSuspect"), "a client that answers is never suspect across the crash failover");
  } finally {
    await Promise.all([leader?.kill(), next?.kill()]);
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - past --max-clients a new subject is refused with a logged reason; known ones may register again; a leave makes room", async () => {
  const server = await NatsServer.start();
  const cluster = `max${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "m1", args: ["--max-clients", "2"] });
  try {
    await waitFor("the coordinator leading", () => coordinator.logs().some((l) => l.message === "became leader"), 15_000);
    const [a, b, c] = ["cap.a", "cap.b", "cap.c"].map((subject) => new RawClient(app, cluster, subject));
    for (const client of [a!, b!, c!]) client.answer();
    a!.register();
    b!.register();
    await waitFor(
      "a and b present",
      () => rec.types("cap.a").includes("NodePresent") && rec.types("cap.b").includes("NodePresent"),
      10_000,
    );
    c!.register();
    const refusal = await waitFor(
      "the refusal of cap.c",
      () => coordinator.logs().find((l) => l.message === "refused a registration" && l.subject === "cap.c"),
      10_000,
    );
    assert.is(refusal.reason, "max-clients");
    assert.match(String(refusal.error), /already monitors 2 clients \(--max-clients 2\)/);
    // A monitored client registering again is not a new one.
    const before = rec.types("cap.a").length;
    a!.register();
    await waitFor("cap.a present again", () => rec.types("cap.a").slice(before).includes("NodePresent"), 10_000);
    assert.not.ok(rec.types("cap.c").includes("NodePresent"), "cap.c is not monitored");
    // A leave makes room.
    b!.unregister();
    await waitFor("cap.b left", () => rec.types("cap.b").includes("NodeLeft"), 10_000);
    c!.register();
    await waitFor("cap.c present once there is room", () => rec.types("cap.c").includes("NodePresent"), 10_000);
  } finally {
    await coordinator.kill();
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - a registration published while no coordinator runs is picked up when one starts", async () => {
  const server = await NatsServer.start();
  const cluster = `idle${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  let coordinator: CoordinatorProcess | undefined;
  try {
    // A coordinator ran once (creating the stream and buckets) and stopped.
    coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "first" });
    await waitForStream(app, cluster);
    coordinator.signal("SIGTERM");
    assert.is(await coordinator.exited, 0);
    const client = new RawClient(app, cluster, "svc.early");
    client.answer();
    client.register();
    await app.flush();
    // The registration waits in the stream, delivered to nobody, until a leader pulls it.
    const jsm = await jetstreamManager(app);
    const stream = presenceResources.registrationStream(cluster);
    const waiting = () => jsm.consumers.info(stream, presenceResources.registrationConsumer);
    const kept = await pollUntil(
      "the registration kept in the stream",
      async () => {
        const info = await waiting();
        return info.num_pending === 1 && info;
      },
      10_000,
    );
    assert.is(kept.num_ack_pending, 0, "delivered to nobody while no coordinator runs");
    coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "second" });
    await waitFor("NodePresent from the coordinator started later", () => rec.types("svc.early").includes("NodePresent"), 15_000);
    // Stored in the bucket, then acknowledged: gone from the stream.
    const kv = await new Kvm(jetstream(app)).open(presenceResources.registrationBucket(cluster));
    assert.is((await kv.get(registrationKey("svc.early")))?.operation, "PUT", "stored in the bucket");
    await pollUntil("the registration acknowledged", async () => (await jsm.streams.info(stream)).state.messages === 0, 10_000);
  } finally {
    await coordinator?.kill();
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - --report-encoding json publishes the same fields as JSON, and watch prints them", async () => {
  const server = await NatsServer.start();
  const cluster = `js${process.pid}`;
  const rec = await reportRecorder(server.url, cluster);
  const app = await connect({ servers: server.url });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "j1", args: ["--report-encoding", "json"] });
  const text = spawnCli("watch-text", ["watch", "-u", server.url, "--cluster-id", cluster]);
  const json = spawnCli("watch-json", ["watch", "-u", server.url, "--cluster-id", cluster, "--json"]);
  try {
    await waitForStream(app, cluster);
    await waitFor("both watchers subscribed", () => text.lines.length > 0 && json.lines.length > 0, 10_000);
    const client = new RawClient(app, cluster, "svc.json");
    client.answer();
    client.register({ role: "api" });
    await waitFor("NodePresent", () => rec.types("svc.json").includes("NodePresent"), 15_000);
    const seen = rec.of("svc.json")[0]!;
    assert.is(seen.encoding, "json");
    assert.equal(seen.report.metadata, { role: "api" });
    const printed = await waitFor("watch --json printing the report", () => json.lines.find((l) => l.includes('"svc.json"')), 5000);
    const parsed = JSON.parse(printed) as Record<string, unknown>;
    assert.is(parsed.type, "NodePresent");
    assert.is(parsed.clientSubject, "svc.json");
    assert.is(parsed.coordinatorId, "j1");
    const line = await waitFor("watch printing a text line", () => text.lines.find((l) => l.includes("svc.json")), 5000);
    assert.match(line, /NodePresent +svc\.json +alive/);
    assert.match(line, /leader=j1 epoch=\d+ seq=1 +\{"role":"api"\}/);
    text.signal("SIGINT");
    assert.is(await text.exited, 0, "watch stops cleanly on Ctrl-C");
  } finally {
    await Promise.all([coordinator.kill(), text.kill(), json.kill()]);
    await app.close();
    await rec.nc.close();
    await server.stop();
  }
});

test("presence - on a 3-node cluster with replicated buckets, monitoring survives stopping one NATS server", async () => {
  const cluster = await NatsCluster.start(3);
  const name = `r3${process.pid}`;
  const urls = cluster.urls;
  const rec = await reportRecorder(urls[0]!, name);
  const app = await connect({ servers: urls[0]! });
  const coordinators: CoordinatorProcess[] = [];
  try {
    for (const [i, id] of ["q1", "q2", "q3"].entries()) {
      const seeds = [...urls.slice(i), ...urls.slice(0, i)].join(",");
      coordinators.push(spawnCoordinator({ urls: [seeds], clusterId: name, id, args: ["--kv-replicas", "3"] }));
    }
    // A replicated stream needs its own leader before it stores a plain publish.
    await waitFor(
      "a leader monitoring",
      () => coordinators.some((c) => c.logs().some((l) => l.message === "loaded stored registrations")),
      20_000,
    );
    const clients = Array.from({ length: 10 }, (_, i) => new RawClient(app, name, `r3.client.${i}`));
    for (const c of clients) c.answer();
    await app.flush();
    for (const c of clients) c.register();
    await waitFor("NodePresent for all 10", () => clients.every((c) => rec.types(c.subject).includes("NodePresent")), 20_000);
    // Stop a server that neither the observer nor the clients use (the third one).
    const stoppedAt = performance.now();
    await cluster.servers[2]!.stop({ keepStore: true });
    // Monitoring goes on: every client gets reports after the loss, and none is declared dead.
    await waitFor(
      "reports for every client after the server stopped",
      () => clients.every((c) => rec.of(c.subject).some((s) => s.at > stoppedAt + 2000)),
      20_000,
    );
    // A client that goes silent now is still detected.
    clients[0]!.silence();
    await waitFor("NodeDead after the server loss", () => rec.types(clients[0]!.subject).includes("NodeDead"), 20_000);
    for (const c of clients.slice(1)) assert.not.ok(rec.types(c.subject).includes("NodeDead"), `${c.subject} is alive`);
    for (const c of coordinators)
      assert.ok(c.running, `${c.id} still running (exit ${String(c.exitCode)}; last lines: ${c.lines.slice(-5).join(" | ")})`);
    // Epochs of presence reports never go backwards.
    let highest = 0;
    for (const s of rec.seen) {
      assert.ok(s.report.epoch >= highest, "epochs only grow");
      highest = s.report.epoch;
    }
  } finally {
    await Promise.all(coordinators.map((c) => c.kill()));
    await app.close();
    await rec.nc.close();
    await cluster.stop();
  }
});

test.run();
