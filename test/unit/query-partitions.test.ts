/**
 * Answers across partitions, without NATS: merging the coverage, stats and pages of several
 * coordinators' answers, and the status text's partition table.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatStatus, partitionRanges } from "../../src/cli/print/status.js";
import type { ClusterStatus } from "../../src/observe/query/status.js";
import { type ClientInfo, mergeClients, mergeCoverage, mergeStats, pageOf, type PartitionStats } from "../../src/protocol/query.js";

const client = (subject: string, state: "alive" | "suspect" = "alive"): ClientInfo => ({
  subject,
  state,
  lastSeenMs: 0,
  rttMs: 0,
  missedPings: 0,
  metadata: {},
});
const stats = (partition: number, leader: string, epoch: number, total: number, suspect = 0): PartitionStats => ({
  partition,
  leader,
  epoch,
  clients: { total, alive: total - suspect, suspect },
});

test("query partitions - coverage lists each partition once, the highest epoch winning, and the rest as missing", () => {
  const merged = mergeCoverage(5, [
    [
      { partition: 3, leader: "a", epoch: 7 },
      { partition: 0, leader: "a", epoch: 4 },
    ],
    [
      { partition: 3, leader: "b", epoch: 9 }, // b took partition 3 over from a a moment ago
      { partition: 9, leader: "b", epoch: 1 }, // not a partition of this cluster
    ],
  ]);
  assert.equal(merged, {
    partitionCount: 5,
    partitions: [
      { partition: 0, leader: "a", epoch: 4 },
      { partition: 3, leader: "b", epoch: 9 },
    ],
    missingPartitions: [1, 2, 4],
  });
  assert.equal(mergeCoverage(2, []).missingPartitions, [0, 1], "no answer: everything missing");
});

test("query partitions - stats sum the client counts of the partitions covered, the stamp's epoch the highest", () => {
  const merged = mergeStats(4, [[stats(0, "a", 3, 10, 1), stats(2, "a", 5, 4)], [stats(1, "b", 8, 6, 2)]]);
  assert.equal(merged.clients, { total: 20, alive: 17, suspect: 3 });
  assert.is(merged.epoch, 8);
  assert.equal(merged.missingPartitions, [3]);
  assert.equal(
    merged.partitions.map((p) => p.partition),
    [0, 1, 2],
  );
});

test("query partitions - a page of several coordinators' clients is sorted by subject and counts each subject once", () => {
  const a = { clients: [client("a.1"), client("a.3"), client("a.5")], total: 7 };
  const b = { clients: [client("a.2"), client("a.4")], total: 2 };
  const merged = mergeClients([a, b]);
  assert.is(merged.total, 9);
  const page = (offset: number, limit: number) => pageOf(merged.clients, offset, limit, merged.total);
  assert.equal(
    page(0, 3).page.map((c) => c.subject),
    ["a.1", "a.2", "a.3"],
  );
  assert.is(page(0, 3).nextOffset, 3);
  assert.equal(
    page(3, 3).page.map((c) => c.subject),
    ["a.4", "a.5"],
  );
  assert.is(page(3, 3).nextOffset, 5, "more to come: a holds 7 in all");
  const dup = mergeClients([
    { clients: [client("x")], total: 1 },
    { clients: [client("x"), client("y")], total: 2 },
  ]);
  assert.equal(
    dup.clients.map((c) => c.subject),
    ["x", "y"],
  );
  assert.is(dup.total, 2);
  assert.is(pageOf(dup.clients, 0, 10, dup.total).nextOffset, null);
  assert.equal(page(50, 3), { page: [], nextOffset: null });
});

test("query partitions - partition ranges run consecutive partitions together", () => {
  assert.is(partitionRanges([0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
  assert.is(partitionRanges([4]), "4");
  assert.is(partitionRanges([]), "");
});

test("status - with partitions the text has a row per partition, dashes where none answered", () => {
  const status: ClusterStatus = {
    clusterId: "prod",
    leader: "c1",
    epoch: 14,
    clients: { total: 21, alive: 19, suspect: 2 },
    leaderUptimeMs: 5000,
    partitionCount: 3,
    partitions: [stats(0, "c1", 12, 10, 1), stats(2, "c2", 14, 11, 1)],
    missingPartitions: [1],
    coordinators: [
      { coordinatorId: "c1", role: "leader", leader: "c1", epoch: 12, serviceId: "x", version: "0.2.0", partitions: [0] },
      { coordinatorId: "c2", role: "leader", leader: "c2", epoch: 14, serviceId: "y", version: "0.2.0", partitions: [2] },
      { coordinatorId: "c3", role: "unknown", leader: null, epoch: 0 },
    ],
    lastHeartbeat: { coordinatorId: "c2", epoch: 14, ts: 0, partition: 2, ageMs: 300 },
  };
  const text = formatStatus(status);
  assert.match(text, /partitions +3, 2 answered \(no answer for 1\)\n/);
  assert.match(text, /\n +partition +leader +epoch +clients +alive +suspect\n/);
  assert.match(text, /\n +0 +c1 +12 +10 +9 +1\n/);
  assert.match(text, /\n +1 +- +- +- +- +-\n/);
  assert.match(text, /\n +2 +c2 +14 +11 +10 +1\n/);
  assert.match(text, /clients +21 \(alive 19, suspect 2\) in the partitions that answered/);
  assert.match(text, /c1 +leader +partitions 0\n/);
  assert.match(text, /heartbeat +from c2 partition 2 epoch 14/);
  assert.not.match(text, /^leader /m, "no single leader with partitions");
  const { partitionCount: _c, partitions: _p, missingPartitions: _m, ...single } = status;
  const one = formatStatus({ ...single, lastHeartbeat: { coordinatorId: "c1", epoch: 14, ts: 0, ageMs: 300 } });
  assert.match(one, /leader +c1 \(epoch 14/, "one partition: as before");
  assert.not.match(one, /partition/);
});

test.run();
