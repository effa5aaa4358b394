/**
 * The faults of a chaos run: each planned fault (harness/chaos-schedule.ts) as done to the
 * cluster (SIGKILL, SIGTERM or SIGSTOP of a coordinator, a NATS server stopped, and in a
 * partitioned run a coordinator started or stopped for good) or to the
 * clients (silenced, revived, registered, unregistered, malformed registrations), with its
 * undoing scheduled, and recorded in the rig's ground truth.
 */
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_PING_INTERVAL_MS } from "../../src/config/config.js";
import { createRandom, type RandomSource } from "../../src/machines/random.js";
import { waitFor } from "../../harness/coordinators.js";
import { DEFAULT_CHAOS_TIMINGS, REFUSED_KINDS } from "../../harness/chaos-invariants/record.js";
import { COORDINATORS_BETWEEN_FAULTS, isClusterFault, type PlannedFault } from "../../harness/chaos-schedule.js";
import { say, sleep } from "./output.js";
import type { ChaosRig } from "./rig.js";

/** k distinct items of `xs` (in a stable order), chosen by `random`. */
function choose<T>(random: RandomSource, xs: T[], k: number): T[] {
  const pool = [...xs];
  const picked: T[] = [];
  while (picked.length < k && pool.length > 0) picked.push(pool.splice(random.int(0, pool.length - 1), 1)[0]!);
  return picked;
}

const sorted = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);
const names = (ns: number[]) => ns.map((n) => `${n}`).join(",");

/** A client revived within this of its silencing recovers (it cannot have been reported dead). */
const RECOVER_WITHIN_MS = 3000;
/** Only clients silenced this long ago are restarted: their NodeDead is due and judged first. */
const RESTART_AFTER_MS = DEFAULT_DEAD_TIMEOUT_MS + DEFAULT_PING_INTERVAL_MS + DEFAULT_CHAOS_TIMINGS.deathAllowanceMs + 1000;

/**
 * Injects one planned fault. A cluster fault waits (up to 5 s) for the previous one to be
 * undone, and one that needs a leader is skipped without one; the fault's `pick` seeds
 * every choice, so the same schedule picks the same victims from the same state. In a
 * partitioned run "the leader" is the leader of a partition the pick chooses.
 */
export async function inject(rig: ChaosRig, f: PlannedFault): Promise<void> {
  const random = createRandom(f.pick);
  const at = performance.now();
  const record = (detail: string, skipped?: string) => {
    rig.faults.push({ at, kind: f.kind, detail, ...(skipped ? { skipped } : {}) });
    say(skipped ? `(skipped ${f.kind}: ${skipped})` : detail, at);
  };
  if (isClusterFault(f.kind)) {
    if (!rig.clusterWhole()) {
      try {
        await waitFor("the cluster whole again", rig.clusterWhole, 5000);
      } catch {
        return record("", "the previous cluster fault is not undone yet");
      }
    }
    const needsLeader = f.kind === "term-leader" || f.kind === "stop-leader";
    const partitioned = rig.partitions > 1;
    // Drawn only when partitioned, so that an unpartitioned run's picks are as they were.
    const partition = partitioned ? random.int(0, rig.partitions - 1) : 0;
    const leader = await rig.leaderWithin(5000, partition);
    if (needsLeader && !leader) return record("", `no leader${partitioned ? ` of partition ${partition}` : ""} heartbeating`);
    const seconds = (f.durationMs / 1000).toFixed(1);
    const ofPartition = partitioned ? ` of partition ${partition}` : "";
    switch (f.kind) {
      case "kill-coordinator": {
        const followers = [...rig.coordinators.keys()].filter((id) => id !== leader?.coordinatorId).sort();
        const hitLeader = leader !== undefined && random.int(1, 10) <= 6;
        const id = hitLeader ? leader.coordinatorId : choose(random, followers, 1)[0]!;
        const proc = rig.coordinators.get(id)!;
        rig.expectedExit.add(proc);
        // Partitioned, every coordinator leads partitions: killing any takes leaders away.
        if (hitLeader || partitioned) rig.leadershipFaults.push({ at: performance.now(), kind: "SIGKILL" });
        rig.coordinatorWent(id, "down");
        proc.signal("SIGKILL");
        record(`SIGKILL ${hitLeader ? `leader ${id}${ofPartition} (epoch ${leader.epoch})` : `follower ${id}`}; restart in ${seconds} s`);
        rig.later(f.durationMs, async () => {
          await proc.exited;
          rig.startCoordinator(id);
          say(`restarted ${id}`);
        });
        return;
      }
      case "term-leader": {
        const id = leader!.coordinatorId;
        const proc = rig.coordinators.get(id)!;
        rig.expectedExit.add(proc);
        rig.leadershipFaults.push({ at: performance.now(), kind: "SIGTERM" });
        rig.coordinatorWent(id, "down");
        proc.signal("SIGTERM");
        record(`SIGTERM leader ${id}${ofPartition} (epoch ${leader!.epoch}); restart in ${seconds} s`);
        rig.later(f.durationMs, async () => {
          const exited = await Promise.race([proc.exited.then(() => true), sleep(10_000).then(() => false)]);
          if (!exited) {
            say(`!! ${id} did not exit within 10 s of SIGTERM; killing it`);
            rig.crashes.push({ at: performance.now(), message: `${id} did not exit within 10 s of SIGTERM` });
            await proc.kill();
          } else if (proc.exitCode !== 0) {
            rig.crashes.push({
              at: performance.now(),
              message: `${id} exited with code ${String(proc.exitCode)} after SIGTERM (expected 0); last lines: ${proc.lines.slice(-4).join(" | ")}`,
            });
          }
          rig.startCoordinator(id);
          say(`restarted ${id}`);
        });
        return;
      }
      case "stop-leader": {
        const id = leader!.coordinatorId;
        const proc = rig.coordinators.get(id)!;
        rig.sigstopped.add(id);
        rig.leadershipFaults.push({ at: performance.now(), kind: "SIGSTOP" });
        rig.coordinatorWent(id, "down");
        proc.signal("SIGSTOP");
        record(`SIGSTOP leader ${id}${ofPartition} (epoch ${leader!.epoch}) for ${seconds} s`);
        rig.later(f.durationMs, async () => {
          proc.signal("SIGCONT");
          rig.coordinatorWent(id, "up");
          rig.sigstopped.delete(id);
          say(`SIGCONT ${id}`);
        });
        return;
      }
      case "stop-server": {
        // Never the first server: the clients and the observer are on it.
        const index = random.int(1, rig.cluster!.servers.length - 1);
        const server = rig.cluster!.servers[index]!;
        rig.leadershipFaults.push({ at: performance.now(), kind: "server stop" });
        await server.stop({ keepStore: true });
        rig.serverEvents.push(performance.now());
        record(`stopped NATS server ${server.name} (:${server.port}) for ${seconds} s`);
        rig.later(f.durationMs, async () => {
          await server.launch();
          rig.serverEvents.push(performance.now());
          say(`restarted NATS server ${server.name}`);
        });
        return;
      }
      case "start-coordinator": {
        if (rig.coordinators.size >= COORDINATORS_BETWEEN_FAULTS[1]) return record("", `${rig.coordinators.size} coordinators run already`);
        const proc = rig.addCoordinator();
        rig.leadershipFaults.push({ at: performance.now(), kind: "start" });
        record(`started coordinator ${proc.id} (${rig.coordinators.size} now)`);
        return;
      }
      case "stop-coordinator": {
        // One that runs its elections: one still starting has no SIGTERM handler yet.
        const id = choose(random, [...rig.coordinators.keys()].filter(rig.isUp).sort(), 1)[0];
        if (id === undefined) return record("", "no coordinator up to stop");
        rig.leadershipFaults.push({ at: performance.now(), kind: "SIGTERM" });
        const stopping = rig.retire(id);
        record(`SIGTERM ${id} for good (${rig.coordinators.size} left)`);
        rig.later(0, async () => {
          const code = await stopping;
          if (code === undefined) {
            say(`!! ${id} did not exit within 10 s of SIGTERM; killed it`);
            rig.crashes.push({ at: performance.now(), message: `${id} did not exit within 10 s of SIGTERM` });
          } else if (code !== 0) {
            rig.crashes.push({ at: performance.now(), message: `${id} exited with code ${String(code)} after SIGTERM (expected 0)` });
          }
        });
        return;
      }
    }
  }
  switch (f.kind) {
    case "silence": {
      const ns = choose(random, sorted([...rig.registered].filter((n) => !rig.silenced.has(n))), f.count);
      if (ns.length === 0) return record("no client to silence");
      rig.sim!.silence(ns.map(rig.subjectOf));
      const now = performance.now();
      for (const n of ns) {
        rig.silenced.set(n, f.at);
        rig.act(rig.subjectOf(n), "silence", now);
      }
      return record(`silenced ${ns.length} client(s): ${names(ns)}`);
    }
    case "revive": {
      // Either a quick recovery: clients silenced under RECOVER_WITHIN_MS ago answer again
      // without registering (suspect -> NodeRecovered, never dead); or restarted clients:
      // silenced long enough to have been reported dead (so that death is judged), they
      // answer and register again. Which clients qualify is decided on planned times.
      const now = performance.now();
      const recent = sorted([...rig.silenced].filter(([n, s]) => rig.registered.has(n) && f.at - s < RECOVER_WITHIN_MS).map(([n]) => n));
      const long = sorted([...rig.silenced].filter(([, s]) => f.at - s > RESTART_AFTER_MS).map(([n]) => n));
      const recover = recent.length > 0 && (long.length === 0 || random.int(0, 1) === 0);
      const ns = choose(random, recover ? recent : long, f.count);
      if (ns.length === 0) return record("no silenced client to revive yet");
      rig.sim!.revive(ns.map(rig.subjectOf));
      for (const n of ns) {
        rig.silenced.delete(n);
        rig.act(rig.subjectOf(n), "revive", now);
      }
      if (recover) return record(`revived ${ns.length} client(s) silenced under ${RECOVER_WITHIN_MS / 1000} s ago: ${names(ns)}`);
      await rig.registerClients(ns);
      return record(`restarted ${ns.length} client(s) (answer, register again): ${names(ns)}`);
    }
    case "register": {
      const returning = sorted([...rig.used].filter((n) => !rig.registered.has(n)));
      const ns: number[] = [];
      for (let i = 0; i < f.count; i++) {
        if (returning.length > 0 && random.int(0, 1) === 0) ns.push(returning.splice(random.int(0, returning.length - 1), 1)[0]!);
        else ns.push(rig.nextNew++);
      }
      const now = performance.now();
      for (const n of ns.filter((n) => rig.silenced.has(n))) {
        rig.silenced.delete(n);
        rig.sim!.revive([rig.subjectOf(n)]);
        rig.act(rig.subjectOf(n), "revive", now);
      }
      await rig.registerClients(ns);
      return record(`registered ${ns.length} client(s): ${names(ns)}`);
    }
    case "unregister": {
      const ns = choose(random, sorted(rig.registered), f.count);
      await rig.unregisterClients(ns);
      return record(`unregistered ${ns.length} client(s): ${names(ns)}`);
    }
    case "malformed": {
      const picked = Array.from({ length: f.count }, () => REFUSED_KINDS[random.int(0, REFUSED_KINDS.length - 1)]!);
      await rig.sendMalformed(picked);
      return record(`published ${picked.length} malformed registration(s): ${picked.join(", ")}`);
    }
  }
}
