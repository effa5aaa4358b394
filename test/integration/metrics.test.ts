/**
 * `run --metrics-port`: what a Prometheus scraper and a Kubernetes probe see from a real
 * coordinator on a real nats-server, with clients that answer, one that does not, a bad
 * registration, a failover and a lost NATS server.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { presenceSubjects } from "../../src/protocol/presence.js";
import { NatsServer } from "../../src/nats/server.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text into samples (enough for prom-client's output). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function scrape(base: string): Promise<{ text: string; samples: Sample[]; contentType: string | null }> {
  const res = await fetch(`${base}/metrics`);
  assert.is(res.status, 200);
  const text = await res.text();
  return { text, samples: parse(text), contentType: res.headers.get("content-type") };
}

/** Scrapes every 100 ms until `ok` holds for the samples. */
async function scrapeUntil(base: string, what: string, ok: (samples: Sample[]) => boolean, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const s = await scrape(base);
    if (ok(s.samples)) return s;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for a scrape with ${what}:\n${s.text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Fetches `url` every 100 ms until `ok` holds for the response. */
async function fetchUntil(url: string, what: string, ok: (res: Response) => boolean, timeoutMs: number): Promise<Response> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const res = await fetch(url);
    if (ok(res)) return res;
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last status ${res.status}: ${await res.text()})`);
    await res.arrayBuffer().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function metricsBase(proc: CoordinatorProcess): Promise<string> {
  const line = await waitFor("the metrics URL in the log", () => proc.logs().find((l) => l.message === "metrics listening"), 10_000);
  return String(line.url).replace(/\/metrics$/, "");
}

test("metrics - a leader's scrape shows its role, epoch, clients by state, pings, round trips, reports and refused registrations", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "metr");
  const proc = spawnCoordinator({ urls: [server.url], clusterId: "metr", id: "metr-1", args: ["--metrics-port", "0"] });
  let nc: NatsConnection | undefined;
  try {
    const base = await metricsBase(proc);
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/, "loopback by default");
    await observer.waitForHeartbeat("metr-1 leading", (h) => h.coordinatorId === "metr-1", 10_000);

    nc = await connect({ servers: server.url });
    nc.subscribe("m.alive", { callback: (_e, m) => void m.respond() });
    nc.subscribe("m.silent", { callback: () => undefined }); // never answers
    for (const subject of ["m.alive", "m.silent"])
      nc.publish(presenceSubjects.register("metr"), JSON.stringify({ myPresenceSubject: subject }));
    nc.publish(presenceSubjects.register("metr"), "{not json");
    nc.publish(presenceSubjects.register("metr"), JSON.stringify({ myPresenceSubject: "m.*" }));
    await nc.flush();

    const { samples, contentType, text } = await scrapeUntil(
      base,
      "one alive and one suspect client",
      (x) => value(x, "presence_clients", { state: "suspect" }) === 1 && value(x, "presence_clients", { state: "alive" }) === 1,
      20_000,
    );
    assert.match(contentType ?? "", /^text\/plain; version=0\.0\.4/);
    assert.is(value(samples, "presence_role", { role: "leader" }), 1);
    assert.is(value(samples, "presence_role", { role: "follower" }), 0);
    const epoch = observer.currentLeader()!.epoch;
    assert.is(value(samples, "presence_epoch"), epoch, "the epoch of the heartbeats");
    assert.is(value(samples, "presence_partitions_led"), 1, "one partition, led");
    assert.is(value(samples, "presence_partition_epoch", { partition: "0" }), epoch);
    assert.is(value(samples, "presence_nats_connected"), 1);
    assert.ok(value(samples, "presence_pings_sent_total")! >= 2, "pings sent");
    assert.ok(value(samples, "presence_pings_failed_total")! >= 1, "the silent client's pings failed");
    assert.ok(value(samples, "presence_ping_rtt_seconds_count")! >= 1, "answered pings observed");
    assert.ok(value(samples, "presence_ping_rtt_seconds_bucket", { le: "1" })! >= 1);
    assert.ok(value(samples, "presence_ping_rtt_seconds_bucket", { le: "0.0001" }) !== undefined, "buckets from 0.1 ms");
    assert.is(value(samples, "presence_reports_published_total", { type: "NodePresent" }), 2);
    assert.ok(value(samples, "presence_reports_published_total", { type: "NodeSuspect" })! >= 1);
    assert.is(value(samples, "presence_reports_published_total", { type: "BecameLeader" }), 1);
    assert.is(value(samples, "presence_reports_published_total", { type: "NodeDead" }), 0, "every type is there, at 0 until it happens");
    assert.is(value(samples, "presence_registration_errors_total", { reason: "not-json" }), 1);
    assert.is(value(samples, "presence_registration_errors_total", { reason: "wildcard" }), 1);
    assert.is(value(samples, "presence_failovers_total"), 0);
    assert.ok(value(samples, "presence_event_loop_delay_seconds", { quantile: "0.99" })! >= 0);
    assert.ok(value(samples, "process_cpu_seconds_total") !== undefined, "prom-client's process metrics on the same registry");
    assert.ok(
      samples
        .filter((s) => s.name.startsWith("presence_"))
        .every((s) => s.labels.cluster_id === "metr" && s.labels.coordinator_id === "metr-1"),
    );
    assert.match(text, /# HELP presence_ping_rtt_seconds /);
    assert.match(text, /# TYPE presence_ping_rtt_seconds histogram/);

    // The leader's event loop stalls (SIGSTOP for 1.2 s): its next sweep is late, the stall is
    // credited, and both stall counters show it.
    assert.ok(value(samples, "presence_sweep_stalls_total") !== undefined, "the stall counter is there before any stall");
    proc.signal("SIGSTOP");
    await new Promise((r) => setTimeout(r, 1200));
    proc.signal("SIGCONT");
    const stalled = await scrapeUntil(
      base,
      "the stall counted",
      (x) => (value(x, "presence_sweep_stalled_seconds_total") ?? 0) >= 1,
      10_000,
    );
    assert.ok(value(stalled.samples, "presence_sweep_stalls_total")! >= 1, "one stall or more");
    assert.ok(
      proc.logs().some((l) => /^event loop stalled \d+ ms; verdicts deferred$/.test(String(l.message))),
      "and logged",
    );

    const health = await fetch(`${base}/healthz`);
    assert.is(health.status, 200);
    assert.equal(await health.json(), { status: "ok", nats: "connected" });
    const ready = await fetch(`${base}/readyz`);
    assert.is(ready.status, 200, await ready.clone().text());
    assert.is(((await ready.json()) as { status: string }).status, "ready");
    assert.is((await fetch(`${base}/nothing`)).status, 404);

    // The NATS server goes away: not healthy, not ready.
    await server.stop({ keepStore: true });
    await waitFor(
      "the coordinator noticing the disconnect",
      () => proc.logs().some((l) => String(l.message).includes("disconnected from NATS")),
      10_000,
    );
    const down = await fetchUntil(`${base}/healthz`, "healthz to answer 503", (r) => r.status === 503, 10_000);
    assert.is(((await down.json()) as { nats: string }).nats, "disconnected");
    // Readiness is cached for a second: poll until the cached answer has given way.
    const notReady = await fetchUntil(`${base}/readyz`, "readyz to answer 503", (r) => r.status === 503, 10_000);
    assert.is(((await notReady.json()) as { status: string }).status, "not-ready");
    assert.is(value((await scrape(base)).samples, "presence_nats_connected"), 0);
  } finally {
    await proc.kill();
    await nc?.close().catch(() => undefined);
    await observer.close().catch(() => undefined);
    await server.stop();
  }
});

test("metrics - a follower counts the failover when the leader dies, and each process has its own registry", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "metf");
  const a = spawnCoordinator({ urls: [server.url], clusterId: "metf", id: "f-a", args: ["--metrics-port", "0"] });
  let b: CoordinatorProcess | undefined;
  try {
    await observer.waitForHeartbeat("f-a leading", (h) => h.coordinatorId === "f-a", 10_000);
    b = spawnCoordinator({ urls: [server.url], clusterId: "metf", id: "f-b", args: ["--metrics-port", "0"] });
    const base = await metricsBase(b);
    await waitFor("f-b following", () => b!.logs().some((l) => l.report === "FollowingLeader"), 10_000);
    let s = (await scrape(base)).samples;
    assert.is(value(s, "presence_role", { role: "follower" }), 1);
    assert.is(value(s, "presence_role", { role: "leader" }), 0);
    assert.is(value(s, "presence_failovers_total"), 0);
    await a.kill();
    await observer.waitForHeartbeat("f-b leading", (h) => h.coordinatorId === "f-b", 10_000);
    s = (await scrape(base)).samples;
    assert.is(value(s, "presence_role", { role: "leader" }), 1);
    assert.is(value(s, "presence_failovers_total"), 1, "one failover");
    assert.is(value(s, "presence_epoch"), observer.currentLeader()!.epoch);
    assert.is(value(s, "presence_reports_published_total", { type: "BecameLeader" }), 1);
  } finally {
    await a.kill();
    await b?.kill();
    await observer.close();
    await server.stop();
  }
});

test("metrics - with partitions, the coordinators' partitions_led sum to the partitions and each partition's epoch is known", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "metp");
  const procs = ["p-a", "p-b"].map((id) =>
    spawnCoordinator({ urls: [server.url], clusterId: "metp", id, args: ["--metrics-port", "0", "--partitions", "4"] }),
  );
  try {
    const bases = await Promise.all(procs.map(metricsBase));
    const led = async () => Promise.all(bases.map(async (b) => value((await scrape(b)).samples, "presence_partitions_led") ?? -1));
    // The balancer spreads four partitions over two coordinators: two each.
    const deadline = performance.now() + 30_000;
    let counts = await led();
    while (!(counts[0] === 2 && counts[1] === 2) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      counts = await led();
    }
    assert.equal(counts, [2, 2], "two partitions each, four in all");
    // Each partition's latest heartbeat names its leader and epoch; both coordinators know that epoch.
    const scrapes = await Promise.all(bases.map(async (b) => (await scrape(b)).samples));
    for (let p = 0; p < 4; p++) {
      await observer.waitForHeartbeat(`a heartbeat of partition ${p}`, (h) => h.partition === p && !h.resigning, 5000);
      const latest = observer.heartbeats.filter((h) => h.msg.partition === p && !h.msg.resigning).at(-1)!.msg;
      for (const [i, samples] of scrapes.entries()) {
        assert.is(
          value(samples, "presence_partition_epoch", { partition: String(p) }),
          latest.epoch,
          `${procs[i]!.id} knows partition ${p}'s epoch`,
        );
      }
    }
    for (const samples of scrapes) {
      assert.is(samples.filter((x) => x.name === "presence_partition_epoch").length, 4, "one series per partition");
    }
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
    await observer.close();
    await server.stop();
  }
});

test("metrics - without --metrics-port nothing listens; a port in use stops the start naming it", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "metn");
  const plain = spawnCoordinator({ urls: [server.url], clusterId: "metn", id: "n-1" });
  let second: CoordinatorProcess | undefined;
  try {
    await observer.waitForHeartbeat("n-1 leading", (h) => h.coordinatorId === "n-1", 10_000);
    assert.not.ok(
      plain.logs().some((l) => l.component === "metrics"),
      "no metrics server",
    );
    const first = spawnCoordinator({ urls: [server.url], clusterId: "metn", id: "n-2", args: ["--metrics-port", "0"] });
    try {
      const port = new URL(await metricsBase(first)).port;
      second = spawnCoordinator({ urls: [server.url], clusterId: "metn", id: "n-3", args: ["--metrics-port", port] });
      assert.is(await second.exited, 1);
      assert.match(second.lines.join("\n"), `metrics: port ${port} on 127.0.0.1 is in use; pass another with --metrics-port`);
    } finally {
      await first.kill();
    }
  } finally {
    await plain.kill();
    await second?.kill();
    await observer.close();
    await server.stop();
  }
});

test.run();
