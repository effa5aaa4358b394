/**
 * The bare loop beside a capacity level: the same wire work for the same clients, done by
 * bench/bare-pinger.ts directly on the NATS client, for the ratio coordinator / bare.
 */
import { DEFAULT_MONITOR_TIMINGS } from "../../src/config/config.js";
import { control } from "../../harness/client-sim.js";
import { cpuSeconds, Helper } from "../../harness/processes.js";
import type { BareStats } from "../bare-pinger.js";
import { describeLoad, machineLoadSince, sampleMachine } from "../machine-load.js";
import type { CapacityLevel } from "./figures.js";
import type { CapacityRig } from "./level.js";
import { CORES, round2, sampleStats, sleep } from "./readings.js";

const P = DEFAULT_MONITOR_TIMINGS;

/**
 * Runs the bare loop for the level's `n` clients (of which `expected` answer) for the bare
 * time, and sets the level's `bare` and `ratio`; when it cannot run beside everything
 * else, `bareNotMeasured` says why.
 */
export async function measureBare(rig: CapacityRig, level: CapacityLevel, n: number, expected: number): Promise<void> {
  const { nc, serverUrl, prefix, counter } = rig;
  const { log } = rig.options;
  // The same wire work for the same clients, by a bare loop, while the coordinator keeps
  // running: the simulator counts both, so the bare loop's replies are counted by itself.
  const bare = Helper.start(new URL("../bare-pinger.ts", import.meta.url), [
    serverUrl,
    prefix,
    String(n),
    String(P.pingIntervalMs),
    String(P.stateIntervalMs),
  ]);
  try {
    await bare.ready;
    await sleep(1500);
    const bcpu0 = cpuSeconds(bare.pid);
    await control(nc, `${prefix}.bare`, { op: "stats" }); // starts its counts afresh
    const seen0 = counter.bareStates;
    const bareMachine0 = sampleMachine();
    const tb = performance.now();
    await sleep(rig.options.bareSeconds * 1000);
    const bseconds = (performance.now() - tb) / 1000;
    const bcpu = (cpuSeconds(bare.pid) - bcpu0) / bseconds;
    const bareMachine = machineLoadSince(bareMachine0, CORES);
    const seen = counter.bareStates - seen0;
    await sampleStats(nc, prefix, true);
    const bareStats = await control<BareStats>(nc, `${prefix}.bare`, { op: "stats" });
    const barePings = Math.round(bareStats.replies / (bareStats.elapsedMs / 1000));
    level.bare = {
      cpuCores: round2(bcpu),
      cpuMicrosPerClientSecond: round2((bcpu * 1e6) / n),
      pingsPerSecond: barePings,
      statesPerSecond: Math.round(bareStats.statesSent / (bareStats.elapsedMs / 1000)),
      statesSeenPerSecond: Math.round(seen / bseconds),
      pingIntervalMs: { p50: bareStats.intervalP50Ms, p99: bareStats.intervalP99Ms },
      staleClients: bareStats.staleClients,
      machine: bareMachine,
    };
    level.ratio = {
      cpuPerClient: round2(level.leader.cpuMicrosPerClientSecond / level.bare.cpuMicrosPerClientSecond),
      pingRate: round2(level.pingsPerSecond / (barePings * (expected / n))),
    };
    log(
      `    bare loop: ${level.bare.cpuCores} cores (${level.bare.cpuMicrosPerClientSecond} µs/s per client), ${barePings.toLocaleString("en")} replies/s, ` +
        `${level.bare.statesPerSecond.toLocaleString("en")} states/s; coordinator/bare: CPU per client ${level.ratio.cpuPerClient}×, ping rate ${level.ratio.pingRate}×; ` +
        `machine: ${describeLoad(bareMachine)}`,
    );
  } catch (err) {
    // The box may not run the bare loop beside everything else at this size (it may
    // die): the level keeps its own figures, without a ratio.
    level.bare = null;
    level.bareNotMeasured = `the bare loop could not be measured: ${err instanceof Error ? err.message : String(err)}`;
    log(`    ${level.bareNotMeasured}`);
  } finally {
    await bare.stop().catch(() => undefined);
  }
}
