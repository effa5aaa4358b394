/**
 * Scale-out figures for `npm run bench`: the same clients on 1, 2 and 3 coordinators running
 * `--partitions P`, each coordinator's CPU while they hold them (each of n should spend about
 * 1/n of what one leader spends), the failover of each partition of a crashed coordinator,
 * and the time the partitions take to balance when a coordinator joins.
 *
 * Processes, all on loopback: one nats-server; the coordinators through the built CLI; the
 * client simulator (harness/client-sim.ts) in a process of its own; and this process, which
 * hears every heartbeat (who leads which partition) and every report. CPU is read from /proc
 * for each coordinator.
 *
 * The run, on one set of clients registered once:
 * 1. one coordinator leads all P partitions: held for the window, its CPU measured;
 * 2. a second joins: the time until the partitions are balanced (max − min led ≤ 1); held,
 *    each one's CPU measured; then a third the same way;
 * 3. one of the three is killed (SIGKILL): for each partition it led, the time to the first
 *    heartbeat of its new leader, and to a report from a new leader for each of its clients;
 * 4. it starts again: the time until the partitions are balanced over the three again.
 *
 * A window holds as a capacity level does (harness/capacity-judge.ts: every client present,
 * no false NodeSuspect or NodeDead, no change of leader, pings and NodeState at the
 * configured rates), and only with the partitions balanced.
 *
 * Standalone, for a quick look: `node --import tsx bench/scale-out.ts --clients 2000 --window 5`
 * (after `npm run build`).
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { DEFAULT_MONITOR_TIMINGS } from "../src/config/config.js";
import { NatsServer } from "../src/nats/server.js";
import { MEMBER_KEYS, parseHeartbeat, parseMemberValue, resources, subjects } from "../src/protocol/election.js";
import { partitionOf } from "../src/protocol/partition.js";
import { DEFAULT_HOLD_CRITERIA, judgeLevel } from "../harness/capacity-judge.js";
import { control } from "../harness/client-sim.js";
import { spawnCoordinator, type CoordinatorProcess } from "../harness/coordinators.js";
import { Helper } from "../harness/processes.js";
import {
  balanceOf,
  failoverTimes,
  judgeShares,
  ledBy,
  PartitionLeaders,
  SHARE_TOLERANCE,
  type PartitionFailover,
  type PartitionHeartbeat,
  type ShareVerdict,
} from "../harness/scale-out-judge.js";
import { describeLoad, machineLoadSince, sampleMachine, type MachineLoad } from "./machine-load.js";
import { ReportCounter } from "./capacity/observer.js";
import { CORES, cpuOrNaN, round2, sampleStats, sleep } from "./capacity/readings.js";

const T = DEFAULT_MONITOR_TIMINGS;
/** The most the crash failover of a partition should take (the issue's target, as for one leader). */
export const FAILOVER_TARGET_MS = 2500;
/** A partition whose leader sent no heartbeat for this long has none (heartbeats go every second). */
const STALE_MS = 2500;
/** How long a join or a crash may take to balance before the bench gives up on it. */
const BALANCE_WAIT_MS = 30_000;

export interface ScaleOutOptions {
  clients: number;
  partitions: number;
  /** How long each steady window lasts, s. */
  windowSeconds: number;
  /** How long the registrations, and the crashed partitions' clients, may take to be reported. */
  registerWaitMs: number;
  log: (line: string) => void;
}

/** n coordinators holding the clients for a window. */
export interface SteadyWindow {
  coordinators: number;
  holds: boolean;
  /** Why it does not hold (empty when it holds). */
  reasons: string[];
  perCoordinator: { id: string; led: number; cpuCores: number; cpuMicrosPerClientSecond: number }[];
  /** Against the single leader's CPU; null for the single leader itself. */
  shares: ShareVerdict | null;
  falseDead: number;
  falseSuspect: number;
  leaderChanges: number;
  pingsPerSecond: number;
  nodeStatePerSecond: number;
  configured: { pingsPerSecond: number; nodeStatePerSecond: number };
  pingIntervalMs: { p50: number; p99: number };
  simulatorCpuCores: number;
  machine: MachineLoad;
  seconds: number;
}

/**
 * A coordinator joins: its start → its first member key (the others see it), → its first
 * led partition, and → the partitions balanced; and its first member key → balanced, the
 * rebalance itself without the process's start.
 */
export interface JoinFigure {
  joiner: string;
  /** Coordinators once it has joined. */
  coordinators: number;
  memberMs: number | null;
  firstLedMs: number | null;
  balancedMs: number | null;
  memberToBalancedMs: number | null;
  /** Partitions led per coordinator once balanced (or when the bench gave up). */
  led: Record<string, number>;
  gaveUp: string | null;
}

export interface CrashFigure {
  victim: string;
  /** One per partition the victim led, with its clients and when a new leader had reported each. */
  partitions: (PartitionFailover & { clients: number; everyClientMs: number | null })[];
  /** The slowest partition's failover, ms; null when one had no new leader. */
  maxMs: number | null;
  targetMs: number;
  /** The crash → the partitions balanced over the survivors. */
  balancedMs: number | null;
}

export interface ScaleOutResult {
  clients: number;
  partitions: number;
  /** Registration → every client reported present (on one coordinator); null when some were not within the wait. */
  allPresentMs: number | null;
  present: number;
  windows: SteadyWindow[];
  joins: JoinFigure[];
  crash: CrashFigure | null;
  /** Where the run stopped early, and why; null when it ran to the end. */
  stopped: string | null;
  targets: { shareTolerance: number; failoverMs: number };
}

/** Polls `check` every 50 ms until it gives a value, or gives undefined after `timeoutMs`. */
async function poll<T>(check: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined || performance.now() > deadline) return value;
    await sleep(50);
  }
}

export async function measureScaleOut(options: ScaleOutOptions): Promise<ScaleOutResult> {
  const { clients: N, partitions: P, log } = options;
  const server = await NatsServer.start({ name: "bench-scale-out" });
  const cluster = "benchscale";
  const prefix = "so";
  const nc = await connect({ servers: server.url, name: "bench scale-out observer" });
  const counter = new ReportCounter(nc, cluster, prefix);
  const leaders = new PartitionLeaders(P, STALE_MS);
  const heard: PartitionHeartbeat[] = [];
  nc.subscribe(subjects.heartbeat(cluster), {
    callback: (_e, m) => {
      const h = parseHeartbeat(m.data);
      const hb = {
        atMs: performance.now(),
        coordinatorId: h.coordinatorId,
        epoch: h.epoch,
        partition: h.partition ?? 0,
        resigning: h.resigning === true,
      };
      heard.push(hb);
      leaders.hear(hb);
    },
  });
  await nc.flush();
  /** When each coordinator's member key was written, by id (bench clock). */
  const memberWrites = new Map<string, number[]>();
  let stopWatch = () => {};
  const sim = Helper.start(new URL("../harness/client-sim.ts", import.meta.url), [server.url, cluster, prefix]);
  const procs = new Map<string, CoordinatorProcess>();
  const start = (id: string) => {
    const proc = spawnCoordinator({
      urls: [server.url],
      clusterId: cluster,
      id,
      // At P > 1 the cluster's limit is --max-clients per live coordinator: one alone holds them all.
      args: ["--partitions", String(P), "--max-clients", String(N)],
    });
    procs.set(id, proc);
    return proc;
  };
  const live = () => [...procs.values()].filter((p) => p.running).map((p) => p.id);
  const balance = () => balanceOf(leaders.leaders(performance.now()), live());
  const criteria = DEFAULT_HOLD_CRITERIA(T.pingIntervalMs, T.stateIntervalMs);
  const windows: SteadyWindow[] = [];
  const joins: JoinFigure[] = [];
  let crash: CrashFigure | null = null;
  let allPresentMs: number | null = null;
  let stopped: string | null = null;

  /** Settles, then holds the clients on the live coordinators for the window and measures each. */
  const hold = async (): Promise<SteadyWindow> => {
    const ids = live();
    const n = ids.length;
    // Every client back at its ping rhythm after the last handover, then a clean start.
    await sleep(2 * T.pingIntervalMs + T.stateIntervalMs + 1000);
    const dead0 = counter.count("NodeDead");
    const suspect0 = counter.count("NodeSuspect");
    const state0 = counter.count("NodeState");
    const elections0 = counter.becameLeader;
    await sampleStats(nc, prefix, true);
    const pids = ids.map((id) => procs.get(id)!.child.pid!);
    const cpu0 = pids.map(cpuOrNaN);
    const machine0 = sampleMachine();
    const t1 = performance.now();
    log(`    holding ${N.toLocaleString("en")} clients on ${n} coordinator${n > 1 ? "s" : ""} for ${options.windowSeconds} s`);
    await sleep(options.windowSeconds * 1000);
    const seconds = (performance.now() - t1) / 1000;
    const cores = pids.map((pid, i) => (cpuOrNaN(pid) - cpu0[i]!) / seconds);
    const machine = machineLoadSince(machine0, CORES);
    const nodeStates = counter.count("NodeState") - state0;
    const stats = await sampleStats(nc, prefix, true);
    const falseDead = counter.count("NodeDead") - dead0;
    const falseSuspect = counter.count("NodeSuspect") - suspect0;
    const leaderChanges = counter.becameLeader - elections0;
    const pingsPerSecond = Math.round(stats.answered / (stats.elapsedMs / 1000));
    const nodeStatePerSecond = Math.round(nodeStates / seconds);
    const verdict = judgeLevel(
      {
        answering: N,
        registered: N,
        present: counter.present.size,
        falseDead,
        falseSuspect,
        leaderChanges,
        pingsPerSecond,
        nodeStatePerSecond,
        pingIntervalP99Ms: stats.intervalP99Ms ?? Number.NaN,
      },
      criteria,
    );
    const b = balance();
    const reasons = [...verdict.reasons];
    if (!b.balanced) reasons.push(`the partitions were not balanced at the end (${describeLed(b.led)}, ${b.free} without a leader)`);
    const single = windows.find((w) => w.coordinators === 1);
    const window: SteadyWindow = {
      coordinators: n,
      holds: reasons.length === 0,
      reasons,
      perCoordinator: ids.map((id, i) => ({
        id,
        led: b.led[id] ?? 0,
        cpuCores: round2(cores[i]!),
        cpuMicrosPerClientSecond: round2((cores[i]! * 1e6) / N),
      })),
      shares: single === undefined || n === 1 ? null : judgeShares(single.perCoordinator[0]!.cpuCores, cores),
      falseDead,
      falseSuspect,
      leaderChanges,
      pingsPerSecond,
      nodeStatePerSecond,
      configured: {
        pingsPerSecond: Math.round((N * 1000) / T.pingIntervalMs),
        nodeStatePerSecond: Math.round((N * 1000) / T.stateIntervalMs),
      },
      pingIntervalMs: { p50: stats.intervalP50Ms, p99: stats.intervalP99Ms },
      simulatorCpuCores: round2(stats.cpuMs / stats.elapsedMs),
      machine,
      seconds: Math.round(seconds),
    };
    log(
      `    ${window.holds ? "holds" : `DOES NOT HOLD: ${reasons.join("; ")}`}; ` +
        window.perCoordinator.map((c) => `${c.id} leads ${c.led}, ${c.cpuCores} cores`).join(", ") +
        `; false dead ${falseDead}, false suspect ${falseSuspect}; ${pingsPerSecond.toLocaleString("en")} pings/s, ` +
        `${nodeStatePerSecond.toLocaleString("en")} NodeState/s; simulator ${window.simulatorCpuCores} cores; machine: ${describeLoad(machine)}`,
    );
    return window;
  };

  /** Starts coordinator `id` and waits for the partitions to balance over the live ones. */
  const join = async (id: string): Promise<JoinFigure> => {
    const t0 = performance.now();
    start(id);
    const n = live().length;
    const first = await poll(() => heard.find((hb) => hb.atMs >= t0 && hb.coordinatorId === id && !hb.resigning), BALANCE_WAIT_MS);
    const balanced = await poll(() => (balance().balanced ? performance.now() : undefined), BALANCE_WAIT_MS);
    const member = memberWrites.get(id)?.find((at) => at >= t0);
    const figure: JoinFigure = {
      joiner: id,
      coordinators: n,
      memberMs: member === undefined ? null : Math.round(member - t0),
      firstLedMs: first === undefined ? null : Math.round(first.atMs - t0),
      balancedMs: balanced === undefined ? null : Math.round(balanced - t0),
      memberToBalancedMs: member === undefined || balanced === undefined ? null : Math.round(balanced - member),
      led: balance().led,
      gaveUp: balanced === undefined ? `not balanced within ${BALANCE_WAIT_MS / 1000} s` : null,
    };
    log(
      `  join: ${id} started (${n} coordinators): its member key after ${String(figure.memberMs)} ms, its first partition after ${String(figure.firstLedMs)} ms, ` +
        `${figure.balancedMs === null ? figure.gaveUp : `balanced after ${figure.balancedMs} ms`} (${describeLed(figure.led)})`,
    );
    return figure;
  };

  try {
    await sim.ready;
    log(`  scale-out: one coordinator, ${P} partitions`);
    start("so-1");
    if ((await poll(() => (balance().balanced ? true : undefined), BALANCE_WAIT_MS)) === undefined)
      throw new Error(`so-1 did not lead all ${P} partitions within ${BALANCE_WAIT_MS / 1000} s`);
    // The leadership bucket exists now: watch the member keys, to see when a joiner is first seen.
    const kv = await new Kvm(jetstream(nc)).open(resources.leadershipBucket(cluster));
    const members = await kv.watch({ key: MEMBER_KEYS });
    stopWatch = () => members.stop();
    void (async () => {
      for await (const entry of members) {
        if (entry.operation !== "PUT") continue;
        const id = parseMemberValue(entry.value).coordinatorId;
        const writes = memberWrites.get(id) ?? [];
        writes.push(performance.now());
        memberWrites.set(id, writes);
      }
    })().catch(() => {}); // the watch ends with the connection
    log(`  scale-out: registering ${N.toLocaleString("en")} clients`);
    const t0 = performance.now();
    await control(nc, prefix, { op: "register", from: 0, to: N }, 300_000);
    const allPresent = await poll(() => (counter.present.size >= N ? performance.now() : undefined), options.registerWaitMs);
    allPresentMs = allPresent === undefined ? null : Math.round(allPresent - t0);
    log(
      allPresent === undefined
        ? `    only ${counter.present.size.toLocaleString("en")} clients present after ${options.registerWaitMs / 1000} s`
        : `    all present after ${String(allPresentMs)} ms`,
    );
    windows.push(await hold());

    for (const id of ["so-2", "so-3"]) {
      const figure = await join(id);
      joins.push(figure);
      if (figure.gaveUp !== null) {
        stopped = `${id} joined, and the partitions did not balance`;
        break;
      }
      windows.push(await hold());
    }

    if (stopped === null) {
      // The crash: the coordinator that leads the most partitions, at a random point of its heartbeat cycle.
      await sleep(1000 + Math.random() * 1000);
      const before = leaders.leaders(performance.now());
      const victim = live().sort((a, b) => ledBy(before, b).length - ledBy(before, a).length)[0]!;
      const lost = ledBy(before, victim);
      const clientsOf = new Map<number, string[]>(lost.map((p) => [p, []]));
      for (let k = 0; k < N; k++) clientsOf.get(partitionOf(`${prefix}.${k}`, P))?.push(`${prefix}.${k}`);
      counter.watchEpoch = Math.max(leaders.highestEpoch(), counter.highestEpoch);
      log(`  crash: SIGKILL of ${victim}, which leads partitions ${lost.join(", ")}`);
      const crashedAt = performance.now();
      procs.get(victim)!.signal("SIGKILL");
      await procs.get(victim)!.exited;
      await poll(() => (failoverTimes(crashedAt, victim, lost, heard).every((f) => f.ms !== null) ? true : undefined), BALANCE_WAIT_MS);
      const failovers = failoverTimes(crashedAt, victim, lost, heard);
      const everyVictimClient = () => [...clientsOf.values()].every((subs) => subs.every((s) => counter.reportedAfter.has(s)));
      await poll(() => (everyVictimClient() ? true : undefined), options.registerWaitMs);
      const balanced = await poll(() => (balance().balanced ? performance.now() : undefined), BALANCE_WAIT_MS);
      const partitions = failovers.map((f) => {
        const subs = clientsOf.get(f.partition)!;
        const times = subs.map((s) => counter.reportedAfter.get(s));
        const everyClientMs = times.every((t) => t !== undefined) ? Math.round(Math.max(crashedAt, ...times) - crashedAt) : null;
        return { ...f, clients: subs.length, everyClientMs };
      });
      const ms = partitions.map((f) => f.ms);
      crash = {
        victim,
        partitions,
        maxMs: ms.some((m) => m === null) ? null : Math.max(...(ms as number[])),
        targetMs: FAILOVER_TARGET_MS,
        balancedMs: balanced === undefined ? null : Math.round(balanced - crashedAt),
      };
      for (const f of partitions) {
        log(
          `    partition ${f.partition} (${f.clients.toLocaleString("en")} clients): ` +
            (f.ms === null ? "no new leader" : `${String(f.newLeader)}'s first heartbeat after ${f.ms} ms`) +
            `, ${f.everyClientMs === null ? "not every client reported" : `every client reported after ${f.everyClientMs} ms`}`,
        );
      }
      log(`    balanced over the survivors after ${String(crash.balancedMs)} ms (${describeLed(balance().led)})`);
      joins.push(await join(victim)); // it comes back
    }
  } catch (err) {
    stopped = err instanceof Error ? err.message : String(err);
    log(`  scale-out stopped: ${stopped}`);
  } finally {
    stopWatch();
    await Promise.allSettled([...[...procs.values()].map((p) => p.kill()), sim.stop()]);
    await nc.close();
    await server.stop();
  }
  return {
    clients: N,
    partitions: P,
    allPresentMs,
    present: counter.present.size,
    windows,
    joins,
    crash,
    stopped,
    targets: { shareTolerance: SHARE_TOLERANCE, failoverMs: FAILOVER_TARGET_MS },
  };
}

/** "so-1 4, so-2 4, so-3 4". */
function describeLed(led: Record<string, number>): string {
  return Object.entries(led)
    .map(([id, k]) => `${id} ${k}`)
    .join(", ");
}

/** The summary lines `npm run bench` prints for the scale-out run. */
export function describeScaleOut(r: ScaleOutResult): string[] {
  const lines: string[] = [];
  const pad = (v: unknown, n: number) => String(v).padStart(n);
  lines.push(`scale-out: ${r.clients.toLocaleString("en")} clients, ${r.partitions} partitions`);
  lines.push(
    `${"coordinators".padStart(12)} ${"holds".padStart(6)} ${"false dead/susp".padStart(15)} ${"led".padStart(10)} ${"cores each".padStart(18)} ${"share of one leader".padStart(20)} ${"target".padStart(8)} ${"total".padStart(6)}`,
  );
  for (const w of r.windows) {
    const shares = w.shares === null ? "1" : w.shares.shares.map((s) => s.toFixed(2)).join(" ");
    const target = w.shares === null ? "-" : `<= ${(w.shares.target * (1 + r.targets.shareTolerance)).toFixed(2)}`;
    lines.push(
      `${pad(w.coordinators, 12)} ${pad(w.holds ? "yes" : "NO", 6)} ${pad(`${w.falseDead}/${w.falseSuspect}`, 15)} ${pad(w.perCoordinator.map((c) => c.led).join(" "), 10)} ${pad(w.perCoordinator.map((c) => c.cpuCores).join(" "), 18)} ${pad(shares, 20)} ${pad(target, 8)} ${pad(w.shares === null ? "1" : w.shares.total.toFixed(2), 6)}`,
    );
  }
  for (const w of r.windows.filter((w) => !w.holds)) lines.push(`${w.coordinators} coordinators do not hold: ${w.reasons.join("; ")}`);
  for (const w of r.windows) {
    if (w.shares !== null && !w.shares.ok)
      lines.push(`${w.coordinators} coordinators: not about 1/${w.coordinators} each: ${w.shares.reasons.join("; ")}`);
  }
  for (const j of r.joins) {
    lines.push(
      `rebalance when ${j.joiner} joins (${j.coordinators} coordinators): ` +
        (j.balancedMs === null
          ? `${String(j.gaveUp)}`
          : `balanced (max - min led <= 1) ${String(j.memberToBalancedMs)} ms after its first member key, ${j.balancedMs} ms after its start`) +
        `; member key ${String(j.memberMs)} ms, first partition ${String(j.firstLedMs)} ms after its start (${describeLed(j.led)})`,
    );
  }
  if (r.crash !== null) {
    const c = r.crash;
    const per = c.partitions.map((f) => `p${f.partition} ${f.ms === null ? "none" : `${f.ms} ms`}`).join(", ");
    lines.push(`crash failover per partition (SIGKILL of ${c.victim}): ${per}; max ${String(c.maxMs)} ms (target <= ${c.targetMs} ms)`);
    const every = c.partitions.map((f) => f.everyClientMs);
    lines.push(
      `  every client of its partitions reported by a new leader after ${every.some((m) => m === null) ? "(not all were)" : `${Math.max(...(every as number[]))} ms`}; ` +
        `partitions balanced over the survivors after ${String(c.balancedMs)} ms`,
    );
  }
  if (r.allPresentMs === null)
    lines.push(`only ${r.present.toLocaleString("en")} of ${r.clients.toLocaleString("en")} clients were reported present`);
  if (r.stopped !== null) lines.push(`scale-out stopped early: ${r.stopped}`);
  return lines;
}

/** The scale-out run against the issue's targets, one line each, for the end of `npm run bench`. */
export function scaleOutVerdicts(r: ScaleOutResult): string[] {
  const lines: string[] = [];
  const met = (ok: boolean) => (ok ? "met" : "NOT MET");
  for (const w of r.windows) {
    if (w.shares === null) continue;
    const bound = (w.shares.target * (1 + r.targets.shareTolerance)).toFixed(2);
    lines.push(
      `scale-out, ${w.coordinators} coordinators: each spends ${w.shares.shares.map((s) => s.toFixed(2)).join(", ")} of one leader's CPU ` +
        `(target about 1/${w.coordinators}, <= ${bound}: ${met(w.shares.ok)})${w.holds ? "" : ", in a window that does not hold"}`,
    );
  }
  if (r.crash !== null) {
    const ok = r.crash.maxMs !== null && r.crash.maxMs <= r.crash.targetMs;
    lines.push(`scale-out, crash failover per partition: max ${String(r.crash.maxMs)} ms (target <= ${r.crash.targetMs} ms: ${met(ok)})`);
  }
  const held = r.windows.filter((w) => w.holds).length;
  const dead = r.windows.reduce((k, w) => k + w.falseDead, 0);
  const suspect = r.windows.reduce((k, w) => k + w.falseSuspect, 0);
  lines.push(
    `scale-out: ${held} of ${r.windows.length} steady windows held; false NodeDead ${dead}, false NodeSuspect ${suspect} in them (target 0)`,
  );
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clients: { type: "string", default: "2000" },
      partitions: { type: "string", default: "12" },
      window: { type: "string", default: "5" },
    },
  });
  const clients = Number(values.clients);
  const partitions = Number(values.partitions);
  const windowSeconds = Number(values.window);
  if (!Number.isInteger(clients) || clients < 1 || !Number.isInteger(partitions) || partitions < 2 || !(windowSeconds >= 1)) {
    process.stderr.write("usage: scale-out.ts [--clients N] [--partitions P (at least 2)] [--window S]\n");
    process.exit(2);
  }
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const result = await measureScaleOut({ clients, partitions, windowSeconds, registerWaitMs: 30_000, log });
  log("");
  for (const line of describeScaleOut(result)) log(line);
  for (const line of scaleOutVerdicts(result)) log(line);
}

if (fileURLToPath(import.meta.url) === process.argv[1]) await main();
