/**
 * Presence monitoring against a real nats-server. The clients here are written directly
 * against the NATS client (not through project code): they register by publishing JSON
 * and answer pings by replying on their subject.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeReport, type Report } from "../../src/protocol/presence.js";
import { NatsServer } from "../../src/services/nats-server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../helpers/coordinators.js";

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

/** Waits until a coordinator has created the registration stream. */
async function waitForStream(nc: NatsConnection, cluster: string) {
  const jsm = await jetstreamManager(nc);
  const deadline = performance.now() + 10_000;
  for (;;) {
    try {
      await jsm.streams.info(`presence-registrations-${cluster}`);
      return;
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Records every presence report with its arrival time. */
async function reportRecorder(url: string, cluster: string) {
  const nc = await connect({ servers: url });
  const seen: { at: number; report: Report; encoding: string | undefined }[] = [];
  nc.subscribe(`presence.report.${cluster}`, {
    callback: (_e, m) => {
      const encoding = m.headers?.get("Presence-Encoding");
      seen.push({ at: performance.now(), report: decodeReport(m.data, encoding), encoding });
    },
  });
  await nc.flush();
  return {
    nc,
    seen,
    of: (subject: string) => seen.filter((s) => s.report.clientSubject === subject),
    types: (subject: string) => seen.filter((s) => s.report.clientSubject === subject).map((s) => s.report.type),
  };
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
      assert.ok(rec.types(c.subject).includes("NodeSuspect"), "suspect before dead");
    }
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

test.run();
