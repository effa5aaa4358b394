/**
 * The pure parts of the client library and the query service: the presence view (reports
 * in, join/update/leave out, stale epochs dropped, expiry), the query requests and pages,
 * the status text, and the library's import graph (NATS and the protocol only).
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { NatsConnection } from "@nats-io/transport-node";
import { PresenceView, PresenceWatch } from "../../src/client/watch-presence.js";
import { formatReport } from "../../src/cli/print/report.js";
import type { Report } from "../../src/protocol/presence.js";
import {
  DEFAULT_LIST_LIMIT,
  MAX_LIST_LIMIT,
  pageOf,
  parseGetRequest,
  parseListRequest,
  QueryRequestError,
  type ClientInfo,
} from "../../src/protocol/query.js";
import { formatStatus } from "../../src/cli/print/status.js";
import type { ClusterStatus } from "../../src/observe/query/status.js";

const enc = (s: string) => new TextEncoder().encode(s);

function report(over: Partial<Report>): Report {
  return {
    type: "NodeState",
    clusterId: "c",
    coordinatorId: "lead-1",
    epoch: 5,
    seq: 1,
    ts: 1000,
    clientSubject: "svc.a",
    state: "alive",
    lastSeenMs: 900,
    rttMs: 1.5,
    missedPings: 0,
    metadata: {},
    ...over,
  };
}

test("watch - a first report joins, NodeState refreshes quietly, a change of state is an update", () => {
  const view = new PresenceView();
  const joined = view.apply(report({ type: "NodePresent" }), 1);
  assert.equal(
    joined.changes.map((c) => c.type),
    ["join"],
  );
  assert.ok(joined.newLeader);
  assert.is(view.leader, "lead-1");
  const quiet = view.apply(report({ lastSeenMs: 1900, rttMs: 0.7 }), 2);
  assert.equal(quiet.changes, [], "NodeState with the same state changes nothing visible");
  assert.is(view.get("svc.a")!.lastSeenMs, 1900, "but the entry is fresh");
  assert.is(view.get("svc.a")!.updatedAt, 2);
  const suspect = view.apply(report({ type: "NodeSuspect", state: "suspect", missedPings: 1 }), 3);
  assert.is(suspect.changes[0]!.type, "update");
  const u = suspect.changes[0] as Extract<(typeof suspect.changes)[number], { type: "update" }>;
  assert.is(u.previous.state, "alive");
  assert.is(u.entry.state, "suspect");
  assert.equal(
    view.list({ state: "suspect" }).map((e) => e.subject),
    ["svc.a"],
  );
});

test("watch - NodeDead and NodeLeft leave with their reason; an unknown client's death changes nothing", () => {
  const view = new PresenceView();
  view.apply(report({ clientSubject: "svc.a", type: "NodePresent" }));
  view.apply(report({ clientSubject: "svc.b", type: "NodePresent" }));
  const dead = view.apply(report({ clientSubject: "svc.a", type: "NodeDead", state: "dead" }));
  assert.equal(
    dead.changes.map((c) => (c.type === "leave" ? `${c.subject}:${c.reason}` : c.type)),
    ["svc.a:dead"],
  );
  const left = view.apply(report({ clientSubject: "svc.b", type: "NodeLeft", state: "left" }));
  assert.equal(
    left.changes.map((c) => (c.type === "leave" ? `${c.subject}:${c.reason}` : c.type)),
    ["svc.b:left"],
  );
  assert.is(view.size, 0);
  assert.equal(view.apply(report({ clientSubject: "svc.z", type: "NodeDead", state: "dead" })).changes, []);
});

test("watch - a report of a lower epoch is dropped; a new leader keeps the entries and its NodePresent is an update", () => {
  const view = new PresenceView();
  view.apply(report({ type: "NodePresent", epoch: 7 }));
  const stale = view.apply(report({ type: "NodeDead", state: "dead", epoch: 6, coordinatorId: "old" }));
  assert.not.ok(stale.accepted);
  assert.ok(view.get("svc.a"), "still present");
  const takeover = view.apply(report({ type: "NodePresent", epoch: 9, coordinatorId: "lead-2" }));
  assert.ok(takeover.newLeader);
  assert.equal(
    takeover.changes.map((c) => c.type),
    ["update"],
  );
  assert.is(view.epoch, 9);
  assert.is(view.leader, "lead-2");
  assert.is(view.get("svc.a")!.coordinatorId, "lead-2");
  assert.not.ok(view.apply(report({ epoch: 7 })).accepted, "the old leader's epoch is stale now");
});

test("watch - each partition's reports are judged against that partition's epochs only", () => {
  const view = new PresenceView();
  // Partition 1 led at epoch 263, partition 3 at 161 (epochs of different partitions are unrelated).
  assert.ok(view.apply(report({ clientSubject: "svc.one", type: "NodePresent", partition: 1, epoch: 263, coordinatorId: "c" })).accepted);
  const p3 = view.apply(report({ clientSubject: "svc.three", type: "NodePresent", partition: 3, epoch: 161, coordinatorId: "d" }));
  assert.ok(p3.accepted, "a lower epoch of another partition is not stale");
  assert.ok(p3.newLeader);
  assert.is(p3.partition, 3);
  assert.equal(
    p3.changes.map((c) => c.type),
    ["join"],
  );
  // A report without a partition is partition 0: a partition of its own, too.
  assert.ok(view.apply(report({ clientSubject: "svc.zero", type: "NodePresent", epoch: 5, coordinatorId: "e" })).accepted);
  assert.is(view.size, 3);
  assert.is(view.get("svc.three")!.partition, 3);
  assert.is(view.get("svc.zero")!.partition, 0);
  assert.equal(
    [0, 1, 2, 3].map((p) => [view.epochOf(p), view.leaderOf(p)]),
    [
      [5, "e"],
      [263, "c"],
      [0, null],
      [161, "d"],
    ],
  );
  assert.equal(
    view.partitions().map((l) => `${l.partition}:${l.coordinatorId}@${l.epoch}`),
    ["0:e@5", "1:c@263", "3:d@161"],
  );
  assert.is(view.epoch, 263, "epoch stays the highest seen over all partitions");
  assert.is(view.leader, "c");
  // Within partition 3, an older epoch is stale; a newer one is its new leader.
  const stale = view.apply(
    report({ clientSubject: "svc.three", type: "NodeDead", state: "dead", partition: 3, epoch: 150, coordinatorId: "old" }),
  );
  assert.not.ok(stale.accepted);
  assert.is(stale.partition, 3);
  assert.ok(view.get("svc.three"));
  assert.ok(view.apply(report({ clientSubject: "svc.three", partition: 3, epoch: 161, coordinatorId: "d" })).accepted);
  const handover = view.apply(report({ clientSubject: "svc.three", type: "NodePresent", partition: 3, epoch: 270, coordinatorId: "c" }));
  assert.ok(handover.newLeader);
  assert.is(view.leaderOf(3), "c");
  assert.is(view.epochOf(1), 263, "partition 1 is untouched");
  assert.is(view.epoch, 270);
  assert.not.ok(view.apply(report({ clientSubject: "svc.three", partition: 3, epoch: 161, coordinatorId: "d" })).accepted);
});

test("watch - the stale and leader events name the report's partition and its highest epoch", () => {
  const watch = new PresenceWatch(null as unknown as NatsConnection, { clusterId: "c" });
  const seen: string[] = [];
  watch.on("leader", ({ coordinatorId, epoch, partition }) => seen.push(`leader ${coordinatorId}@${epoch} p${partition}`));
  watch.on("stale", ({ report: r, highestEpoch, partition }) => seen.push(`stale ${r.epoch} < ${highestEpoch} p${partition}`));
  watch.receive(report({ partition: 1, epoch: 263, coordinatorId: "c" }));
  watch.receive(report({ clientSubject: "svc.b", partition: 3, epoch: 161, coordinatorId: "d" }));
  watch.receive(report({ clientSubject: "svc.b", partition: 3, epoch: 160, coordinatorId: "x" }));
  assert.equal(seen, ["leader c@263 p1", "leader d@161 p3", "stale 160 < 161 p3"]);
  assert.is(watch.epochOf(3), 161);
  assert.is(watch.leaderOf(1), "c");
});

test("watch - text lines show a partition other than 0 as [pN], and one-partition lines are unchanged", () => {
  const base = report({ ts: Date.UTC(2024, 0, 1, 10, 0, 0, 5), lastSeenMs: 0 });
  assert.is(formatReport(base), "10:00:00.005  NodeState     svc.a  alive  lastSeen=- rtt=1.5ms missed=0  leader=lead-1 epoch=5 seq=1");
  assert.is(formatReport({ ...base, partition: 0 }), formatReport(base));
  assert.is(
    formatReport({ ...base, partition: 3 }),
    "10:00:00.005  NodeState     svc.a  alive  lastSeen=- rtt=1.5ms missed=0  [p3] leader=lead-1 epoch=5 seq=1",
  );
});

test("watch - entries no report refreshed for the expiry leave as expired", () => {
  const view = new PresenceView();
  view.apply(report({ clientSubject: "svc.old", type: "NodePresent" }), 1000);
  view.apply(report({ clientSubject: "svc.new", type: "NodePresent" }), 9000);
  const gone = view.expire(16_000, 15_000);
  assert.equal(
    gone.map((c) => (c.type === "leave" ? `${c.subject}:${c.reason}` : c.type)),
    ["svc.old:expired"],
  );
  assert.equal(
    view.list().map((e) => e.subject),
    ["svc.new"],
  );
});

test("query - list requests: defaults, filters, caps and refusals", () => {
  assert.equal(parseListRequest(enc("")), { offset: 0, limit: DEFAULT_LIST_LIMIT });
  assert.equal(parseListRequest(enc('{"state":"suspect","offset":5,"limit":10}')), { state: "suspect", offset: 5, limit: 10 });
  assert.is(parseListRequest(enc(`{"limit":${MAX_LIST_LIMIT * 10}}`)).limit, MAX_LIST_LIMIT);
  for (const bad of ['{"state":"dead"}', '{"limit":0}', '{"offset":-1}', '{"limit":"x"}', "[1]", "nope"]) {
    assert.throws(
      () => parseListRequest(enc(bad)),
      (e: unknown) => e instanceof QueryRequestError,
      bad,
    );
  }
});

test("query - get requests take JSON or the bare subject", () => {
  assert.equal(parseGetRequest(enc('{"subject":"svc.a"}')), { subject: "svc.a" });
  assert.equal(parseGetRequest(enc(" svc.b \n")), { subject: "svc.b" });
  assert.throws(
    () => parseGetRequest(enc("")),
    (e: unknown) => e instanceof QueryRequestError,
  );
  assert.throws(
    () => parseGetRequest(enc('{"subject":3}')),
    (e: unknown) => e instanceof QueryRequestError,
  );
});

test("query - pages are sorted by subject and say where the next one starts", () => {
  const c = (subject: string): ClientInfo => ({ subject, state: "alive", lastSeenMs: 0, rttMs: 0, missedPings: 0, metadata: {} });
  const all = ["d", "a", "c", "b", "e"].map(c);
  assert.equal(
    pageOf(all, 0, 2).page.map((x) => x.subject),
    ["a", "b"],
  );
  assert.is(pageOf(all, 0, 2).nextOffset, 2);
  assert.equal(
    pageOf(all, 4, 2).page.map((x) => x.subject),
    ["e"],
  );
  assert.is(pageOf(all, 4, 2).nextOffset, null);
  assert.equal(pageOf(all, 9, 2), { page: [], nextOffset: null });
});

test("status - the text names the leader, the counts and every coordinator's role", () => {
  const status: ClusterStatus = {
    clusterId: "prod",
    leader: "c2",
    epoch: 12,
    clients: { total: 42, alive: 40, suspect: 2 },
    leaderUptimeMs: 192_000,
    coordinators: [
      { coordinatorId: "c1", role: "follower", leader: "c2", epoch: 12, serviceId: "x", version: "0.1.0" },
      { coordinatorId: "c2", role: "leader", leader: "c2", epoch: 12, serviceId: "y", version: "0.1.0" },
      { coordinatorId: "java-1", role: "leader", leader: "java-1", epoch: 3 },
    ],
    lastHeartbeat: { coordinatorId: "c2", epoch: 12, ts: 0, ageMs: 400 },
  };
  const text = formatStatus(status);
  assert.match(text, /leader +c2 \(epoch 12, up 3m 12s\)/);
  assert.match(text, /clients +42 \(alive 40, suspect 2\)/);
  assert.match(text, /coordinators +3 seen/);
  assert.match(text, /c1 +follower +following c2 \(epoch 12\)/);
  assert.match(text, /java-1 .*heard through heartbeats only/);
  assert.match(formatStatus({ ...status, leader: null, clients: null }), /leader +none known/);
});

/** The runtime imports of a module (type-only imports are erased), resolved for relative ones. */
function runtimeImports(file: string): { relative: string[]; packages: string[] } {
  const text = readFileSync(file, "utf8");
  const relative: string[] = [];
  const packages: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s+(type\s+)?(?:([^;]*?)\s+from\s+)?["']([^"']+)["']/g;
  for (const m of text.matchAll(re)) {
    if (m[1]) continue; // import type / export type
    const spec = m[3]!;
    if (spec.startsWith(".")) relative.push(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
    else packages.push(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
  }
  return { relative, packages };
}

test("client - the library imports NATS, the protocol and the FNV-1a hash only (no winston, xstate or commander)", () => {
  const entry = fileURLToPath(new URL("../../src/client/index.ts", import.meta.url));
  const seen = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry, fileURLToPath(new URL("../../src/index.ts", import.meta.url))];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const { relative, packages: pkgs } = runtimeImports(file);
    queue.push(...relative);
    for (const p of pkgs) packages.add(p);
  }
  const files = [...seen].map((f) => f.slice(f.indexOf("/src/") + 1)).sort();
  assert.ok(
    files.every((f) => f.startsWith("src/client/") || f.startsWith("src/protocol/") || f === "src/index.ts"),
    files.join(", "),
  );
  // @sindresorhus/fnv1a: partitionOf, which consumers in any language compute the same way.
  const allowed = new Set(["@nats-io/transport-node", "@bufbuild/protobuf", "@sindresorhus/fnv1a", "node:"]);
  for (const p of packages) assert.ok(allowed.has(p) || p.startsWith("node:"), `the library imports ${p}`);
  assert.ok(packages.has("@nats-io/transport-node"));
});

test.run();
