/**
 * The chaos run's rig: the NATS cluster, the coordinator processes (restarted like
 * supervised ones when they exit on their own), the simulated clients and the observer,
 * with the ground truth of what the harness did to each client and every fault it
 * injected, for the checks to judge.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { presenceSubjects } from "../../src/protocol/presence.js";
import { NatsCluster } from "../../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import type {
  ClientAction,
  ClientActionKind,
  LeadershipFault,
  RefusedInput,
  RefusedKind,
  SeenHeartbeat,
  Window,
} from "../../harness/chaos-invariants/record.js";
import { BALANCE_BOUND_MS, type CoordinatorEvent } from "../../harness/chaos-invariants/partitions.js";
import type { FaultKind } from "../../harness/chaos-schedule.js";
import { SimulatedClients } from "../../harness/client-sim.js";
import { malformedRegistrations, trappable, type Malformed } from "./malformed.js";
import { ChaosObserver } from "./observer.js";
import { say, sleep } from "./output.js";

/** A fault as the run injected it, or skipped it (and why). */
export interface FaultRecord {
  at: number;
  kind: FaultKind;
  skipped?: string;
  detail: string;
}

/** How often the harness checks its own event loop, and how late a tick counts as a stall. */
const STALL_TICK_MS = 50;
export const STALL_MS = 250;

export class ChaosRig {
  readonly prefix: string;
  cluster: NatsCluster | undefined;
  observer: ChaosObserver | undefined;
  clientsNc: NatsConnection | undefined;
  sim: SimulatedClients | undefined;
  readonly coordinators = new Map<string, CoordinatorProcess>();
  readonly seedsOf = new Map<string, string[]>();
  /** Processes the harness stopped on purpose (their exit is not a crash). */
  readonly expectedExit = new Set<CoordinatorProcess>();
  readonly crashes: { at: number; message: string }[] = [];
  readonly sigstopped = new Set<string>();
  lifetimes = 0;
  /** Coordinators stopped for good (stop-coordinator): no longer in `coordinators`, still cleaned up. */
  readonly retired: CoordinatorProcess[] = [];
  /** The number of the next coordinator started: c1, c2, c3 first, then c4, ... */
  private nextCoordinator = 1;
  /** Who was live when (every start, stop and continuation), and when NATS servers stopped or started: the balance's changes. */
  readonly coordinatorEvents: CoordinatorEvent[] = [];
  readonly serverEvents: number[] = [];
  /** Coordinators started and not yet heard from: each counts as up (live) from its first election report. */
  private readonly starting = new Set<string>();

  // Ground truth of the clients: what the harness did (actions) and what it means to do
  // next (the intended state, which decides the picks and so depends only on the schedule).
  readonly actions: ClientAction[] = [];
  readonly registered = new Set<number>();
  /** Silenced clients, with the planned time (ms into the schedule) of the silencing: picks compare planned times, so they depend on the seed only. */
  readonly silenced = new Map<number, number>();
  readonly used = new Set<number>();
  nextNew = 0;
  malformedSent = 0;
  readonly refused: RefusedInput[] = [];
  /** When the harness's event loop stood still (its clients answered nothing): a tick late by more than STALL_MS. */
  readonly harnessStalls: Window[] = [];
  unackedRegistrations = 0;
  readonly faults: FaultRecord[] = [];
  readonly leadershipFaults: LeadershipFault[] = [];
  readonly restores = new Set<Promise<void>>();
  /** One malformed registration of each kind, and the subjects among them a ping could reach. */
  readonly malformed: Record<RefusedKind, Malformed>;
  readonly trappable: string[];
  private cleaning: Promise<void> | undefined;

  constructor(
    readonly clusterId: string,
    readonly partitions = 1,
  ) {
    this.prefix = `chaos.${clusterId}`;
    this.malformed = malformedRegistrations(this.prefix);
    this.trappable = trappable(this.malformed);
  }

  readonly subjectOf = (n: number): string => SimulatedClients.subject(this.prefix, n);

  act(subject: string, kind: ClientActionKind, at = performance.now()): void {
    this.actions.push({ at, subject, kind });
  }

  /** Every coordinator running and not stopped, every server up, nothing left to restore. */
  readonly clusterWhole = (): boolean =>
    [...this.coordinators.values()].every((c) => c.running) &&
    this.sigstopped.size === 0 &&
    this.cluster!.servers.every((s) => s.running) &&
    this.restores.size === 0;

  /**
   * Starts the 3-server NATS cluster, the observer and the simulated clients (both on the
   * first server, which is never stopped) and the 3 coordinators, each listing the seeds
   * from another server; resolves once a leader monitors (a replicated stream stores plain
   * publishes only once it has a leader).
   */
  async start(): Promise<{ cluster: NatsCluster; observer: ChaosObserver; sim: SimulatedClients; clientsNc: NatsConnection }> {
    const cluster = await NatsCluster.start(3, `chaos-${process.pid}`);
    this.cluster = cluster;
    const urls = cluster.urls;
    const observer = await ChaosObserver.start(urls, this.clusterId);
    this.observer = observer;
    const clientsNc = await connect({ servers: [urls[0]!], maxReconnectAttempts: -1, reconnectTimeWait: 100, name: "chaos clients" });
    this.clientsNc = clientsNc;
    const sim = new SimulatedClients(clientsNc, this.clusterId, this.prefix);
    this.sim = sim;
    await clientsNc.flush();
    observer.onElection = (e) => {
      if (this.starting.delete(e.coordinatorId)) this.coordinatorWent(e.coordinatorId, "up", e.at);
    };
    for (let i = 0; i < 3; i++) this.addCoordinator();
    observer.onNewEpoch = (hb) =>
      say(`==> ${hb.partition !== undefined ? `partition ${hb.partition} ` : ""}leader ${hb.coordinatorId} (epoch ${hb.epoch})`, hb.at);
    await waitFor(
      "a leader monitoring",
      () => [...this.coordinators.values()].some((c) => c.logs().some((l) => l.message === "loaded stored registrations")),
      30_000,
    );
    return { cluster, observer, sim, clientsNc };
  }

  /** Records the harness's own stalls until the returned function is called. */
  watchStalls(): () => void {
    let lastTick = performance.now();
    const stallWatch = setInterval(() => {
      const now = performance.now();
      if (now - lastTick > STALL_MS) this.harnessStalls.push({ from: lastTick, to: now });
      lastTick = now;
    }, STALL_TICK_MS);
    return () => clearInterval(stallWatch);
  }

  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      const all = [...this.coordinators.values(), ...this.retired];
      for (const c of all) this.expectedExit.add(c);
      await Promise.allSettled(all.map((c) => c.kill()));
      this.sim?.stop();
      await this.clientsNc?.close().catch(() => {});
      await this.observer?.nc.close().catch(() => {});
      await this.cluster?.stop().catch(() => {});
    })();
    return this.cleaning;
  }

  /** Starts a new coordinator, c{n}, listing the seeds from server n - 1 (mod the servers) on. */
  addCoordinator(): CoordinatorProcess {
    const n = this.nextCoordinator++;
    const id = `c${n}`;
    const urls = this.cluster!.urls;
    const i = (n - 1) % urls.length;
    this.seedsOf.set(id, [...urls.slice(i), ...urls.slice(0, i)]);
    return this.startCoordinator(id);
  }

  /** Whether coordinator `id` runs its elections: running, not stopped, and heard from since it started. */
  readonly isUp = (id: string): boolean =>
    this.coordinators.get(id)?.running === true && !this.starting.has(id) && !this.sigstopped.has(id);

  /** Records that a coordinator went down (the harness stopped it, or it exited) or came up. */
  coordinatorWent(coordinatorId: string, kind: "up" | "down", at = performance.now()): void {
    if (kind === "down") this.starting.delete(coordinatorId);
    this.coordinatorEvents.push({ at, coordinatorId, kind });
  }

  /** Stops a coordinator for good with SIGTERM: it leaves `coordinators`; resolves with its exit code, or undefined when it took over 10 s (it is killed then). */
  async retire(id: string): Promise<number | null | undefined> {
    const proc = this.coordinators.get(id)!;
    this.expectedExit.add(proc);
    this.coordinators.delete(id);
    this.retired.push(proc);
    this.coordinatorWent(id, "down");
    proc.signal("SIGTERM");
    const exited = await Promise.race([proc.exited.then(() => true), sleep(10_000).then(() => false)]);
    if (!exited) {
      await proc.kill();
      return undefined;
    }
    return proc.exitCode;
  }

  startCoordinator(id: string): CoordinatorProcess {
    const args = ["--kv-replicas", "3", ...(this.partitions > 1 ? ["--partitions", String(this.partitions)] : [])];
    const proc = spawnCoordinator({ urls: [this.seedsOf.get(id)!.join(",")], clusterId: this.clusterId, id, args });
    this.coordinators.set(id, proc);
    this.lifetimes += 1;
    // Live once its elections run (it has joined the membership), not when the process is spawned.
    this.starting.add(id);
    void proc.exited.then((code) => {
      if (this.expectedExit.has(proc) || this.cleaning) return;
      this.coordinatorWent(id, "down");
      const message = `${id} exited on its own (code ${String(code)}); last lines: ${proc.lines.slice(-4).join(" | ")}`;
      this.crashes.push({ at: performance.now(), message });
      say(`!! ${message}`);
      // Keep the cluster whole: it comes back like a supervised process.
      if (this.coordinators.get(id) === proc) this.startCoordinator(id);
    });
    return proc;
  }

  /** Publishes with a JetStream acknowledgement (a request on the stream's subject), retrying for up to 10 s. */
  async publishAcked(subject: string, payload: string): Promise<boolean> {
    const until = performance.now() + 10_000;
    while (performance.now() < until) {
      try {
        const m = await this.clientsNc!.request(subject, payload, { timeout: 1500 });
        const ack = JSON.parse(m.string()) as { error?: unknown };
        if (ack.error === undefined) return true;
      } catch {
        // no stream leader for a moment (a server is down), or a timeout: try again
      }
      await sleep(200);
    }
    return false;
  }

  async registerClients(ns: number[]): Promise<void> {
    await Promise.all(
      ns.map(async (n) => {
        const subject = this.subjectOf(n);
        this.used.add(n);
        this.registered.add(n);
        this.sim!.rejoin([subject]);
        if (await this.publishAcked(presenceSubjects.register(this.clusterId), JSON.stringify({ myPresenceSubject: subject, chaos: true })))
          this.act(subject, "register");
        else this.unackedRegistrations += 1;
      }),
    );
  }

  /**
   * Unregisters clients as a client library does: once JetStream has acknowledged the leave,
   * the client is gone and answers no ping. A leave never acknowledged leaves the client
   * gone all the same, which the ground truth records as a silencing.
   */
  async unregisterClients(ns: number[]): Promise<void> {
    await Promise.all(
      ns.map(async (n) => {
        this.registered.delete(n);
        const acked = await this.publishAcked(
          presenceSubjects.unregister(this.clusterId),
          JSON.stringify({ myPresenceSubject: this.subjectOf(n) }),
        );
        this.sim!.leave([this.subjectOf(n)]);
        this.act(this.subjectOf(n), acked ? "unregister" : "silence");
      }),
    );
  }

  async sendMalformed(kinds: readonly RefusedKind[]): Promise<void> {
    for (const kind of kinds) {
      const m = this.malformed[kind];
      await this.sim!.publishRaw(m.payload());
      this.refused.push({ at: performance.now(), kind, ...(m.subject !== undefined ? { subject: m.subject } : {}) });
    }
    this.malformedSent += kinds.length;
  }

  /** Waits for a leader of `partition` heartbeating, up to `ms`. */
  async leaderWithin(ms: number, partition = 0): Promise<SeenHeartbeat | undefined> {
    try {
      return await waitFor(
        "a leader",
        () => {
          const hb = this.observer!.leader(1500, partition);
          const proc = hb && this.coordinators.get(hb.coordinatorId);
          return hb && proc?.running && !this.sigstopped.has(hb.coordinatorId) ? hb : undefined;
        },
        ms,
      );
    } catch {
      return undefined;
    }
  }

  later(ms: number, what: () => Promise<void>): void {
    const p: Promise<void> = sleep(ms)
      .then(what)
      .catch((err: unknown) => say(`!! restoring failed: ${(err as Error).message}`))
      .finally(() => this.restores.delete(p));
    this.restores.add(p);
  }

  /** Undoes whatever is still broken and waits until every client's fate is reported. */
  async settle(timeoutMs: number): Promise<string[]> {
    await Promise.allSettled([...this.restores]);
    for (const [id, proc] of this.coordinators) {
      if (this.sigstopped.has(id)) {
        proc.signal("SIGCONT");
        this.coordinatorWent(id, "up");
      }
      if (!proc.running) this.startCoordinator(id);
    }
    this.sigstopped.clear();
    for (const s of this.cluster!.servers) {
      if (s.running) continue;
      await s.launch();
      this.serverEvents.push(performance.now());
    }
    const since = performance.now();
    const waiting: string[] = [];
    let lastNote = since;
    try {
      await waitFor(
        "every silenced client reported dead and every live client reported by the final leader",
        () => {
          waiting.length = 0;
          const leaders = Array.from({ length: this.partitions }, (_, p) => this.observer!.leader(1500, p));
          const leaderless = leaders.flatMap((l, p) => (l ? [] : [p]));
          if (leaderless.length > 0) {
            waiting.push(this.partitions > 1 ? `a leader of partition(s) ${leaderless.join(",")}` : "a leader");
            return false;
          }
          const reportedBy = new Set(
            this.observer!.presence.filter((r) => r.epoch === leaders[r.partition ?? 0]?.epoch && r.at >= since).map(
              (r) => r.clientSubject,
            ),
          );
          const deadAfter = new Map<string, number>();
          for (const r of this.observer!.presence) if (r.type === "NodeDead") deadAfter.set(r.clientSubject, r.at);
          for (const n of this.registered) {
            const s = this.silenced.get(n);
            if (s !== undefined ? (deadAfter.get(this.subjectOf(n)) ?? -1) < s : !reportedBy.has(this.subjectOf(n)))
              waiting.push(this.subjectOf(n));
          }
          // Partitioned: the last change must be judged for balance too, so observation goes on past its bound.
          const lastChange = Math.max(...this.coordinatorEvents.map((e) => e.at), ...this.serverEvents);
          if (this.partitions > 1 && (this.starting.size > 0 || performance.now() < lastChange + BALANCE_BOUND_MS + 1000))
            waiting.push("the balance bound");
          if (performance.now() - lastNote > 5000) {
            lastNote = performance.now();
            say(`settling: waiting for ${waiting.length} client(s): ${waiting.slice(0, 3).join(", ")}`);
          }
          return waiting.length === 0;
        },
        timeoutMs,
      );
    } catch {
      say(`settling timed out; still waiting for ${waiting.length}: ${waiting.slice(0, 5).join(", ")}`);
    }
    await sleep(1000); // reports in flight
    return waiting;
  }
}
