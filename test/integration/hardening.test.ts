/**
 * Hostile and heavy input against real nats-servers and coordinators started through the
 * CLI: the floods of harness/flood.ts at full size, SIGTERM of a leader in the middle of a
 * registration flood, and clients that misbehave (huge replies, late replies, answering
 * for another client, registering another client's subject, a subject in the
 * coordinators' own namespaces).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { floodProblems, runFlood } from "../../harness/flood.js";
import { Helper } from "../../harness/processes.js";
import { SimulatedClients } from "../../harness/client-sim.js";
import { Kvm } from "@nats-io/kv";
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_PING_INTERVAL_MS } from "../../src/config/config.js";
import { MAX_REGISTRATION_BYTES, presenceResources, presenceSubjects } from "../../src/protocol/presence.js";
import { registrationKey } from "../../src/presence/registration-store.js";
import { NatsServer } from "../../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import { pollUntil, reportRecorder, waitForStream } from "../../harness/presence.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEAD_TIMEOUT_MS = DEFAULT_DEAD_TIMEOUT_MS;
const PING_INTERVAL_MS = DEFAULT_PING_INTERVAL_MS;

for (const kind of ["storm", "new-subjects", "duplicates", "garbage"] as const) {
  test(`flood - ${kind}: existing clients stay alive, nothing valid is lost, memory and logs stay bounded`, async () => {
    const r = await runFlood(kind);
    assert.equal(floodProblems(r), [], JSON.stringify(r, null, 2));
    if (kind === "storm" || kind === "new-subjects") assert.is(r.messages, 100_000);
    if (kind === "new-subjects")
      assert.is(r.refused["max-clients"], 100_000 - 2800, "every registration past the limit refused, and counted");
    if (kind === "garbage") {
      assert.ok(r.bytes >= 100 * 2 ** 20, `100 MB of garbage (${r.bytes} bytes)`);
      assert.is((r.refused["not-json"] ?? 0) + (r.refused["missing-subject"] ?? 0) + (r.refused.wildcard ?? 0), 11_600);
    }
  });
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  const how = signal === "SIGTERM" ? "SIGTERM of the leader (a graceful handoff)" : "SIGKILL of the leader (a crash)";
  test(`shutdown - ${how} in the middle of a registration flood loses no acknowledged registration, and no answering client is suspect`, async () => {
    const server = await NatsServer.start();
    const cluster = `${signal === "SIGTERM" ? "term" : "kill"}${process.pid}`;
    const coordinators: CoordinatorProcess[] = [];
    const sim = Helper.start(new URL("../../harness/client-sim.ts", import.meta.url), [server.url, cluster, "load"]);
    let nc: NatsConnection | undefined;
    const rec = await reportRecorder(server.url, cluster);
    try {
      await sim.ready;
      for (const id of ["ta", "tb"]) coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id }));
      nc = await connect({ servers: server.url });
      await waitForStream(nc, cluster);
      const leader = await waitFor("a leader", () => coordinators.find((c) => c.logs().some((l) => l.message === "became leader")), 15_000);
      const js = jetstream(nc);
      const total = 2000;
      const acked = new Set<string>();
      const inFlight = new Set<Promise<unknown>>();
      let signalled = false;
      for (let i = 0; i < total; i++) {
        const subject = SimulatedClients.subject("load", i);
        const p = js
          .publish(presenceSubjects.register(cluster), JSON.stringify({ myPresenceSubject: subject }))
          .then(() => acked.add(subject));
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= 200) await Promise.race(inFlight);
        if (!signalled && acked.size >= total / 4) {
          signalled = true;
          leader.signal(signal); // registrations keep coming while it hands over, or while the next one waits out its timeout
        }
        if (i % 100 === 0) await sleep(5);
      }
      await Promise.all(inFlight);
      assert.is(acked.size, total, "JetStream acknowledged every registration");
      if (signal === "SIGTERM") assert.is(await leader.exited, 0, "the old leader drained and exited 0");
      else await leader.exited;
      const next = coordinators.find((c) => c !== leader)!;
      const nextEpoch = await waitFor(
        "the new leader's epoch",
        () => rec.seen.find((s) => s.report.coordinatorId === next.id)?.report.epoch,
        15_000,
      );
      // Every acknowledged registration, stored by the old leader or the new one, is monitored by the new one.
      const monitored = () => new Set(rec.seen.filter((s) => s.report.epoch === nextEpoch).map((s) => s.report.clientSubject));
      await waitFor(
        "a report from the new leader for every acknowledged registration",
        () => {
          const m = monitored();
          return [...acked].every((s) => m.has(s));
        },
        30_000,
      ).catch((err: unknown) => {
        const m = monitored();
        const missing = [...acked].filter((s) => !m.has(s));
        throw new Error(
          `${missing.length} acknowledged registrations not monitored by the new leader, e.g. ${missing.slice(0, 3).join(", ")}: ${String(err)}`,
        );
      });
      // Each watched for a state interval at least (two ping intervals): NodeState from the new leader for every one.
      await waitFor(
        "NodeState from the new leader for every acknowledged registration",
        () => {
          const m = new Set(
            rec.seen.filter((s) => s.report.epoch === nextEpoch && s.report.type === "NodeState").map((s) => s.report.clientSubject),
          );
          return [...acked].every((s) => m.has(s));
        },
        30_000,
      );
      assert.not.ok(
        rec.seen.some((s) => s.report.type === "NodeDead"),
        "no client that answers is reported dead",
      );
      const suspect = rec.seen.filter((s) => s.report.type === "NodeSuspect");
      assert.equal(
        suspect.slice(0, 5).map((s) => `${s.report.clientSubject} by ${s.report.coordinatorId} epoch ${s.report.epoch}`),
        [],
        `no client that answers is suspect (${suspect.length} NodeSuspect)`,
      );
    } finally {
      await nc?.close();
      await rec.nc.close();
      await Promise.all(coordinators.map((c) => c.kill()));
      await sim.stop();
      await server.stop();
    }
  });
}

/** One server, one coordinator, a report recorder and a connection for test clients. */
async function withLeader(
  body: (s: {
    url: string;
    cluster: string;
    app: NatsConnection;
    rec: Awaited<ReturnType<typeof reportRecorder>>;
    leader: CoordinatorProcess;
  }) => Promise<void>,
  server?: NatsServer,
  args: string[] = [],
  connectAs: Record<string, string> = {},
) {
  const own = server === undefined;
  const srv = server ?? (await NatsServer.start());
  const cluster = `hostile${process.pid}x${Math.floor(Math.random() * 1e6)}`;
  const leader = spawnCoordinator({ urls: [srv.url], clusterId: cluster, id: "h1", args });
  const rec = await reportRecorder(srv.url, cluster, connectAs);
  const app = await connect({ servers: srv.url, ...connectAs });
  try {
    await waitForStream(app, cluster);
    await waitFor("the leader", () => leader.logs().some((l) => l.message === "became leader"), 15_000);
    await body({ url: srv.url, cluster, app, rec, leader });
  } catch (err) {
    process.stderr.write(`--- last log lines of ${leader.id} ---\n${leader.lines.slice(-15).join("\n")}\n`);
    throw err;
  } finally {
    await app.close();
    await rec.nc.close();
    await leader.kill();
    if (own) await srv.stop();
  }
}

const register = (app: NatsConnection, cluster: string, subject: string, metadata: Record<string, unknown> = {}) =>
  app.publish(presenceSubjects.register(cluster), JSON.stringify({ myPresenceSubject: subject, ...metadata }));

test("hostile - a client whose replies are huge is alive like any other, and nobody else suffers", async () => {
  await withLeader(async ({ cluster, app, rec }) => {
    const huge = new Uint8Array(512 * 1024);
    app.subscribe("svc.huge", { callback: (_e, m) => void m.respond(huge) });
    app.subscribe("svc.plain", { callback: (_e, m) => void m.respond() });
    await app.flush();
    register(app, cluster, "svc.huge");
    register(app, cluster, "svc.plain");
    await waitFor(
      "both present",
      () => rec.types("svc.huge").includes("NodePresent") && rec.types("svc.plain").includes("NodePresent"),
      10_000,
    );
    await sleep(DEAD_TIMEOUT_MS + 1000);
    for (const s of ["svc.huge", "svc.plain"]) {
      const types = rec.types(s);
      assert.not.ok(types.includes("NodeSuspect") || types.includes("NodeDead"), `${s}: ${types.join(", ")}`);
      assert.ok(types.filter((t) => t === "NodeState").length >= 3, `${s} is reported alive every state interval`);
    }
  });
});

test("hostile - a reply after the ping interval does not count: a client that always answers late is suspect, then dead", async () => {
  await withLeader(async ({ cluster, app, rec }) => {
    app.subscribe("svc.slow", { callback: (_e, m) => void setTimeout(() => m.respond(), PING_INTERVAL_MS + 500) });
    await app.flush();
    register(app, cluster, "svc.slow");
    const dead = await waitFor(
      "NodeDead svc.slow",
      () => rec.of("svc.slow").find((s) => s.report.type === "NodeDead"),
      DEAD_TIMEOUT_MS + 4 * PING_INTERVAL_MS,
    );
    assert.ok(rec.types("svc.slow").includes("NodeSuspect"));
    assert.not.ok(rec.types("svc.slow").includes("NodeRecovered"), "no late reply was taken for life");
    assert.is(dead.report.state, "dead");
  });
});

test("hostile - re-registering another client's subject replaces its metadata but cannot keep it alive", async () => {
  await withLeader(async ({ cluster, app, rec }) => {
    const alice = app.subscribe("svc.alice", { callback: (_e, m) => void m.respond() });
    await app.flush();
    register(app, cluster, "svc.alice", { owner: "alice" });
    await waitFor("svc.alice alive", () => rec.types("svc.alice").includes("NodeState"), 5000);
    // Someone else registers the same subject: same subject, same client.
    register(app, cluster, "svc.alice", { owner: "mallory" });
    const present = await waitFor(
      "NodePresent with the new metadata",
      () => rec.of("svc.alice").find((s) => s.report.type === "NodePresent" && s.report.metadata.owner === "mallory"),
      5000,
    );
    assert.is(present.report.state, "alive");
    // Alice dies; the impostor registers her subject every half second to keep her "alive".
    alice.unsubscribe();
    const diedAt = performance.now();
    const keepAlive = setInterval(() => register(app, cluster, "svc.alice", { owner: "mallory" }), 500);
    try {
      const dead = await waitFor(
        "NodeDead svc.alice",
        () => rec.of("svc.alice").find((s) => s.report.type === "NodeDead"),
        DEAD_TIMEOUT_MS + 3 * PING_INTERVAL_MS,
      );
      assert.ok(dead.at - diedAt <= DEAD_TIMEOUT_MS + PING_INTERVAL_MS + 500, `dead on time: ${(dead.at - diedAt).toFixed(0)} ms`);
      assert.ok(
        rec.of("svc.alice").some((s) => s.report.type === "NodePresent" && s.report.state === "suspect"),
        "registrations while she was silent were reported with her real state",
      );
    } finally {
      clearInterval(keepAlive);
    }
    assert.is(rec.of("svc.alice").filter((s) => s.report.type === "NodeDead").length, 1);
  });
});

/**
 * Counts the pings that reach `subjects`, as the clients that own them would see them: a
 * ping is a request, so it carries a reply subject. `answer` lists those that reply.
 */
async function countPings(app: NatsConnection, subjects: string[], answer: string[] = []): Promise<Map<string, number>> {
  const pings = new Map(subjects.map((s) => [s, 0]));
  for (const subject of subjects) {
    app.subscribe(subject, {
      callback: (_e, m) => {
        if (!m.reply) return; // a registration published on a coordinator subject, not a ping
        pings.set(subject, pings.get(subject)! + 1);
        if (answer.includes(subject)) m.respond();
      },
    });
  }
  await app.flush();
  return pings;
}

/**
 * A window in which a registration that was accepted would have been pinged: the control
 * client, registered after the refused ones, has been pinged three times (two ping intervals
 * after its first ping).
 */
async function pingedThrice(pings: Map<string, number>, control: string): Promise<void> {
  await waitFor(`${control} pinged three times`, () => pings.get(control)! >= 3, 3 * PING_INTERVAL_MS + 10_000);
}

test("hostile - subjects in the coordinators' own namespaces are refused and never pinged", async () => {
  await withLeader(async ({ cluster, app, rec, leader }) => {
    const targets = [`presence.query.list.${cluster}`, `presence.register.${cluster}`, `coordinator.leader.heartbeat.${cluster}`];
    const pings = await countPings(app, [...targets, "svc.fine"], ["svc.fine"]);
    for (const t of targets) register(app, cluster, t);
    register(app, cluster, "svc.fine");
    await waitFor("svc.fine present", () => rec.types("svc.fine").includes("NodePresent"), 5000);
    await pingedThrice(pings, "svc.fine");
    assert.equal(
      targets.map((t) => pings.get(t)),
      targets.map(() => 0),
      "no ping was sent to a coordinator subject",
    );
    for (const t of targets) assert.equal(rec.types(t), [], `${t} is never reported`);
    const refusals = leader.logs().filter((l) => l.message === "refused a registration" && l.reason === "coordinator-subject");
    assert.is(refusals.length, 1, "logged once per reason and window, the rest counted");
  });
});

test("hostile - subjects under $ or _INBOX. and registrations of 64 to 68 KiB are refused, acknowledged and never pinged", async () => {
  await withLeader(async ({ cluster, app, rec, leader }) => {
    const reserved = [`$acme.svc.${cluster}`, `$KV.presence.${cluster}`, `_INBOX.acme.${cluster}`];
    // Past the registration limit but within the stream's message limit (the limit and
    // 4 KiB for headers), so the server stores them and the leader has to refuse them.
    const sizes = [MAX_REGISTRATION_BYTES + 1, MAX_REGISTRATION_BYTES + 2048, MAX_REGISTRATION_BYTES + 4096];
    const big = sizes.map((n) => `svc.big.${n}`);
    const pings = await countPings(app, [...reserved, ...big, "svc.fine"], ["svc.fine"]);
    const js = jetstream(app);
    for (const subject of reserved) await js.publish(presenceSubjects.register(cluster), JSON.stringify({ myPresenceSubject: subject }));
    for (const [i, size] of sizes.entries()) {
      const head = JSON.stringify({ myPresenceSubject: big[i], pad: "" });
      const payload = `${head.slice(0, -2)}${"x".repeat(size - head.length)}"}`;
      assert.is(Buffer.byteLength(payload), size);
      // The stream's acknowledgement: stored, so it reaches the leader.
      await js.publish(presenceSubjects.register(cluster), payload);
    }
    register(app, cluster, "svc.fine");
    await waitFor("svc.fine present", () => rec.types("svc.fine").includes("NodePresent"), 5000);
    await pingedThrice(pings, "svc.fine");
    const refused = [...reserved, ...big];
    assert.equal(
      refused.map((s) => `${s}: ${pings.get(s)}`),
      refused.map((s) => `${s}: 0`),
      "never pinged",
    );
    for (const s of refused) assert.equal(rec.types(s), [], `${s} is never reported`);
    const reasons = new Set(
      leader
        .logs()
        .filter((l) => l.message === "refused a registration")
        .map((l) => l.reason),
    );
    assert.equal([...reasons].sort(), ["reserved-prefix", "too-large"]);
    // Refused for good: acknowledged, so the work queue holds none of them any more.
    const jsm = await jetstreamManager(app);
    await pollUntil(
      "every refused registration acknowledged",
      async () => (await jsm.streams.info(presenceResources.registrationStream(cluster))).state.messages === 0,
      10_000,
    );
  });
});

test("hostile - a stored registration under the coordinators' namespaces (stored before the rule) is not loaded, but deleted", async () => {
  await withLeader(async ({ url, cluster, app, rec, leader }) => {
    const bad = `presence.query.list.${cluster}`;
    const pings = await countPings(app, [bad, "svc.kept"], ["svc.kept"]);
    // h1 loads the bucket before the writes below, so that only the next leader finds them.
    await waitFor("h1 loaded the bucket", () => leader.logs().some((l) => l.message === "loaded stored registrations"), 10_000);
    // Written straight into the bucket, as an older coordinator that accepted it would have.
    const kv = await new Kvm(jetstream(app)).open(presenceResources.registrationBucket(cluster));
    for (const subject of [bad, "svc.kept"]) {
      await kv.put(registrationKey(subject), JSON.stringify({ myPresenceSubject: subject, registeredAtMs: Date.now(), metadata: {} }));
    }
    // The next leader loads the bucket.
    const next = spawnCoordinator({ urls: [url], clusterId: cluster, id: "h2" });
    try {
      await waitFor("h2 following", () => next.logs().some((l) => l.message === "following the leader"), 15_000);
      leader.signal("SIGTERM");
      await waitFor("h2 leads", () => next.logs().some((l) => l.message === "became leader"), 15_000);
      await waitFor("svc.kept present", () => rec.types("svc.kept").includes("NodePresent"), 10_000);
      await pingedThrice(pings, "svc.kept"); // only h2 knows it: it was written after h1 loaded the bucket
      assert.is(pings.get(bad), 0, "never pinged");
      assert.equal(rec.types(bad), [], "never reported");
      const line = next.logs().find((l) => l.message === "stored registrations refused: not monitored, and deleted");
      assert.ok(line, "the refusal is logged");
      assert.equal(line!.first, [{ subject: bad, reason: "coordinator-subject" }]);
      assert.is(await kv.get(registrationKey(bad)).then((e) => e?.operation ?? null), "DEL", "deleted from the bucket");
      assert.is((await kv.get(registrationKey("svc.kept")))?.operation, "PUT", "the valid one is kept");
    } finally {
      await next.kill();
    }
  });
});

test("hostile - with per-client permissions, a client cannot answer for another: the impostor is refused and the silent client dies", async () => {
  const dir = await mkdtemp(join(tmpdir(), "presence-perm-"));
  const conf = join(dir, "auth.conf");
  // A cluster-wide coordinator user and one user per client, each allowed its own subject only
  // (deploy/nats-server-auth.conf explains this choice).
  const client = (name: string) =>
    `{ user: ${name}, password: ${name}-pw, permissions: { publish: { allow: ["presence.register.>"] }, subscribe: { allow: ["svc.${name}"] }, allow_responses: true } }`;
  await writeFile(conf, `authorization { users = [\n{ user: coord, password: coord-pw }\n${client("alice")}\n${client("mallory")}\n] }\n`);
  const server = await NatsServer.start({ configFile: conf });
  try {
    await withLeader(
      async ({ url, cluster, rec }) => {
        const alice = await connect({ servers: url, user: "alice", pass: "alice-pw" });
        const mallory = await connect({ servers: url, user: "mallory", pass: "mallory-pw" });
        const errors: string[] = [];
        void (async () => {
          for await (const s of mallory.status()) if (s.type === "error") errors.push(String(s.error));
        })();
        try {
          const sub = alice.subscribe("svc.alice", { callback: (_e, m) => void m.respond() });
          await alice.flush();
          register(alice, cluster, "svc.alice");
          await waitFor("svc.alice alive", () => rec.types("svc.alice").includes("NodeState"), 5000);
          // Mallory tries to answer alice's pings.
          mallory.subscribe("svc.alice", { callback: (err, m) => void (err ? undefined : m.respond()) });
          await mallory.flush();
          sub.unsubscribe();
          await alice.flush();
          const silentAt = performance.now();
          const dead = await waitFor(
            "NodeDead svc.alice",
            () => rec.of("svc.alice").find((s) => s.report.type === "NodeDead"),
            DEAD_TIMEOUT_MS + 3 * PING_INTERVAL_MS,
          );
          assert.ok(dead.at - silentAt <= DEAD_TIMEOUT_MS + PING_INTERVAL_MS + 500);
          assert.ok(
            errors.some((e) => /permission/i.test(e)),
            `the server refused mallory's subscription: ${errors.join("; ")}`,
          );
        } finally {
          await alice.close();
          await mallory.close();
        }
      },
      server,
      ["--user", "coord", "--password", "coord-pw"],
      { user: "coord", pass: "coord-pw" },
    );
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
