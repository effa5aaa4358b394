/**
 * The CLI as an operator meets it: bad flags, unreachable NATS, configuration from the
 * environment, and an existing lease bucket with another TTL.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { freePort, NatsServer } from "../../src/nats/server.js";
import { CLI, Observer, runCli, spawnCli, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";

/** A loopback TCP server that accepts connections and never says a word (not NATS). */
async function silentServer(): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const address = server.address();
  if (address === null || typeof address !== "object") throw new Error("no address");
  return { server, port: address.port, sockets };
}

async function closeSilent(s: { server: Server; sockets: Socket[] }) {
  for (const sock of s.sockets) sock.destroy();
  await new Promise((r) => s.server.close(() => r(undefined)));
}

test("cli - a refused NATS URL gives a clear error and exit 1, without a stack trace", async () => {
  const port = await freePort();
  const r = await runCli(["run", "-u", `nats://127.0.0.1:${port}`, "--cluster-id", "x"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, `presence-coordinator: cannot connect to NATS at nats://127.0.0.1:${port}`);
  assert.match(r.stderr, /refused/);
  assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
});

test("cli - a server that never answers gives up after the connect timeout", async () => {
  const silent = await silentServer();
  try {
    const r = await runCli(["run", "-u", `nats://127.0.0.1:${silent.port}`, "--cluster-id", "x", "--connect-timeout", "1000"], {
      timeoutMs: 20_000,
    });
    assert.is(r.code, 1, `exits 1 (stderr: ${r.stderr})`);
    assert.match(r.stderr, `cannot connect to NATS at nats://127.0.0.1:${silent.port}`);
    assert.match(r.stderr, /timeout/i);
    assert.ok(silent.sockets.length > 0, "it did try the server");
  } finally {
    await closeSilent(silent);
  }
});

test("cli - bad timings are refused before connecting, naming the flag and the rule", async () => {
  const silent = await silentServer();
  try {
    const url = `nats://127.0.0.1:${silent.port}`;
    const cases: [string[], RegExp][] = [
      [["--leader-timeout", "1500"], /--leader-timeout: must be at least 2 × --heartbeat-interval \(1000 ms\)/],
      [
        ["--election-backoff-min", "500", "--election-backoff-max", "400"],
        /--election-backoff-min: must not exceed --election-backoff-max/,
      ],
      [["--renew-deadline", "2500"], /--renew-deadline: must be below --leader-timeout/],
      [["--leader-timeout", "2s"], /option '--leader-timeout <ms>' argument '2s' is invalid\. must be a whole number/],
      [["--log-format", "xml"], /--log-format <format>' argument 'xml' is invalid/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(["run", "-u", url, "--cluster-id", "x", ...args]);
      assert.is(r.code, 2, `${args.join(" ")} exits 2`);
      assert.match(r.stderr, message);
    }
    const badCluster = await runCli(["run", "-u", url, "--cluster-id", "a.b"]);
    assert.is(badCluster.code, 2);
    assert.match(badCluster.stderr, /--cluster-id: must be 1–64 characters/);
    const missing = await runCli(["run", "--cluster-id", "x"]);
    assert.is(missing.code, 2);
    assert.match(missing.stderr, /required option '-u, --nats-url <urls>' not specified/);
    assert.is(silent.sockets.length, 0, "no connection was attempted for a refused configuration");
  } finally {
    await closeSilent(silent);
  }
});

test("cli - every flag can come from the environment", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "envcluster");
  const proc = spawnCli("from-env", ["run"], {
    PRESENCE_NATS_URL: server.url,
    PRESENCE_CLUSTER_ID: "envcluster",
    PRESENCE_COORDINATOR_ID: "from-env",
    PRESENCE_LEADER_TIMEOUT: "1200",
    PRESENCE_HEARTBEAT_INTERVAL: "500",
    PRESENCE_ELECTION_BACKOFF_MIN: "10",
    PRESENCE_ELECTION_BACKOFF_MAX: "20",
    PRESENCE_LOG_FORMAT: "json",
    PRESENCE_SEED: "42",
  });
  try {
    await observer.waitForHeartbeat(
      "a heartbeat of the coordinator configured by environment",
      (h) => h.coordinatorId === "from-env",
      10_000,
    );
    const started = proc.logs().find((l) => l.message === "starting coordinator");
    assert.ok(started, "it logged its configuration as JSON");
    assert.is(started!.leaderTimeoutMs, 1200);
    assert.is(started!.heartbeatIntervalMs, 500);
    assert.is(started!.renewDeadlineMs, 900, "the renew deadline defaults to 75% of the leader timeout");
    assert.is(started!.electionBackoffMs, "10-20");
    assert.is(started!.seed, 42);
    proc.signal("SIGTERM");
    assert.is(await proc.exited, 0);
  } finally {
    await proc.kill();
    await observer.close();
    await server.stop();
  }
});

test("cli - an existing lease bucket with another TTL is brought to the leader timeout", async () => {
  const server = await NatsServer.start();
  const nc = await connect({ servers: server.url });
  let proc: CoordinatorProcess | undefined;
  let observer: Observer | undefined;
  try {
    const kvm = new Kvm(jetstream(nc));
    await kvm.create("coordinator-leadership-ttl", { ttl: 10_000, history: 1 });
    assert.is((await (await kvm.open("coordinator-leadership-ttl")).status()).ttl, 10_000);
    observer = await Observer.start([server.url], "ttl");
    proc = spawnCoordinator({ urls: [server.url], clusterId: "ttl", id: "ttl-1" });
    await observer.waitForHeartbeat("the coordinator leading", (h) => h.coordinatorId === "ttl-1", 10_000);
    const status = await (await kvm.open("coordinator-leadership-ttl")).status();
    assert.is(status.ttl, 2000, "the bucket's TTL is the leader timeout now");
    const warned = proc.logs().find((l) => String(l.message).includes("updated the existing lease bucket"));
    assert.ok(warned, "the change was logged");
    assert.is(warned!.level, "warn");
    assert.is(warned!.ttlMs, "10000 -> 2000");
  } finally {
    await proc?.kill();
    await observer?.close();
    await nc.close();
    await server.stop();
  }
});

test("cli - a coordinator with another leader timeout than the running leader's is refused", async () => {
  const server = await NatsServer.start();
  const observer = await Observer.start([server.url], "mixed");
  const leader = spawnCoordinator({ urls: [server.url], clusterId: "mixed", id: "m-1" });
  try {
    await observer.waitForHeartbeat("the first coordinator leading", (h) => h.coordinatorId === "m-1", 10_000);
    const r = await runCli(["run", "-u", server.url, "--cluster-id", "mixed", "--leader-timeout", "3000"]);
    assert.is(r.code, 1);
    assert.match(r.stderr, /has a TTL of 2000 ms, but this coordinator's --leader-timeout is 3000 ms, and m-1 leads/);
    assert.match(r.stderr, /start this one with --leader-timeout 2000/);
  } finally {
    await leader.kill();
    await observer.close();
    await server.stop();
  }
});

test("cli - --help lists the commands and the Java coordinator's flags", async () => {
  const top = await runCli(["--help"]);
  assert.is(top.code, 0);
  assert.match(top.stdout, /run \[options\]/);
  assert.match(top.stdout, /dev \[options\]/);
  const run = await runCli(["run", "--help"]);
  assert.is(run.code, 0);
  for (const flag of [
    "-u, --nats-url <urls>",
    "--cluster-id <id>",
    "--coordinator-id <id>",
    "--leader-timeout <ms>",
    "--election-backoff-min <ms>",
    "--election-backoff-max <ms>",
    "-v, --verbose",
    "--heartbeat-interval <ms>",
    "--log-format <format>",
  ]) {
    assert.ok(run.stdout.includes(flag), `run --help shows ${flag}`);
  }
});

test("cli - dev runs an embedded nats-server and three coordinators, shows the leader and stops cleanly", async () => {
  const r = await runCli(["dev", "--duration", "5", "--crash-every", "0"], { timeoutMs: 30_000 });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /embedded nats-server on nats:\/\/127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /==> leader is dev-[abc] \(epoch \d+\)/);
  assert.match(r.stdout, /BecameLeader/);
  assert.is((r.stdout.match(/BecameFollower +epoch=0 reason=started/g) ?? []).length, 3, "three coordinators started");
  assert.match(r.stdout, /stopped\n$/);
  const leaders = new Set([...r.stdout.matchAll(/==> leader is (dev-[abc])/g)].map((m) => m[1]));
  assert.is(leaders.size, 1, "one leader while nothing crashes");
});

test("cli - dev warns of nothing through a crash failover, and a Ctrl-C in a terminal stops it cleanly: the coordinators leave before the embedded nats-server stops", async () => {
  // A terminal sends SIGINT to its whole foreground process group: the CLI in a group of its
  // own stands for that terminal's job.
  const child = spawn(process.execPath, [CLI, "dev", "--crash-every", "3", "--clients", "2"], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  /** The exit code, once the process has ended (null: it ended by a signal). */
  const exitCode = () => (child.exitCode !== null || child.signalCode !== null ? { code: child.exitCode } : undefined);
  try {
    await waitFor(
      "a failover after the demo's crash",
      () => /==> leader is dev-[abc] \(epoch \d+\), [\d.]+ s after dev-[abc] crashed/.test(stdout),
      20_000,
    );
    process.kill(-child.pid!, "SIGINT");
    const { code } = await waitFor("the demo to exit", exitCode, 20_000);
    assert.is(code, 0, stderr);
    assert.match(stdout, /stopped\n$/);
    assert.match(stdout, /Stopped +epoch=\d+ reason=shutdown/, "the coordinators reported leaving");
    for (const text of [stdout, stderr]) {
      assert.not.match(
        text,
        /disconnected from NATS|release failed|draining the NATS connection failed|not connected to NATS/,
        "nothing lost its server while leaving",
      );
      assert.not.match(text, / warn /, "no warning: a crash of the demo is not a fault");
    }
    const url = /embedded nats-server on (nats:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1]!;
    const refused = await connect({ servers: url, reconnect: false, timeout: 1000 }).then(
      async (nc) => {
        await nc.close();
        return false;
      },
      () => true,
    );
    assert.ok(refused, "the embedded nats-server is gone too");
  } finally {
    // A failed run: SIGTERM lets it stop its own server; SIGKILL only if it does not exit.
    if (exitCode() === undefined) {
      child.kill("SIGTERM");
      await waitFor("the demo to exit", exitCode, 10_000).catch(() => child.kill("SIGKILL"));
    }
  }
});

test("cli - run --record with an unwritable path exits 1 naming the file, before connecting", async () => {
  const port = await freePort(); // nothing listens: the record log must fail first
  const r = await runCli(["run", "-u", `nats://127.0.0.1:${port}`, "--cluster-id", "x", "--record", "/nonexistent-dir/run.jsonl"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, "cannot open the record log /nonexistent-dir/run.jsonl");
  assert.not.match(r.stderr, /cannot connect to NATS/, "it did not get as far as connecting");
});

test("cli - replay --check of a recorded fixture exits 0; a corrupt log exits 2 naming the line", async () => {
  const fixture = fileURLToPath(new URL("../fixtures/client-death/cd-a.jsonl", import.meta.url));
  const ok = await runCli(["replay", fixture, "--check"]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /\d+ entries replayed; all \d+ commands \(\d+ reports\) match the log/);
  const printed = await runCli(["replay", fixture]);
  assert.is(printed.code, 0, printed.stderr);
  assert.match(printed.stdout, /NodeDead/);
  const dir = await mkdtemp(join(tmpdir(), "presence-replay-"));
  try {
    const lines = (await readFile(fixture, "utf8")).split("\n");
    lines[4] = "{not json";
    const bad = join(dir, "bad.jsonl");
    await writeFile(bad, lines.join("\n"));
    const r = await runCli(["replay", bad]);
    assert.is(r.code, 2);
    assert.match(r.stderr, `${bad}, line 5: not JSON`);
    assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("cli - replay --check of a log that differs from the machines exits 1 naming the line", async () => {
  const fixture = fileURLToPath(new URL("../fixtures/client-death/cd-a.jsonl", import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), "presence-replay-"));
  try {
    const lines = (await readFile(fixture, "utf8")).trimEnd().split("\n");
    const suspect = lines.findIndex((l) => l.includes('"NodeSuspect"'));
    lines.splice(suspect + 1, 0, lines[suspect]!); // one command line too many
    const extra = join(dir, "extra.jsonl");
    await writeFile(extra, `${lines.join("\n")}\n`);
    const r = await runCli(["replay", extra, "--check"]);
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, `replay differs from ${extra} at entry ${suspect + 1} (line ${suspect + 2}, `);
    assert.match(r.stderr, "the log has a command replay did not produce");
    assert.match(r.stderr, /expected: \{"type":"report.presence","report":\{"type":"NodeSuspect"/);
    assert.not.match(r.stdout, /match the log/);
    const json = await runCli(["replay", extra, "--check", "--json"]);
    assert.is(json.code, 1);
    const d = JSON.parse(json.stdout.trim().split("\n").at(-1)!) as { kind: string; line: number };
    assert.equal([d.kind, d.line], ["divergence", suspect + 2]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("cli - run --inspect on a port in use exits 1 saying which port, before connecting", async () => {
  const taken = await silentServer();
  try {
    const port = await freePort();
    const r = await runCli(["run", "-u", `nats://127.0.0.1:${port}`, "--cluster-id", "x", `--inspect=${taken.port}`]);
    assert.is(r.code, 1);
    assert.match(r.stderr, `inspector: port ${taken.port} on 127.0.0.1 is in use; pass another with --inspect=<port>`);
    assert.not.match(r.stderr, /cannot connect to NATS/);
  } finally {
    await closeSilent(taken);
  }
});

test("cli - --inspect-host beyond loopback is warned about in the log", async () => {
  const server = await NatsServer.start();
  const c = spawnCoordinator({ urls: [server.url], clusterId: "insp-host", id: "h1", args: ["--inspect=0", "--inspect-host", "0.0.0.0"] });
  try {
    const warned = await waitFor(
      "the inspector's warning",
      () => c.logs().find((l) => l.level === "warn" && String(l.message).includes("listens beyond loopback")),
      10_000,
    );
    assert.is(warned.host, "0.0.0.0");
    const listening = await waitFor("the inspector URL", () => c.logs().find((l) => l.message === "inspector page listening"), 10_000);
    assert.match(String(listening.url), /^http:\/\/127\.0\.0\.1:\d+\/$/);
  } finally {
    await c.kill();
    await server.stop();
  }
});

test("cli - a coordinator rehearses a takeover once while it follows, and says so with --verbose", async () => {
  const server = await NatsServer.start();
  // A leader timeout long enough that it is still a follower when the rehearsal ends, on a busy machine too.
  const c = spawnCoordinator({ urls: [server.url], clusterId: "rehearse", id: "r1", args: ["--verbose", "--leader-timeout", "8000"] });
  try {
    const rehearsed = await waitFor("the rehearsal's log", () => c.logs().find((l) => String(l.message).includes("rehears")), 15_000);
    assert.equal(
      [rehearsed.message, rehearsed.level, rehearsed.completed, rehearsed.reports],
      ["rehearsed a takeover", "debug", true, 5000],
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.is(c.logs().filter((l) => String(l.message).includes("rehears")).length, 1, "once");
  } finally {
    await c.kill();
    await server.stop();
  }
});

test.run();
