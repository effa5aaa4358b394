/**
 * The query service and `status` with several partitions, against a real nats-server: three
 * coordinators of a cluster of six partitions (from a config file), clients spread over every
 * partition, and whichever coordinator is asked answering for the whole cluster.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Svcm, ServiceErrorCodeHeader } from "@nats-io/services";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PresenceClient } from "../../src/client/index.js";
import { partitionOf } from "../../src/protocol/partition.js";
import type { GetResponse, ListResponse, QueryErrorBody, StatsResponse } from "../../src/protocol/query.js";
import { NatsServer } from "../../src/nats/server.js";
import { waitForStream } from "../../harness/presence.js";
import type { ClusterStatus } from "../../src/observe/query/status.js";
import { partitionRanges } from "../../src/cli/print/status.js";
import { runCli, spawnCoordinator, type CoordinatorProcess } from "../../harness/coordinators.js";

const P = 6;
const cluster = `qp${process.pid}`;
const ids = ["qpa", "qpb", "qpc"];
let server: NatsServer;
let app: NatsConnection;
let dir: string;
let coordinators: CoordinatorProcess[] = [];
let clients: PresenceClient[] = [];
/** Every monitored subject (the silent one included), sorted. */
let subjects: string[] = [];

const request = (subject: string, body = "", timeout = 3000) => app.request(subject, body, { timeout });
const json = <T>(m: Msg) => JSON.parse(m.string()) as T;
const errorCode = (m: Msg) => m.headers?.get(ServiceErrorCodeHeader) ?? "";
const sorted = (xs: string[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
const inPartition = (p: number) => subjects.filter((s) => partitionOf(s, P) === p);

/** Asks the shared stats subject until `ok` holds for an answer. */
async function statsUntil(what: string, ok: (s: StatsResponse) => boolean, timeoutMs: number): Promise<StatsResponse> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  for (;;) {
    const m = await request(`presence.query.stats.${cluster}`).catch(() => null);
    if (m !== null) {
      last = m.string();
      if (errorCode(m) === "" && ok(json<StatsResponse>(m))) return json<StatsResponse>(m);
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for stats with ${what}; last: ${last}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The partition → leader map of a complete stats answer. */
const leadersOf = (s: StatsResponse) => new Map(s.partitions!.map((p) => [p.partition, p.leader]));

test.before(async () => {
  server = await NatsServer.start();
  app = await connect({ servers: server.url });
  dir = await mkdtemp(join(tmpdir(), "presence-qp-"));
  const config = join(dir, "coordinator.yaml");
  await writeFile(config, `partitions: ${P}\n`);
  // A long dead timeout keeps the silent client suspect for the whole file; a long leader
  // timeout keeps a stopped leader's partitions unled while the test asks about them.
  coordinators = ids.map((id) =>
    spawnCoordinator({
      urls: [server.url],
      clusterId: cluster,
      id,
      args: ["--config", config, "--dead-timeout", "60000", "--leader-timeout", "8000"],
    }),
  );
  await waitForStream(app, cluster);
  // Subjects until every partition has at least two clients.
  const names: string[] = [];
  for (let i = 0; [...Array(P).keys()].some((p) => names.filter((s) => partitionOf(s, P) === p).length < 2); i++) names.push(`app.qp.${i}`);
  clients = names.map((subject, i) => new PresenceClient(app, { clusterId: cluster, subject, metadata: { i } }));
  for (const c of clients) await c.start();
  // One more that answers nothing: suspect after two ping intervals.
  app.publish(`presence.register.${cluster}`, JSON.stringify({ myPresenceSubject: "app.qp.silent" }));
  await app.flush();
  subjects = sorted([...names, "app.qp.silent"]);
});

test.after(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await Promise.all(coordinators.map((c) => c.kill()));
  await app.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

test("query - with partitions, stats from any coordinator covers every partition, its leader, epoch and clients", async () => {
  // Every partition led, by all three coordinators (two each), and every client monitored, the silent one suspect.
  const stats = await statsUntil(
    "all partitions spread over three leaders, two each, and every client monitored",
    (s) =>
      s.missingPartitions?.length === 0 &&
      ids.every((id) => s.partitions!.filter((p) => p.leader === id).length === P / ids.length) &&
      s.clients.total === subjects.length &&
      s.clients.suspect === 1,
    60_000,
  );
  assert.is(stats.partitionCount, P);
  assert.equal(
    stats.partitions!.map((p) => p.partition),
    [0, 1, 2, 3, 4, 5],
  );
  for (const p of stats.partitions!) {
    assert.is(p.clients.total, inPartition(p.partition).length, `partition ${p.partition}'s clients`);
    assert.ok(p.epoch > 0, "each partition has its own epoch");
  }
  assert.is(stats.epoch, Math.max(...stats.partitions!.map((p) => p.epoch)), "the stamp's epoch is the highest");
  assert.equal(stats.clients, { total: subjects.length, alive: subjects.length - 1, suspect: 1 });

  // Whichever coordinator the queue group picks gathers the same whole answer.
  const gatherers = new Set<string>();
  for (let i = 0; i < 60 && gatherers.size < ids.length; i++) {
    const s = json<StatsResponse>(await request(`presence.query.stats.${cluster}`));
    gatherers.add(s.coordinatorId);
    assert.is(s.leader, s.coordinatorId, "the stamp names the coordinator that gathered the answer");
    assert.equal(s.missingPartitions, []);
    assert.equal(s.clients, stats.clients, `${s.coordinatorId}'s answer covers every client`);
    assert.equal(leadersOf(s), leadersOf(stats));
  }
  assert.equal(sorted([...gatherers]), ids, "every coordinator answered for the whole cluster");

  // A direct subject answers for that coordinator's partitions only.
  for (const id of ids) {
    const own = json<StatsResponse>(await request(`presence.query.stats.${cluster}.${id}`));
    const mine = stats.partitions!.filter((p) => p.leader === id).map((p) => p.partition);
    assert.equal(
      own.partitions!.map((p) => p.partition),
      mine,
      `${id}'s own partitions`,
    );
    assert.equal(
      own.missingPartitions,
      [0, 1, 2, 3, 4, 5].filter((p) => !mine.includes(p)),
    );
    assert.is(
      own.clients.total,
      mine.map((p) => inPartition(p).length).reduce((a, b) => a + b, 0),
    );
  }
});

test("query - with partitions, list merges every partition's clients, sorted by subject, paged as with one", async () => {
  for (let i = 0; i < 6; i++) {
    const list = json<ListResponse>(await request(`presence.query.list.${cluster}`));
    assert.is(list.total, subjects.length);
    assert.equal(
      list.clients.map((c) => c.subject),
      subjects,
      `answer ${i} (from ${list.leader}) holds every client, sorted`,
    );
    assert.equal(list.missingPartitions, []);
    assert.is(list.partitionCount, P);
    assert.is(list.nextOffset, null);
  }
  // Pages of 5 walk the whole sorted list.
  const walked: string[] = [];
  let offset: number | null = 0;
  let pages = 0;
  while (offset !== null) {
    const page: ListResponse = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ offset, limit: 5 })));
    assert.is(page.offset, offset);
    assert.ok(page.clients.length <= 5);
    walked.push(...page.clients.map((c) => c.subject));
    offset = page.nextOffset;
    pages++;
  }
  assert.equal(walked, subjects);
  assert.is(pages, Math.ceil(subjects.length / 5));
  const page2 = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ offset: 5, limit: 5 })));
  assert.equal(
    page2.clients.map((c) => c.subject),
    subjects.slice(5, 10),
  );
  assert.is(page2.nextOffset, 10);

  const suspect = json<ListResponse>(await request(`presence.query.list.${cluster}`, JSON.stringify({ state: "suspect" })));
  assert.equal(
    suspect.clients.map((c) => c.subject),
    ["app.qp.silent"],
  );
  assert.is(suspect.total, 1);
  const bad = await request(`presence.query.list.${cluster}`, JSON.stringify({ limit: "lots" }));
  assert.is(errorCode(bad), "400");
});

test("query - with partitions, get finds any client through its partition's leader", async () => {
  const leaders = leadersOf(await statsUntil("every partition led", (s) => s.missingPartitions?.length === 0, 10_000));
  for (const subject of subjects) {
    const m = await request(`presence.query.get.${cluster}`, JSON.stringify({ subject }));
    assert.is(errorCode(m), "", `${subject} found`);
    const got = json<GetResponse>(m);
    assert.is(got.client.subject, subject);
    assert.is(got.partition, partitionOf(subject, P));
    assert.is(got.leader, leaders.get(got.partition!), "the stamp names the partition's leader");
  }
  const missing = await request(`presence.query.get.${cluster}`, "app.nobody");
  assert.is(errorCode(missing), "404");
  assert.is(json<QueryErrorBody>(missing).partition, partitionOf("app.nobody", P));
  // Asked directly, a coordinator that does not lead the subject's partition names the one that does.
  const subject = subjects[0]!;
  const other = ids.find((id) => id !== leaders.get(partitionOf(subject, P)))!;
  const direct = await request(`presence.query.get.${cluster}.${other}`, subject);
  assert.is(errorCode(direct), "421");
  assert.is(json<QueryErrorBody>(direct).leader, leaders.get(partitionOf(subject, P)));
});

test("status - with partitions, prints the partition → leader, epoch and clients table; --json carries it", async () => {
  const stats = await statsUntil("every partition led", (s) => s.missingPartitions?.length === 0, 10_000);
  const text = await runCli(["status", "--nats-url", server.url, "--cluster-id", cluster]);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, /partitions +6, 6 answered\n/);
  assert.match(text.stdout, /partition +leader +epoch +clients +alive +suspect/);
  for (const p of stats.partitions!) {
    const n = inPartition(p.partition).length;
    assert.match(text.stdout, new RegExp(`\\n +${p.partition} +${p.leader} +${p.epoch} +${n} `), `partition ${p.partition}'s row`);
  }
  assert.match(text.stdout, new RegExp(`clients +${subjects.length} \\(alive ${subjects.length - 1}, suspect 1\\)`));
  assert.match(text.stdout, /coordinators +3 seen/);
  for (const id of ids) {
    const mine = stats.partitions!.filter((p) => p.leader === id).map((p) => p.partition);
    assert.match(text.stdout, new RegExp(`${id} +leader +partitions ${partitionRanges(mine)}\n`));
  }
  assert.not.match(text.stdout, /following/, "with partitions a coordinator follows no single leader");

  const js = await runCli(["status", "--nats-url", server.url, "--cluster-id", cluster, "--json"]);
  assert.is(js.code, 0, js.stderr);
  const status = JSON.parse(js.stdout) as ClusterStatus;
  assert.is(status.partitionCount, P);
  assert.equal(status.missingPartitions, []);
  assert.equal(
    status.partitions!.map((p) => [p.partition, p.leader, p.clients.total]),
    stats.partitions!.map((p) => [p.partition, p.leader, inPartition(p.partition).length]),
  );
  assert.equal(status.clients, { total: subjects.length, alive: subjects.length - 1, suspect: 1 });
});

test("query - with partitions, a leader that does not answer leaves its partitions missing, not the request failed", async () => {
  const before = await statsUntil("every partition led", (s) => s.missingPartitions?.length === 0, 10_000);
  const stopped = coordinators[0]!;
  const lost = before.partitions!.filter((p) => p.leader === stopped.id).map((p) => p.partition);
  assert.ok(lost.length > 0, `${stopped.id} leads a partition`);
  stopped.signal("SIGSTOP");
  try {
    // The queue group may hand a request to the stopped coordinator: that one goes unanswered, the next is answered.
    let m: Msg | null = null;
    for (let i = 0; i < 10 && m === null; i++) m = await request(`presence.query.stats.${cluster}`, "", 1500).catch(() => null);
    assert.ok(m, "a running coordinator answered");
    const stats = json<StatsResponse>(m!);
    assert.is(errorCode(m!), "");
    assert.equal(stats.missingPartitions, lost, "the stopped leader's partitions are named as missing");
    assert.equal(
      stats.partitions!.map((p) => p.partition),
      [0, 1, 2, 3, 4, 5].filter((p) => !lost.includes(p)),
    );
    assert.is(stats.clients.total, subjects.filter((s) => !lost.includes(partitionOf(s, P))).length, "the others' clients are counted");

    let list: Msg | null = null;
    for (let i = 0; i < 10 && list === null; i++) list = await request(`presence.query.list.${cluster}`, "", 1500).catch(() => null);
    assert.ok(list, "a running coordinator answered list");
    const page = json<ListResponse>(list!);
    assert.equal(page.missingPartitions, lost);
    assert.equal(
      page.clients.map((c) => c.subject),
      subjects.filter((s) => !lost.includes(partitionOf(s, P))),
    );

    const subject = subjects.find((s) => partitionOf(s, P) === lost[0])!;
    let got: Msg | null = null;
    for (let i = 0; i < 10 && got === null; i++) got = await request(`presence.query.get.${cluster}`, subject, 1500).catch(() => null);
    assert.ok(got, "a running coordinator answered get");
    assert.is(errorCode(got!), "503");
    const body = json<QueryErrorBody>(got!);
    assert.is(body.partition, lost[0]);
    assert.is(body.leader, stopped.id);
    assert.match(body.message, `the leader of partition ${lost[0]} (${stopped.id}) did not answer`);
  } finally {
    stopped.signal("SIGCONT");
  }
  await statsUntil("every partition answering again", (s) => s.missingPartitions?.length === 0, 20_000);
});

test("query - with partitions, every coordinator's service is discoverable and says it gathers", async () => {
  const seen: string[] = [];
  for await (const info of await new Svcm(app).client({ strategy: "timer", maxWait: 500 }).info("presence-coordinator")) {
    if (info.metadata?.clusterId !== cluster) continue;
    seen.push(info.metadata.coordinatorId!);
    const stats = info.endpoints.find((e) => e.subject === `presence.query.stats.${cluster}`);
    assert.match(String(stats?.metadata?.description), /asks each partition's leader/);
  }
  assert.equal(sorted(seen), ids);
});

test.run();
