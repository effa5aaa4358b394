/**
 * Presence monitoring against a real nats-server. The clients here are written directly
 * against the NATS client (not through project code): they register by publishing JSON
 * and answer pings by replying on their subject.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NatsCluster, NatsServer } from "../../src/services/nats-server.js";
import { reportRecorder, waitForStream } from "../helpers/presence.js";
import { spawnCli, spawnCoordinator, waitFor, type CoordinatorProcess } from "../helpers/coordinators.js";

const DEAD_TIMEOUT_MS = 5000;
const PING_INTERVAL_MS = 750;

/** A presence client as an application would write it with the plain NATS client. */
class RawClient {
  private sub: Subscription | null = null;
  constructor(
    readonly nc: NatsConnection,
    readonly cluster: string,
    readonly subject: string,
  ) {}
  answer(): void {
    this.sub = this.nc.subscribe(this.subject, {
      callback: (_e, m) => {
        m.respond("pong");
      },
    });
  }
  register(extra: Record<string, unknown> = {}): void {
    this.nc.publish(`presence.register.${this.cluster}`, JSON.stringify({ myPresenceSubject: this.subject, ...extra }));
  }
  unregister(): void {
    this.nc.publish(`presence.unregister.${this.cluster}`, JSON.stringify({ myPresenceSubject: this.subject }));
  }
  silence(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}

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
      () => coordinators.find((c) => c.id === leaderId)!.logs().filter((l) => l.message === "refused a registration").length >= 2,
      5000,
    );
    const reasons = coordinators.find((c) => c.id === leaderId)!.logs().filter((l) => l.message === "refused a registration").map((l) => l.reason);
    assert.equal(reasons.sort(), ["not-json", "wildcard"]);
    assert.not.ok(rec.seen.some((s) => s.report.clientSubject === "svc.*"), "a refused subject is never reported or pinged");

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
      () =>
        clients.slice(6).every((c) => rec.of(c.subject).some((s) => s.at > killedAt && s.report.coordinatorId !== leaderId)),
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
    assert.equal(seqs, seqs.map((_, i) => i + 1), "seq rises by one within an epoch");

    // A client that unregisters gets NodeLeft.
    const leaving = clients[19]!;
    leaving.unregister();
    await waitFor("NodeLeft", () => rec.types(leaving.subject).includes("NodeLeft"), 10_000);
    for (const c of clients.slice(6, 19)) assert.not.ok(rec.types(c.subject).includes("NodeDead"), `${c.subject} never dead`);
  } finally {
    await Promise.all(coordinators.map((c) => c.kill()));
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
    await waitFor("a and b present", () => rec.types("cap.a").includes("NodePresent") && rec.types("cap.b").includes("NodePresent"), 10_000);
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
    await new Promise((r) => setTimeout(r, 300));
    assert.is(rec.seen.length, 0, "nobody reports while no coordinator runs");
    coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "second" });
    await waitFor("NodePresent from the coordinator started later", () => rec.types("svc.early").includes("NodePresent"), 15_000);
    assert.is(rec.of("svc.early")[0]!.report.coordinatorId, "second");
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
    const printed = await waitFor(
      "watch --json printing the report",
      () => json.lines.find((l) => l.includes('"svc.json"')),
      5000,
    );
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
    for (const c of coordinators) assert.ok(c.running, `${c.id} still running (exit ${String(c.exitCode)}; last lines: ${c.lines.slice(-5).join(" | ")})`);
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
