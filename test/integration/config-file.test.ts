/**
 * `run --config <file>` through the built CLI: a YAML file alone starts a coordinator; the
 * command line and the environment override the file, and the log says so by name only.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NatsServer } from "../../src/nats/server.js";
import { Observer, runCli, spawnCli } from "../../harness/coordinators.js";

test("config file - a YAML file alone runs a coordinator; flags and the environment override it, and the log names each override", async () => {
  const server = await NatsServer.start();
  const dir = await mkdtemp(join(tmpdir(), "presence-cfg-"));
  const observer = await Observer.start([server.url], "cfg");
  const path = join(dir, "coordinator.yaml");
  await writeFile(
    path,
    [
      `nats-url: ${server.url}`,
      "cluster-id: cfg",
      "coordinatorId: from-file",
      "leaderTimeout: 3000",
      "heartbeatInterval: 1000",
      "electionBackoffMin: 20",
      "electionBackoffMax: 40",
      "logFormat: json",
      "",
    ].join("\n"),
  );
  const proc = spawnCli("cfg", ["run", "--config", path, "--election-backoff-max", "50"], { PRESENCE_HEARTBEAT_INTERVAL: "700" });
  try {
    await observer.waitForHeartbeat("the coordinator configured by file", (h) => h.coordinatorId === "from-file", 10_000);
    const started = proc.logs().find((l) => l.message === "starting coordinator");
    assert.ok(started, "JSON logs, as the file says");
    assert.is(started!.leaderTimeoutMs, 3000, "from the file");
    assert.is(started!.heartbeatIntervalMs, 700, "the environment overrides the file");
    assert.is(started!.electionBackoffMs, "20-50", "the flag overrides the file");
    const notes = proc.logs().filter((l) => String(l.message).includes("overrides the config file"));
    assert.equal(notes.map((l) => [l.message, l.env]).sort(), [
      ["--election-backoff-max from the command line overrides the config file", undefined],
      ["--heartbeat-interval from the environment overrides the config file", "PRESENCE_HEARTBEAT_INTERVAL"],
    ]);
    proc.signal("SIGTERM");
    assert.is(await proc.exited, 0);
  } finally {
    await proc.kill();
    await observer.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("config file - an unknown key or a wrong type exits 2 naming the key and the file, before connecting", async () => {
  const dir = await mkdtemp(join(tmpdir(), "presence-cfg-"));
  try {
    const bad = join(dir, "bad.json");
    await writeFile(bad, JSON.stringify({ natsUrl: "nats://127.0.0.1:1", clusterId: "x", leaderTimeout: true }));
    const r = await runCli(["run", "--config", bad]);
    assert.is(r.code, 2);
    assert.match(r.stderr, `presence-coordinator: --config: ${bad}: key "leaderTimeout" must be a string or a number; got true`);
    const unknown = join(dir, "unknown.yaml");
    await writeFile(unknown, "natsUrl: nats://127.0.0.1:1\nclusterId: x\nkvReplica: 3\n");
    const u = await runCli(["run"], { env: { PRESENCE_CONFIG: unknown } });
    assert.is(u.code, 2);
    assert.match(u.stderr, `${unknown}: key "kvReplica" is not an option of \`run\``);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
