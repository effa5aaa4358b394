/**
 * Records the replay fixtures under test/fixtures/ from real runs: its own nats-server,
 * coordinators started through the built CLI with `--record`, and presence clients written
 * on the plain NATS client. Run it with `npm run fixtures:record` (which builds first) after
 * an intentional change of behaviour, check that test/unit/replay.test.ts passes, and commit
 * the new fixtures.
 *
 * Each scenario writes one log per coordinator to test/fixtures/<scenario>/<id>.jsonl. A
 * scenario is recorded into a temporary directory and only moved into place once every log
 * it wrote replays with `--check` semantics, so a failed run leaves the old fixtures alone.
 *
 *   node --import tsx scripts/record-fixtures.ts [scenario ...]
 */
import { chmod, cp, mkdtemp, mkdir, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decodeReport, presenceSubjects, REPORT_HEADERS, type Report } from "../src/protocol/presence.js";
import { NatsServer } from "../src/nats/server.js";
import { readRecordLog } from "../src/observe/record/record-log.js";
import { isReport, replayLog } from "../src/observe/record/replay.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";

const FIXTURES = fileURLToPath(new URL("../test/fixtures/", import.meta.url));

/**
 * Shorter client timings than the defaults, so that each scenario takes a few seconds; the
 * election keeps its defaults (a crash failover takes about 2 s, as in production).
 */
const CLIENT_TIMINGS = ["--ping-interval", "250", "--dead-timeout", "1500", "--state-interval", "1000"];

const started = performance.now();
const say = (msg: string) => console.log(`${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s  ${msg}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A presence client on the plain NATS client: registers with JSON and replies to pings unless silent. */
class FixtureClient {
  silent = false;
  private sub: Subscription | null = null;
  constructor(
    readonly nc: NatsConnection,
    readonly cluster: string,
    readonly subject: string,
  ) {}
  answer(): this {
    this.sub = this.nc.subscribe(this.subject, {
      callback: (_e, m) => {
        if (!this.silent) m.respond("pong");
      },
    });
    return this;
  }
  register(metadata: Record<string, unknown> = {}): void {
    this.nc.publish(presenceSubjects.register(this.cluster), JSON.stringify({ myPresenceSubject: this.subject, ...metadata }));
  }
  unregister(): void {
    this.nc.publish(presenceSubjects.unregister(this.cluster), JSON.stringify({ myPresenceSubject: this.subject }));
  }
  close(): void {
    this.sub?.unsubscribe();
  }
}

/** Everything a scenario needs: the server, the cluster's observers, and its coordinators. */
class Stage {
  readonly coordinators = new Map<string, CoordinatorProcess>();
  readonly reports: { at: number; report: Report }[] = [];
  private constructor(
    readonly server: NatsServer,
    readonly cluster: string,
    readonly dir: string,
    readonly app: NatsConnection,
    readonly observer: Observer,
  ) {}

  static async open(server: NatsServer, cluster: string, dir: string): Promise<Stage> {
    const app = await connect({ servers: server.url });
    const observer = await Observer.start([server.url], cluster);
    const stage = new Stage(server, cluster, dir, app, observer);
    app.subscribe(presenceSubjects.report(cluster), {
      callback: (_e, m) => {
        stage.reports.push({ at: performance.now(), report: decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding)) });
      },
    });
    await app.flush();
    return stage;
  }

  start(id: string, seed: number, extra: string[] = []): CoordinatorProcess {
    const c = spawnCoordinator({
      urls: [this.server.url],
      clusterId: this.cluster,
      id,
      args: ["--record", join(this.dir, `${id}.jsonl`), "--seed", String(seed), ...CLIENT_TIMINGS, ...extra],
    });
    this.coordinators.set(id, c);
    say(`started coordinator ${id} (seed ${seed})`);
    return c;
  }

  /** Waits until `id` heartbeats as the leader of every partition in `partitions`. */
  async leads(id: string, partitions: number[], since = 0): Promise<void> {
    for (const p of partitions) {
      await this.observer.waitForHeartbeat(
        `${id}'s heartbeat for partition ${p}`,
        (h) => !h.resigning && h.coordinatorId === id && (h.partition ?? 0) === p,
        15_000,
        since,
      );
    }
    say(`${id} leads partition${partitions.length > 1 ? "s" : ""} ${partitions.join(", ")}`);
  }

  async leader(since = 0, not?: string): Promise<string> {
    const hb = await this.observer.waitForHeartbeat("a leader's heartbeat", (h) => !h.resigning && h.coordinatorId !== not, 10_000, since);
    say(`leader is ${hb.msg.coordinatorId} (epoch ${hb.msg.epoch})`);
    return hb.msg.coordinatorId;
  }

  /** Waits until a coordinator has created the registration stream (registrations before it are not stored). */
  async streamReady(): Promise<void> {
    const jsm = await jetstreamManager(this.app);
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        await jsm.streams.info(`presence-registrations-${this.cluster}`);
        return;
      } catch (err) {
        if (performance.now() > deadline) throw err;
        await sleep(50);
      }
    }
  }

  client(subject: string): FixtureClient {
    return new FixtureClient(this.app, this.cluster, subject).answer();
  }

  async report(what: string, match: (r: Report) => boolean, since = 0, timeoutMs = 10_000): Promise<Report> {
    const seen = await waitFor(what, () => this.reports.find((s) => s.at >= since && match(s.report)), timeoutMs);
    say(
      `saw ${seen.report.type} ${seen.report.clientSubject} from ${seen.report.coordinatorId} (epoch ${seen.report.epoch} seq ${seen.report.seq})`,
    );
    return seen.report;
  }

  count(match: (r: Report) => boolean, since = 0): number {
    return this.reports.filter((s) => s.at >= since && match(s.report)).length;
  }

  async stop(id: string, signal: NodeJS.Signals): Promise<void> {
    const c = this.coordinators.get(id)!;
    say(`${signal === "SIGKILL" ? "crashing" : "stopping"} ${id} (${signal})`);
    c.signal(signal);
    const code = await c.exited;
    if (signal === "SIGTERM" && code !== 0) throw new Error(`${id} exited with ${code}:\n${c.lines.slice(-10).join("\n")}`);
  }

  async close(): Promise<void> {
    for (const c of this.coordinators.values()) await c.kill();
    await this.observer.close();
    await this.app.close();
  }
}

type Scenario = (stage: Stage) => Promise<void>;

const scenarios: Record<string, Scenario> = {
  /** Two coordinators, three clients; the leader is killed and the other takes over every client. */
  "crash-failover": async (s) => {
    s.start("cf-a", 11);
    s.start("cf-b", 12);
    const first = await s.leader();
    await s.streamReady();
    const clients = ["svc.api.1", "svc.api.2", "svc.api.3"].map((subject) => s.client(subject));
    for (const [i, c] of clients.entries()) c.register({ zone: "eu-1", index: i });
    for (const c of clients) await s.report(`NodePresent ${c.subject}`, (r) => r.type === "NodePresent" && r.clientSubject === c.subject);
    await sleep(1200);
    const crashedAt = performance.now();
    await s.stop(first, "SIGKILL");
    const next = await s.leader(crashedAt, first);
    for (const c of clients) {
      await s.report(
        `NodePresent ${c.subject} from ${next}`,
        (r) => r.type === "NodePresent" && r.clientSubject === c.subject && r.coordinatorId === next,
        crashedAt,
      );
    }
    await s.report("a NodeState from the new leader", (r) => r.type === "NodeState" && r.coordinatorId === next, crashedAt);
    await s.stop(next, "SIGTERM");
    for (const c of clients) c.close();
  },

  /** One coordinator, two clients; one stops answering: suspect, then dead. */
  "client-death": async (s) => {
    s.start("cd-a", 21);
    await s.leader();
    await s.streamReady();
    const alive = s.client("svc.db.1");
    const dying = s.client("svc.db.2");
    alive.register();
    dying.register({ role: "replica" });
    await s.report("NodePresent svc.db.2", (r) => r.type === "NodePresent" && r.clientSubject === "svc.db.2");
    await sleep(800);
    say("svc.db.2 stops answering");
    dying.silent = true;
    await s.report("NodeSuspect svc.db.2", (r) => r.type === "NodeSuspect" && r.clientSubject === "svc.db.2");
    await s.report("NodeDead svc.db.2", (r) => r.type === "NodeDead" && r.clientSubject === "svc.db.2");
    await sleep(1200);
    await s.stop("cd-a", "SIGTERM");
    alive.close();
    dying.close();
  },

  /** One coordinator; a client that goes quiet and comes back three times: suspect and recovered, never dead. */
  "flapping-client": async (s) => {
    s.start("fl-a", 31);
    await s.leader();
    await s.streamReady();
    const steady = s.client("svc.cache.1");
    const flapping = s.client("svc.cache.2");
    steady.register();
    flapping.register({ flaky: true });
    await s.report("NodePresent svc.cache.2", (r) => r.type === "NodePresent" && r.clientSubject === "svc.cache.2");
    const is = (type: string) => (r: Report) => r.type === type && r.clientSubject === "svc.cache.2";
    for (let round = 1; round <= 3; round++) {
      await sleep(300);
      say(`svc.cache.2 goes quiet (round ${round})`);
      flapping.silent = true;
      await waitFor(`NodeSuspect #${round}`, () => s.count(is("NodeSuspect")) >= round, 5000);
      say(`svc.cache.2 answers again (round ${round})`);
      flapping.silent = false;
      await waitFor(`NodeRecovered #${round}`, () => s.count(is("NodeRecovered")) >= round, 5000);
    }
    await sleep(600);
    if (s.count(is("NodeDead")) > 0) throw new Error("the flapping client was reported dead: the timings of this scenario are off");
    await s.stop("fl-a", "SIGTERM");
    steady.close();
    flapping.close();
  },

  /** Two coordinators, two clients; the leader resigns on SIGTERM and the other takes over. */
  "graceful-handoff": async (s) => {
    s.start("gh-a", 41);
    s.start("gh-b", 42);
    const first = await s.leader();
    await s.streamReady();
    const clients = ["svc.queue.1", "svc.queue.2"].map((subject) => s.client(subject));
    for (const c of clients) c.register();
    for (const c of clients) await s.report(`NodePresent ${c.subject}`, (r) => r.type === "NodePresent" && r.clientSubject === c.subject);
    await sleep(1200);
    const stoppedAt = performance.now();
    await s.stop(first, "SIGTERM");
    const next = await s.leader(stoppedAt, first);
    for (const c of clients) {
      await s.report(
        `NodePresent ${c.subject} from ${next}`,
        (r) => r.type === "NodePresent" && r.clientSubject === c.subject && r.coordinatorId === next,
        stoppedAt,
      );
    }
    await sleep(1200);
    await s.stop(next, "SIGTERM");
    for (const c of clients) c.close();
  },

  /**
   * Three partitions, four clients over all three. One coordinator leads them all; a second
   * joins and the balancer hands it one (a handover); then the first is killed and the second
   * takes the rest (a crash failover) and reports every client.
   */
  "partitioned-handover": async (s) => {
    const partitions = ["--partitions", "3"];
    s.start("ph-a", 61, partitions);
    await s.leads("ph-a", [0, 1, 2]);
    await s.streamReady();
    // partitionOf over 3 partitions: svc.part.3 → 0, svc.part.1 and svc.part.8 → 1, svc.part.7 → 2.
    const clients = ["svc.part.1", "svc.part.3", "svc.part.7", "svc.part.8"].map((subject) => s.client(subject));
    for (const c of clients) c.register({ rack: c.subject.slice(-1) });
    for (const c of clients) await s.report(`NodePresent ${c.subject}`, (r) => r.type === "NodePresent" && r.clientSubject === c.subject);
    const joinedAt = performance.now();
    s.start("ph-b", 62, partitions);
    const moved = await s.report(
      "a NodePresent from ph-b after the handover",
      (r) => r.type === "NodePresent" && r.coordinatorId === "ph-b",
      joinedAt,
      20_000,
    );
    say(`ph-b took partition ${moved.partition ?? 0}`);
    await sleep(1200);
    const crashedAt = performance.now();
    await s.stop("ph-a", "SIGKILL");
    await s.leads("ph-b", [0, 1, 2], crashedAt);
    for (const c of clients) {
      await s.report(
        `${c.subject} reported by ph-b`,
        (r) => r.coordinatorId === "ph-b" && r.clientSubject === c.subject && (r.type === "NodePresent" || r.type === "NodeState"),
        joinedAt,
      );
    }
    await s.report("a NodeState from ph-b after the failover", (r) => r.type === "NodeState" && r.coordinatorId === "ph-b", crashedAt);
    await s.stop("ph-b", "SIGTERM");
    for (const c of clients) c.close();
  },

  /** One coordinator; a client registers, restarts (registers again: NodePresent again), then leaves. */
  "re-registration": async (s) => {
    s.start("rr-a", 51);
    await s.leader();
    await s.streamReady();
    const client = s.client("svc.worker.7");
    client.register({ build: 1 });
    await s.report("NodePresent svc.worker.7", (r) => r.type === "NodePresent" && r.clientSubject === "svc.worker.7");
    await s.report("NodeState svc.worker.7", (r) => r.type === "NodeState" && r.clientSubject === "svc.worker.7");
    const again = performance.now();
    say("svc.worker.7 restarts and registers again");
    client.register({ build: 2 });
    await s.report("NodePresent svc.worker.7 again", (r) => r.type === "NodePresent" && r.clientSubject === "svc.worker.7", again);
    await sleep(1200);
    const leaving = performance.now();
    say("svc.worker.7 unregisters");
    client.unregister();
    await s.report("NodeLeft svc.worker.7", (r) => r.type === "NodeLeft" && r.clientSubject === "svc.worker.7", leaving);
    await sleep(300);
    await s.stop("rr-a", "SIGTERM");
    client.close();
  },
};

/** Every log of a freshly recorded scenario must replay exactly, or the fixtures are not replaced. */
async function verify(dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")).sort();
  if (files.length === 0) throw new Error(`no logs were written to ${dir}`);
  for (const f of files) {
    const log = await readRecordLog(join(dir, f));
    const result = replayLog(log, { check: true });
    if (result.divergence !== null) {
      throw new Error(`${f} does not replay: line ${result.divergence.line}: ${result.divergence.problem}`);
    }
    const reports = result.produced.filter((c) => isReport(c.command)).length;
    say(`  ${f}: ${log.entries.length} entries, ${result.produced.length} commands (${reports} reports) replay exactly`);
  }
  return files;
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !(w in scenarios));
  if (unknown.length > 0) throw new Error(`unknown scenario(s): ${unknown.join(", ")}; known: ${Object.keys(scenarios).join(", ")}`);
  const names = wanted.length > 0 ? wanted : Object.keys(scenarios);
  for (const name of names) {
    say(`=== ${name}`);
    // A fresh server per scenario: no leftover lease, registrations or stream.
    const server = await NatsServer.start();
    const dir = await mkdtemp(join(tmpdir(), `presence-fixture-${name}-`));
    let stage: Stage | undefined;
    try {
      // Each scenario has its own server, so one fixed cluster id keeps re-recorded logs comparable.
      stage = await Stage.open(server, "fixtures", dir);
      await scenarios[name]!(stage);
      await stage.close();
      stage = undefined;
      await verify(dir);
      const target = join(FIXTURES, name);
      await rm(target, { recursive: true, force: true });
      await mkdir(FIXTURES, { recursive: true });
      await cp(dir, target, { recursive: true }); // the temporary directory may be on another file system
      await chmod(target, 0o755); // mkdtemp made it private
      say(`wrote ${target}`);
    } finally {
      await stage?.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  say("done");
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`record-fixtures: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
