/** The demo's NodeState summary: per coordinator, stamped with when the reports were published. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Report } from "../../src/protocol/presence.js";
import { nodeStateSummary } from "../../src/dev/dev.js";

const state = (coordinatorId: string, client: string, st: "alive" | "suspect", ts: number): Report => ({
  type: "NodeState",
  clientSubject: `demo.${client}`,
  state: st,
  lastSeenMs: ts - 10,
  rttMs: 0.3,
  missedPings: st === "suspect" ? 1 : 0,
  metadata: {},
  clusterId: "dev",
  coordinatorId,
  epoch: 1,
  seq: 1,
  ts,
});

const at = (hms: string) => Date.parse(`2026-12-02T${hms}Z`);

test("dev summary - one line per coordinator, each client's latest state, at its last report's publish time", () => {
  const lines = nodeStateSummary([
    state("dev-a", "client-1", "alive", at("10:00:00.100")),
    state("dev-a", "client-2", "alive", at("10:00:00.200")),
    state("dev-a", "client-1", "suspect", at("10:00:00.900")),
    // The old leader crashed; the new one reports from here.
    state("dev-b", "client-1", "alive", at("10:00:02.300")),
  ]);
  assert.equal(lines, [
    "10:00:00.900  dev-a    NodeState        client-1=suspect client-2=alive",
    "10:00:02.300  dev-b    NodeState        client-1=alive",
  ]);
  assert.equal(nodeStateSummary([]), []);
});

test.run();
