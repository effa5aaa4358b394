/**
 * The quick chaos run (`npm run chaos -- --quick`, as CI runs it): one minute of faults
 * against a 3-node JetStream cluster, 3 coordinators and 300 simulated clients, then every
 * invariant checked. Needs the built CLI (dist/), as every integration test does.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SEED = 4022727017;

/**
 * The least each check must judge in this seed's run (about a third to a half of what a
 * run judges), so that a check that silently stops seeing its subject fails the test.
 */
const MIN_CHECKED: Record<string, number> = {
  "false deaths": 8, // NodeDead
  "missed deaths": 8, // silenced clients
  "duplicate NodeDead": 8, // NodeDead
  "stale epochs": 2000, // presence reports
  "overlapping epochs": 3, // epochs with reports
  "heartbeat epochs grow": 30, // heartbeats
  "monitored after takeover": 2, // takeovers
  "no report for refused input": 2000, // presence reports
  "registrations reported": 300, // registrations
  "false suspects": 10, // NodeSuspect
  "NodeLeft in time": 5, // unregistrations
  "no report after leave": 6, // unregistrations
  "refused input ignored": 16, // malformed registrations: one of each kind at least
  "leader faults ran": 3, // SIGSTOP, SIGKILL, SIGTERM of the leader
  "no coordinator crash": 3, // coordinator processes
  "reports decodable": 2000, // messages
};

interface ChaosResult {
  seed: number;
  passed: boolean;
  faults: { injected: number; byKind: Record<string, number> };
  reports: { presence: number; heartbeats: number; election: number };
  failovers: { count: number };
  malformedSent: number;
  checks: { name: string; verdict: string; checked: number; violations: number; examples: { message: string }[] }[];
}

test("chaos - a minute of faults on a 3-node cluster breaks no invariant", async () => {
  const dir = await mkdtemp(join(tmpdir(), "presence-chaos-"));
  const json = join(dir, "chaos.json");
  let output = "";
  try {
    // A fixed schedule, so that every CI run meets the same faults: this seed's minute holds
    // SIGKILL, SIGTERM and SIGSTOP of the leader and a NATS server stop, and the same minima
    // below hold for it every time. (Every seed's schedule holds a SIGSTOP and a SIGTERM of
    // the leader; `npm run chaos` draws a new seed each time.)
    const child = spawn(process.execPath, ["--import", "tsx", "bench/chaos.ts", "--quick", "--seed", String(SEED), "--json", json], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    // 60 s of faults, ~10 s to start, up to 25 s to settle: a hung run is killed.
    const timer = setTimeout(() => child.kill("SIGINT"), 150_000);
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    clearTimeout(timer);
    assert.is(code, 0, `chaos exited with ${String(code)}:\n${output.split("\n").slice(-40).join("\n")}`);

    const result = JSON.parse(await readFile(json, "utf8")) as ChaosResult;
    assert.ok(result.passed, "every invariant passed");
    // Faults of several kinds were injected, cluster faults among them.
    const kinds = Object.keys(result.faults.byKind);
    assert.ok(kinds.length >= 4, `faults of several kinds (${kinds.join(", ")})`);
    assert.ok(
      kinds.some((k) => ["kill-coordinator", "term-leader", "stop-leader", "stop-server"].includes(k)),
      `a cluster fault among them (${kinds.join(", ")})`,
    );
    assert.is(result.seed, SEED);
    assert.ok(result.failovers.count >= 1, "at least one failover was measured");
    // The invariants were judged over a non-trivial number of reports.
    assert.ok(result.reports.presence > 2000, `presence reports checked (${result.reports.presence})`);
    // Every check judged a sensible number of items (a check that judged nothing proves
    // nothing), and no check runs that this list does not know.
    const byName = new Map(result.checks.map((c) => [c.name, c]));
    assert.equal([...byName.keys()].sort(), Object.keys(MIN_CHECKED).sort(), "the checks of the run");
    for (const [name, min] of Object.entries(MIN_CHECKED)) {
      const c = byName.get(name)!;
      assert.is(c.verdict, "PASS", `${name}: ${c.examples.map((e) => e.message).join("; ")}`);
      assert.ok(c.checked >= min, `${name} judged ${c.checked}, at least ${min} wanted`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
