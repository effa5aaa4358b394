/**
 * `npm run chaos`: a fault-injection run on loopback. A 3-node JetStream nats-server
 * cluster, 3 coordinator processes (the built CLI, `--kv-replicas 3`, default timings,
 * each listing the seeds from another server) and a few hundred simulated clients; for a
 * set time it injects faults from a seeded schedule (harness/chaos-schedule.ts), records
 * every report and heartbeat from its own observer connection, settles, and then checks
 * the invariants of design section 5 (harness/chaos-invariants/). Exit 0 when every check
 * passes, 1 when one fails (with the seed to reproduce it), 2 for bad flags.
 *
 * The simulated clients and the observer connect to the first NATS server only, and that
 * server is never stopped: server faults hit the other two, which carry coordinators and
 * JetStream replicas. So a client that is not silenced always answers, and the observer
 * never misses a report because its own server went away.
 *
 * With `--partitions P` every coordinator runs P partitions, the schedule also starts and
 * stops coordinators, every invariant is judged per partition, and the partitions must be
 * balanced over the live coordinators within 10 s of the last membership change
 * (harness/chaos-invariants/partitions.ts). Without it the run is the unpartitioned one.
 *
 * This file runs the schedule; its parts are in bench/chaos/: the flags (flags.ts), the rig
 * of processes and ground truth (rig.ts), the observer (observer.ts), the faults
 * (faults.ts), the malformed registrations (malformed.ts), the judging (judge.ts) and what
 * is printed and written at the end (summary.ts).
 */
import { writeFile } from "node:fs/promises";
import { fingerprint, planSchedule } from "../harness/chaos-schedule.js";
import { REFUSED_KINDS } from "../harness/chaos-invariants/record.js";
import { allPassed } from "../harness/chaos-invariants/verdict.js";
import { waitFor } from "../harness/coordinators.js";
import { inject } from "./chaos/faults.js";
import { parseChaosFlags } from "./chaos/flags.js";
import { judgeRun } from "./chaos/judge.js";
import { out, say, sleep, startClock } from "./chaos/output.js";
import { ChaosRig } from "./chaos/rig.js";
import { printFailures, printSummary, writeResults } from "./chaos/summary.js";

const flags = parseChaosFlags();
const { seed, durationS, clientCount, partitions, reproduce } = flags;
const schedule = planSchedule(seed, durationS * 1000, { partitions });
const rig = new ChaosRig(`chaos${process.pid}`, partitions);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    out(`\nchaos: ${signal}, stopping everything (seed ${seed})`);
    void rig.cleanup().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  out(
    `chaos: seed ${seed}, ${durationS} s of faults, ${clientCount} clients${partitions > 1 ? `, ${partitions} partitions` : ""}, ${schedule.length} faults planned (schedule ${fingerprint(schedule)})`,
  );
  out(`chaos: reproduce with: ${reproduce}`);
  const { cluster, observer, sim, clientsNc } = await rig.start();
  const initial = Array.from({ length: clientCount }, () => rig.nextNew++);
  await rig.registerClients(initial);
  await waitFor(
    `NodePresent for all ${clientCount} clients`,
    () => {
      const present = new Set(observer.presence.filter((r) => r.type === "NodePresent").map((r) => r.clientSubject));
      return initial.every((n) => present.has(rig.subjectOf(n)));
    },
    30_000,
  );
  const t0 = startClock();
  out(`chaos: cluster ${cluster.urls.join(" ")}; ${clientCount} clients registered and reported; faults start now`);
  const stopStallWatch = rig.watchStalls();
  sim.trap(rig.trappable);
  await clientsNc.flush();
  // Every kind of malformed registration, in every run; the schedule adds random ones.
  await rig.sendMalformed(REFUSED_KINDS);
  say(`published one malformed registration of each of ${REFUSED_KINDS.length} kinds`);

  for (const f of schedule) {
    const wait = t0 + f.at - performance.now();
    if (wait > 0) await sleep(wait);
    await inject(rig, f);
  }
  const end = t0 + durationS * 1000;
  if (end > performance.now()) await sleep(end - performance.now());
  say("faults over: restoring everything and settling");
  const unsettled = await rig.settle(flags.quick ? 25_000 : 40_000);
  const endAt = performance.now();
  stopStallWatch();
  say("observation ends");

  const judgement = judgeRun(rig, observer, endAt);
  const run = { flags, schedule, t0, rig, observer, ...judgement, passed: allPassed(judgement.checks), unsettled };
  printSummary(run);
  if (flags.json) await writeResults(run, flags.json);
  if (flags.record)
    await writeFile(flags.record, `${JSON.stringify(judgement.record, (_k, v: unknown) => (v instanceof Set ? [...v] : v))}\n`);
  if (!run.passed) {
    printFailures(run);
    return 1;
  }
  out(`\nchaos: every invariant held (seed ${seed})`);
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  out(`chaos: the run failed: ${(err as Error).stack ?? String(err)}`);
  for (const c of [...rig.coordinators.values(), ...rig.retired]) out(`--- last log lines of ${c.id} ---\n${c.lines.slice(-8).join("\n")}`);
  out(`reproduce with: ${reproduce}`);
  code = 1;
} finally {
  await rig.cleanup();
}
process.exit(code);
