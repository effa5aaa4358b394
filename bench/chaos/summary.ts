/**
 * What a chaos run prints when it is over: a verdict per invariant, the reports, faults and
 * failovers it saw, the first violations of a failed check with the command to reproduce
 * it, and the same as JSON for `--json`.
 */
import { writeFile } from "node:fs/promises";
import type { SeenElection } from "../../harness/chaos-invariants/record.js";
import type { Failover } from "../../harness/chaos-invariants/timeline.js";
import { verdictOf, type CheckResult } from "../../harness/chaos-invariants/verdict.js";
import { fingerprint, type PlannedFault } from "../../harness/chaos-schedule.js";
import type { ChaosFlags } from "./flags.js";
import type { ChaosObserver } from "./observer.js";
import { out, rel } from "./output.js";
import { STALL_MS, type ChaosRig } from "./rig.js";

/** A judged run: its flags, schedule, rig and observer, the checks and failovers, and the clients not settled at the end. */
export interface JudgedRun {
  flags: ChaosFlags;
  schedule: readonly PlannedFault[];
  /** When the faults started, on the run's clock. */
  t0: number;
  rig: ChaosRig;
  observer: ChaosObserver;
  checks: CheckResult[];
  failovers: Failover[];
  /** In a partitioned run, the failovers of each partition, by partition. */
  failoversByPartition?: Failover[][];
  passed: boolean;
  unsettled: string[];
}

/** Why leaders stepped down (other than shutting down), counted by reason. */
function stepDowns(elections: readonly SeenElection[]): string {
  const count = new Map<string, number>();
  for (const e of elections)
    if (e.type === "SteppedDown" && e.reason !== "shutdown") count.set(e.reason ?? "?", (count.get(e.reason ?? "?") ?? 0) + 1);
  return count.size === 0 ? "none reported" : [...count].map(([r, n]) => `${r} ${n}`).join(", ");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

/** Failovers as "n, min / median / max ms", or "none". */
function spread(fs: readonly Failover[]): string {
  const ms = fs.map((f) => f.ms);
  return fs.length === 0 ? "none" : `${fs.length}, ${Math.min(...ms)} / ${median(ms)} / ${Math.max(...ms)} ms`;
}

/** The failovers of each partition: how many, how long, and what caused them. */
function partitionFailovers(byPartition: readonly Failover[][]) {
  return byPartition.map((fs, partition) => {
    const ms = fs.map((f) => f.ms);
    const causes: Record<string, number> = {};
    for (const f of fs) causes[f.cause ?? "none"] = (causes[f.cause ?? "none"] ?? 0) + 1;
    return {
      partition,
      count: fs.length,
      minMs: fs.length ? Math.min(...ms) : null,
      medianMs: fs.length ? median(ms) : null,
      maxMs: fs.length ? Math.max(...ms) : null,
      causes,
    };
  });
}

/** The faults injected and skipped, counted by kind. */
function faultCounts(o: JudgedRun) {
  const injected = o.rig.faults.filter((f) => !f.skipped);
  const byKind: Record<string, number> = {};
  for (const f of injected) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  const skippedByKind: Record<string, number> = {};
  for (const f of o.rig.faults.filter((f) => f.skipped)) skippedByKind[f.kind] = (skippedByKind[f.kind] ?? 0) + 1;
  return { injected, byKind, skippedByKind };
}

/** Prints the verdict per invariant and what the run saw. */
export function printSummary(o: JudgedRun): void {
  const { injected, byKind, skippedByKind } = faultCounts(o);
  out("");
  out(`${"invariant".padEnd(28)} ${"checked".padStart(8)} ${"".padEnd(36)} ${"violations".padStart(10)}  verdict`);
  for (const c of o.checks) {
    const extra = c.skipped ? ` (+${c.skipped} not judgeable)` : "";
    out(
      `${c.name.padEnd(28)} ${String(c.checked).padStart(8)} ${(c.unit + extra).padEnd(36)} ${String(c.violations.length).padStart(10)}  ${verdictOf(c)}`,
    );
  }
  out("");
  out(
    `reports checked: ${o.observer.presence.length} presence, ${o.observer.heartbeats.length} heartbeats, ${o.observer.elections.length} election`,
  );
  out(
    `faults injected: ${injected.length} (${Object.entries(byKind)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")})${
      o.rig.faults.length > injected.length
        ? `; skipped: ${Object.entries(skippedByKind)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")}`
        : ""
    }`,
  );
  out(`malformed registrations sent: ${o.rig.malformedSent}; registrations never acknowledged: ${o.rig.unackedRegistrations}`);
  out(
    `harness stalls over ${STALL_MS} ms: ${o.rig.harnessStalls.length}${o.rig.harnessStalls.length > 0 ? ` (longest ${Math.round(Math.max(...o.rig.harnessStalls.map((w) => w.to - w.from)))} ms)` : ""}`,
  );
  const ms = o.failovers.map((f) => f.ms);
  if (o.failoversByPartition) {
    out(`failovers: ${spread(o.failovers)}${o.failovers.length ? " (min / median / max)" : ""}; by partition:`);
    for (const [p, fs] of o.failoversByPartition.entries()) {
      const causes = partitionFailovers([fs])[0]!.causes;
      out(
        `  partition ${String(p).padStart(3)}: ${spread(fs)}${
          fs.length
            ? ` (${Object.entries(causes)
                .map(([k, n]) => `${k} ${n}`)
                .join(", ")})`
            : ""
        }`,
      );
    }
  } else
    out(
      o.failovers.length === 0
        ? "failovers: none"
        : `failovers: ${o.failovers.length}, ${Math.min(...ms)} / ${median(ms)} / ${Math.max(...ms)} ms (min / median / max): ${o.failovers.map((f) => `${f.from}->${f.to} ${f.ms} ms${f.cause ? ` (${f.cause})` : ""}`).join(", ")}`,
    );
  const unprovoked = o.failovers.filter((f) => !f.cause);
  if (unprovoked.length > 0) {
    out(
      `failovers no fault explains: ${unprovoked.map((f) => `${f.from}->${f.to} at ${rel(f.at)}`).join(", ")} (steppings-down: ${stepDowns(o.observer.elections)})`,
    );
  }
  out(
    `false deaths ${o.checks[0]!.violations.length}, missed deaths ${o.checks[1]!.violations.length}, duplicate NodeDead ${o.checks[2]!.violations.length}, stale-epoch reports ${o.checks[3]!.violations.length}`,
  );
  if (o.unsettled.length > 0) out(`not settled at the end: ${o.unsettled.length} (${o.unsettled.slice(0, 5).join(", ")})`);
}

/** Writes the run's result as JSON to `file`. */
export async function writeResults(o: JudgedRun, file: string): Promise<void> {
  const { injected, byKind, skippedByKind } = faultCounts(o);
  const ms = o.failovers.map((f) => f.ms);
  const result = {
    seed: o.flags.seed,
    quick: o.flags.quick,
    durationS: o.flags.durationS,
    clients: o.flags.clientCount,
    partitions: o.flags.partitions,
    passed: o.passed,
    schedule: { planned: o.schedule.length, fingerprint: fingerprint(o.schedule) },
    faults: {
      injected: injected.length,
      byKind,
      skipped: skippedByKind,
      list: o.rig.faults.map((f) => ({ ...f, at: Math.round(f.at - o.t0) })),
    },
    malformedSent: o.rig.malformedSent,
    unackedRegistrations: o.rig.unackedRegistrations,
    harnessStalls: o.rig.harnessStalls.length,
    reports: { presence: o.observer.presence.length, heartbeats: o.observer.heartbeats.length, election: o.observer.elections.length },
    steppedDown: stepDowns(o.observer.elections),
    failovers: {
      count: o.failovers.length,
      minMs: o.failovers.length ? Math.min(...ms) : null,
      medianMs: o.failovers.length ? median(ms) : null,
      maxMs: o.failovers.length ? Math.max(...ms) : null,
      list: o.failovers.map((f) => ({ ...f, at: Math.round(f.at - o.t0) })),
      ...(o.failoversByPartition ? { byPartition: partitionFailovers(o.failoversByPartition) } : {}),
    },
    checks: o.checks.map((c) => ({
      name: c.name,
      verdict: verdictOf(c),
      checked: c.checked,
      unit: c.unit,
      skipped: c.skipped ?? 0,
      violations: c.violations.length,
      examples: c.violations.slice(0, 10).map((v) => ({ at: Math.round(v.at - o.t0), message: v.message })),
    })),
  };
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
}

/** Prints every check that failed or judged nothing, with its first violations, and how to reproduce the run. */
export function printFailures(o: JudgedRun): void {
  out("");
  for (const c of o.checks.filter((c) => verdictOf(c) === "NOT JUDGED"))
    out(`NOT JUDGED ${c.name} (seed ${o.flags.seed}): it checked no ${c.unit}`);
  for (const c of o.checks.filter((c) => c.violations.length > 0)) {
    out(`FAIL ${c.name} (seed ${o.flags.seed}):`);
    for (const v of c.violations.slice(0, 5)) out(`  ${rel(v.at)}  ${v.message}`);
    if (c.violations.length > 5) out(`  ... and ${c.violations.length - 5} more`);
  }
  out(`reproduce with: ${o.flags.reproduce}`);
}
