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
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_DEAD_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_PING_INTERVAL_MS } from "../src/config/config.js";
import { parseElectionReport, parseHeartbeat, subjects } from "../src/protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS } from "../src/protocol/presence.js";
import { createRandom, MAX_SEED, newSeed, type RandomSource } from "../src/machines/random.js";
import { NatsCluster } from "../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../harness/coordinators.js";
import {
  DEFAULT_CHAOS_TIMINGS,
  REFUSED_KINDS,
  type ClientAction,
  type ClientActionKind,
  type LeadershipFault,
  type RefusedInput,
  type RefusedKind,
  type SeenElection,
  type SeenHeartbeat,
  type SeenPresence,
} from "../harness/chaos-invariants/record.js";
import { runChecks } from "../harness/chaos-invariants/run-checks.js";
import { failovers } from "../harness/chaos-invariants/timeline.js";
import { allPassed, verdictOf, type CheckResult } from "../harness/chaos-invariants/verdict.js";
import { fingerprint, isClusterFault, planSchedule, type FaultKind, type PlannedFault } from "../harness/chaos-schedule.js";
import { SimulatedClients } from "../harness/client-sim.js";

// ---------------------------------------------------------------------------------------
// Flags

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    duration: { type: "string" },
    seed: { type: "string" },
    clients: { type: "string" },
    json: { type: "string" },
  },
});
const usage = (message: string): never => {
  process.stderr.write(
    `chaos: ${message}\nusage: npm run chaos -- [--quick] [--duration <s>] [--seed <n>] [--clients <n>] [--json <file>]\n`,
  );
  process.exit(2);
};
const durationS = values.duration !== undefined ? Number(values.duration) : values.quick ? 60 : 300;
if (!Number.isFinite(durationS) || durationS < 10) usage("--duration must be a number of seconds, at least 10");
const seed = values.seed !== undefined ? Number(values.seed) : newSeed();
if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) usage(`--seed must be a whole number from 0 to ${MAX_SEED}`);
const clientCount = values.clients !== undefined ? Number(values.clients) : 300;
if (!Number.isInteger(clientCount) || clientCount < 10) usage("--clients must be a whole number of at least 10");

const reproduce = [
  `npm run chaos -- --seed ${seed}`,
  values.quick && values.duration === undefined ? " --quick" : "",
  values.duration !== undefined ? ` --duration ${values.duration}` : "",
  values.clients !== undefined ? ` --clients ${values.clients}` : "",
].join("");

// ---------------------------------------------------------------------------------------
// Output and time

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
let t0 = performance.now();
const rel = (at = performance.now()) => `${((at - t0) / 1000).toFixed(1).padStart(6)} s`;
const say = (line: string, at?: number): void => out(`${rel(at)}  ${line}`);

// ---------------------------------------------------------------------------------------
// The observer: its own connection, every report and heartbeat with its arrival time

class ChaosObserver {
  readonly presence: SeenPresence[] = [];
  readonly heartbeats: SeenHeartbeat[] = [];
  readonly elections: SeenElection[] = [];
  readonly undecodable: string[] = [];
  private highestEpoch = 0;
  onNewEpoch: (hb: SeenHeartbeat) => void = () => {};

  private constructor(readonly nc: NatsConnection) {}

  static async start(urls: string[], clusterId: string): Promise<ChaosObserver> {
    // The first seed is the server the run never stops; noRandomize keeps the observer on it.
    const nc = await connect({
      servers: urls,
      noRandomize: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      name: "chaos observer",
    });
    const o = new ChaosObserver(nc);
    nc.subscribe(presenceSubjects.report(clusterId), {
      callback: (_e, m) => {
        const at = performance.now();
        try {
          const r = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding) || undefined);
          o.presence.push({ at, type: r.type, clientSubject: r.clientSubject, coordinatorId: r.coordinatorId, epoch: r.epoch, seq: r.seq });
        } catch (err) {
          o.undecodable.push(`presence report at ${rel(at)}: ${(err as Error).message}`);
        }
      },
    });
    nc.subscribe(subjects.heartbeat(clusterId), {
      callback: (_e, m) => {
        const at = performance.now();
        try {
          const hb = parseHeartbeat(m.data);
          const seen: SeenHeartbeat = {
            at,
            coordinatorId: hb.coordinatorId,
            epoch: hb.epoch,
            ...(hb.resigning ? { resigning: true } : {}),
          };
          o.heartbeats.push(seen);
          if (hb.epoch > o.highestEpoch) {
            o.highestEpoch = hb.epoch;
            o.onNewEpoch(seen);
          }
        } catch (err) {
          o.undecodable.push(`heartbeat at ${rel(at)}: ${(err as Error).message}`);
        }
      },
    });
    nc.subscribe(subjects.electionReport(clusterId), {
      callback: (_e, m) => {
        const at = performance.now();
        try {
          const r = parseElectionReport(m.data);
          o.elections.push({
            at,
            type: r.type,
            coordinatorId: r.coordinatorId,
            epoch: r.epoch,
            reason: r.reason,
            ...(r.formerEpoch !== undefined ? { formerEpoch: r.formerEpoch } : {}),
          });
          if (r.type === "SteppedDown" && r.reason !== "shutdown")
            say(`<== ${r.coordinatorId} stepped down from epoch ${String(r.formerEpoch)}: ${r.reason}`, at);
        } catch (err) {
          o.undecodable.push(`election report at ${rel(at)}: ${(err as Error).message}`);
        }
      },
    });
    await nc.flush();
    return o;
  }

  /** The leader heartbeating now: the latest heartbeat of the highest epoch, within `withinMs`. */
  leader(withinMs = 1500): SeenHeartbeat | undefined {
    const last = this.heartbeats.at(-1);
    if (!last || last.resigning || last.epoch < this.highestEpoch || performance.now() - last.at > withinMs) return undefined;
    return last;
  }
}

// ---------------------------------------------------------------------------------------
// The run

interface FaultRecord {
  at: number;
  kind: FaultKind;
  skipped?: string;
  detail: string;
}

const schedule = planSchedule(seed, durationS * 1000);
const clusterId = `chaos${process.pid}`;
const prefix = `chaos.${clusterId}`;
const subjectOf = (n: number) => SimulatedClients.subject(prefix, n);

let cluster: NatsCluster | undefined;
let observer: ChaosObserver | undefined;
let clientsNc: NatsConnection | undefined;
let sim: SimulatedClients | undefined;
const coordinators = new Map<string, CoordinatorProcess>();
const seedsOf = new Map<string, string[]>();
/** Processes the harness stopped on purpose (their exit is not a crash). */
const expectedExit = new Set<CoordinatorProcess>();
const crashes: { at: number; message: string }[] = [];
const sigstopped = new Set<string>();
let lifetimes = 0;

// Ground truth of the clients: what the harness did (actions) and what it means to do
// next (the intended state, which decides the picks and so depends only on the schedule).
const actions: ClientAction[] = [];
const registered = new Set<number>();
/** Silenced clients, with the planned time (ms into the schedule) of the silencing: picks compare planned times, so they depend on the seed only. */
const silenced = new Map<number, number>();
const used = new Set<number>();
let nextNew = 0;
let malformedSent = 0;
const refused: RefusedInput[] = [];
/** When the harness's event loop stood still (its clients answered nothing): a tick late by more than STALL_MS. */
const harnessStalls: { from: number; to: number }[] = [];
const STALL_TICK_MS = 50;
const STALL_MS = 250;
let unackedRegistrations = 0;
const faults: FaultRecord[] = [];
const leadershipFaults: LeadershipFault[] = [];
const restores = new Set<Promise<void>>();

const act = (subject: string, kind: ClientActionKind, at = performance.now()) => actions.push({ at, subject, kind });

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of coordinators.values()) expectedExit.add(c);
    await Promise.allSettled([...coordinators.values()].map((c) => c.kill()));
    sim?.stop();
    await clientsNc?.close().catch(() => {});
    await observer?.nc.close().catch(() => {});
    await cluster?.stop().catch(() => {});
  })();
  return cleaning;
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    out(`\nchaos: ${signal}, stopping everything (seed ${seed})`);
    void cleanup().finally(() => process.exit(130));
  });
}

function startCoordinator(id: string): CoordinatorProcess {
  const proc = spawnCoordinator({ urls: [seedsOf.get(id)!.join(",")], clusterId, id, args: ["--kv-replicas", "3"] });
  coordinators.set(id, proc);
  lifetimes += 1;
  void proc.exited.then((code) => {
    if (expectedExit.has(proc) || cleaning) return;
    const message = `${id} exited on its own (code ${String(code)}); last lines: ${proc.lines.slice(-4).join(" | ")}`;
    crashes.push({ at: performance.now(), message });
    say(`!! ${message}`);
    // Keep the cluster whole: it comes back like a supervised process.
    if (coordinators.get(id) === proc) startCoordinator(id);
  });
  return proc;
}

/** Publishes with a JetStream acknowledgement (a request on the stream's subject), retrying for up to 10 s. */
async function publishAcked(subject: string, payload: string): Promise<boolean> {
  const until = performance.now() + 10_000;
  while (performance.now() < until) {
    try {
      const m = await clientsNc!.request(subject, payload, { timeout: 1500 });
      const ack = JSON.parse(m.string()) as { error?: unknown };
      if (ack.error === undefined) return true;
    } catch {
      // no stream leader for a moment (a server is down), or a timeout: try again
    }
    await sleep(200);
  }
  return false;
}

async function registerClients(ns: number[]): Promise<void> {
  await Promise.all(
    ns.map(async (n) => {
      const subject = subjectOf(n);
      used.add(n);
      registered.add(n);
      sim!.rejoin([subject]);
      if (await publishAcked(presenceSubjects.register(clusterId), JSON.stringify({ myPresenceSubject: subject, chaos: true })))
        act(subject, "register");
      else unackedRegistrations += 1;
    }),
  );
}

/**
 * Unregisters clients as a client library does: once JetStream has acknowledged the leave,
 * the client is gone and answers no ping. A leave never acknowledged leaves the client
 * gone all the same, which the ground truth records as a silencing.
 */
async function unregisterClients(ns: number[]): Promise<void> {
  await Promise.all(
    ns.map(async (n) => {
      registered.delete(n);
      const acked = await publishAcked(presenceSubjects.unregister(clusterId), JSON.stringify({ myPresenceSubject: subjectOf(n) }));
      sim!.leave([subjectOf(n)]);
      act(subjectOf(n), acked ? "unregister" : "silence");
    }),
  );
}

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
 * One malformed registration of each kind. Those that name a subject name one nobody else
 * uses, which the simulated clients watch for pings. The oversized and the bad UTF-8 ones
 * carry a valid subject, so that only the size or the encoding refuses them.
 */
const MALFORMED: Record<RefusedKind, { subject?: string; payload: () => string | Uint8Array }> = (() => {
  const named = (subject: string, extra: Record<string, unknown> = {}) => ({
    subject,
    payload: () => JSON.stringify({ myPresenceSubject: subject, ...extra }),
  });
  const utf8 = `${prefix}.bad.utf8`;
  return {
    "not-json": { payload: () => "not json at all" },
    "not-an-object": { payload: () => "[1,2,3]" },
    "no-subject": { payload: () => "{}" },
    "subject-not-a-string": { payload: () => JSON.stringify({ myPresenceSubject: 42 }) },
    "empty-subject": { payload: () => JSON.stringify({ myPresenceSubject: "" }) },
    "wildcard-star": named(`${prefix}.bad.*`),
    "wildcard-gt": named(`${prefix}.bad.>`),
    whitespace: named(`${prefix}.bad subject`),
    "empty-token": named(`${prefix}.bad..token`),
    dollar: named(`$SYS.${prefix}.bad`),
    inbox: named(`_INBOX.${prefix}.bad`),
    "presence-namespace": named(`presence.${prefix}.bad`),
    "coordinator-namespace": named(`coordinator.${prefix}.bad`),
    "too-long-subject": named(`${prefix}.bad.${"x".repeat(300)}`),
    "over-64-kib": named(`${prefix}.bad.big`, { pad: "x".repeat(65 * 1024) }),
    "bad-utf-8": {
      subject: utf8,
      // Valid JSON but for two bytes that are not UTF-8, inside a metadata string.
      payload: () => {
        const [head, tail] = JSON.stringify({ myPresenceSubject: utf8, note: "@@" }).split("@@") as [string, string];
        const enc = new TextEncoder();
        return new Uint8Array([...enc.encode(head), 0xff, 0xfe, ...enc.encode(tail)]);
      },
    },
  };
})();

/** The subjects of malformed registrations that a ping could reach (not those NATS could not deliver on anyway). */
const TRAPPABLE = (Object.values(MALFORMED) as { subject?: string }[])
  .map((m) => m.subject)
  .filter((x): x is string => x !== undefined && !/\s/.test(x) && !x.includes(".."));

async function sendMalformed(kinds: readonly RefusedKind[]): Promise<void> {
  for (const kind of kinds) {
    const m = MALFORMED[kind];
    await sim!.publishRaw(m.payload());
    refused.push({ at: performance.now(), kind, ...(m.subject !== undefined ? { subject: m.subject } : {}) });
  }
  malformedSent += kinds.length;
}

/** Waits for a leader heartbeating, up to `ms`. */
async function leaderWithin(ms: number): Promise<SeenHeartbeat | undefined> {
  try {
    return await waitFor(
      "a leader",
      () => {
        const hb = observer!.leader();
        const proc = hb && coordinators.get(hb.coordinatorId);
        return hb && proc?.running && !sigstopped.has(hb.coordinatorId) ? hb : undefined;
      },
      ms,
    );
  } catch {
    return undefined;
  }
}

const clusterWhole = () =>
  [...coordinators.values()].every((c) => c.running) &&
  sigstopped.size === 0 &&
  cluster!.servers.every((s) => s.running) &&
  restores.size === 0;

function later(ms: number, what: () => Promise<void>): void {
  const p: Promise<void> = sleep(ms)
    .then(what)
    .catch((err: unknown) => say(`!! restoring failed: ${(err as Error).message}`))
    .finally(() => restores.delete(p));
  restores.add(p);
}

async function inject(f: PlannedFault): Promise<void> {
  const random = createRandom(f.pick);
  const at = performance.now();
  const record = (detail: string, skipped?: string) => {
    faults.push({ at, kind: f.kind, detail, ...(skipped ? { skipped } : {}) });
    say(skipped ? `(skipped ${f.kind}: ${skipped})` : detail, at);
  };
  if (isClusterFault(f.kind)) {
    if (!clusterWhole()) {
      try {
        await waitFor("the cluster whole again", clusterWhole, 5000);
      } catch {
        return record("", "the previous cluster fault is not undone yet");
      }
    }
    const needsLeader = f.kind !== "stop-server" && f.kind !== "kill-coordinator";
    const leader = await leaderWithin(5000);
    if (needsLeader && !leader) return record("", "no leader heartbeating");
    const seconds = (f.durationMs / 1000).toFixed(1);
    switch (f.kind) {
      case "kill-coordinator": {
        const followers = [...coordinators.keys()].filter((id) => id !== leader?.coordinatorId).sort();
        const hitLeader = leader !== undefined && random.int(1, 10) <= 6;
        const id = hitLeader ? leader.coordinatorId : choose(random, followers, 1)[0]!;
        const proc = coordinators.get(id)!;
        expectedExit.add(proc);
        if (hitLeader) leadershipFaults.push({ at: performance.now(), kind: "SIGKILL" });
        proc.signal("SIGKILL");
        record(`SIGKILL ${hitLeader ? `leader ${id} (epoch ${leader.epoch})` : `follower ${id}`}; restart in ${seconds} s`);
        later(f.durationMs, async () => {
          await proc.exited;
          startCoordinator(id);
          say(`restarted ${id}`);
        });
        return;
      }
      case "term-leader": {
        const id = leader!.coordinatorId;
        const proc = coordinators.get(id)!;
        expectedExit.add(proc);
        leadershipFaults.push({ at: performance.now(), kind: "SIGTERM" });
        proc.signal("SIGTERM");
        record(`SIGTERM leader ${id} (epoch ${leader!.epoch}); restart in ${seconds} s`);
        later(f.durationMs, async () => {
          const exited = await Promise.race([proc.exited.then(() => true), sleep(10_000).then(() => false)]);
          if (!exited) {
            say(`!! ${id} did not exit within 10 s of SIGTERM; killing it`);
            crashes.push({ at: performance.now(), message: `${id} did not exit within 10 s of SIGTERM` });
            await proc.kill();
          } else if (proc.exitCode !== 0) {
            crashes.push({
              at: performance.now(),
              message: `${id} exited with code ${String(proc.exitCode)} after SIGTERM (expected 0); last lines: ${proc.lines.slice(-4).join(" | ")}`,
            });
          }
          startCoordinator(id);
          say(`restarted ${id}`);
        });
        return;
      }
      case "stop-leader": {
        const id = leader!.coordinatorId;
        const proc = coordinators.get(id)!;
        sigstopped.add(id);
        leadershipFaults.push({ at: performance.now(), kind: "SIGSTOP" });
        proc.signal("SIGSTOP");
        record(`SIGSTOP leader ${id} (epoch ${leader!.epoch}) for ${seconds} s`);
        later(f.durationMs, async () => {
          proc.signal("SIGCONT");
          sigstopped.delete(id);
          say(`SIGCONT ${id}`);
        });
        return;
      }
      case "stop-server": {
        // Never the first server: the clients and the observer are on it.
        const index = random.int(1, cluster!.servers.length - 1);
        const server = cluster!.servers[index]!;
        leadershipFaults.push({ at: performance.now(), kind: "server stop" });
        await server.stop({ keepStore: true });
        record(`stopped NATS server ${server.name} (:${server.port}) for ${seconds} s`);
        later(f.durationMs, async () => {
          await server.launch();
          say(`restarted NATS server ${server.name}`);
        });
        return;
      }
    }
  }
  switch (f.kind) {
    case "silence": {
      const ns = choose(random, sorted([...registered].filter((n) => !silenced.has(n))), f.count);
      if (ns.length === 0) return record("no client to silence");
      sim!.silence(ns.map(subjectOf));
      const now = performance.now();
      for (const n of ns) {
        silenced.set(n, f.at);
        act(subjectOf(n), "silence", now);
      }
      return record(`silenced ${ns.length} client(s): ${names(ns)}`);
    }
    case "revive": {
      // Either a quick recovery: clients silenced under RECOVER_WITHIN_MS ago answer again
      // without registering (suspect -> NodeRecovered, never dead); or restarted clients:
      // silenced long enough to have been reported dead (so that death is judged), they
      // answer and register again. Which clients qualify is decided on planned times.
      const now = performance.now();
      const recent = sorted([...silenced].filter(([n, s]) => registered.has(n) && f.at - s < RECOVER_WITHIN_MS).map(([n]) => n));
      const long = sorted([...silenced].filter(([, s]) => f.at - s > RESTART_AFTER_MS).map(([n]) => n));
      const recover = recent.length > 0 && (long.length === 0 || random.int(0, 1) === 0);
      const ns = choose(random, recover ? recent : long, f.count);
      if (ns.length === 0) return record("no silenced client to revive yet");
      sim!.revive(ns.map(subjectOf));
      for (const n of ns) {
        silenced.delete(n);
        act(subjectOf(n), "revive", now);
      }
      if (recover) return record(`revived ${ns.length} client(s) silenced under ${RECOVER_WITHIN_MS / 1000} s ago: ${names(ns)}`);
      await registerClients(ns);
      return record(`restarted ${ns.length} client(s) (answer, register again): ${names(ns)}`);
    }
    case "register": {
      const returning = sorted([...used].filter((n) => !registered.has(n)));
      const ns: number[] = [];
      for (let i = 0; i < f.count; i++) {
        if (returning.length > 0 && random.int(0, 1) === 0) ns.push(returning.splice(random.int(0, returning.length - 1), 1)[0]!);
        else ns.push(nextNew++);
      }
      const now = performance.now();
      for (const n of ns.filter((n) => silenced.has(n))) {
        silenced.delete(n);
        sim!.revive([subjectOf(n)]);
        act(subjectOf(n), "revive", now);
      }
      await registerClients(ns);
      return record(`registered ${ns.length} client(s): ${names(ns)}`);
    }
    case "unregister": {
      const ns = choose(random, sorted(registered), f.count);
      await unregisterClients(ns);
      return record(`unregistered ${ns.length} client(s): ${names(ns)}`);
    }
    case "malformed": {
      const picked = Array.from({ length: f.count }, () => REFUSED_KINDS[random.int(0, REFUSED_KINDS.length - 1)]!);
      await sendMalformed(picked);
      return record(`published ${picked.length} malformed registration(s): ${picked.join(", ")}`);
    }
  }
}

/** Undoes whatever is still broken and waits until every client's fate is reported. */
async function settle(): Promise<string[]> {
  await Promise.allSettled([...restores]);
  for (const [id, proc] of coordinators) {
    if (sigstopped.has(id)) proc.signal("SIGCONT");
    if (!proc.running) startCoordinator(id);
  }
  sigstopped.clear();
  for (const s of cluster!.servers) if (!s.running) await s.launch();
  const since = performance.now();
  const waiting: string[] = [];
  let lastNote = since;
  try {
    await waitFor(
      "every silenced client reported dead and every live client reported by the final leader",
      () => {
        waiting.length = 0;
        const leader = observer!.leader();
        if (!leader) {
          waiting.push("a leader");
          return false;
        }
        const reportedBy = new Set(observer!.presence.filter((r) => r.epoch === leader.epoch && r.at >= since).map((r) => r.clientSubject));
        const deadAfter = new Map<string, number>();
        for (const r of observer!.presence) if (r.type === "NodeDead") deadAfter.set(r.clientSubject, r.at);
        for (const n of registered) {
          const s = silenced.get(n);
          if (s !== undefined ? (deadAfter.get(subjectOf(n)) ?? -1) < s : !reportedBy.has(subjectOf(n))) waiting.push(subjectOf(n));
        }
        if (performance.now() - lastNote > 5000) {
          lastNote = performance.now();
          say(`settling: waiting for ${waiting.length} client(s): ${waiting.slice(0, 3).join(", ")}`);
        }
        return waiting.length === 0;
      },
      values.quick ? 25_000 : 40_000,
    );
  } catch {
    say(`settling timed out; still waiting for ${waiting.length}: ${waiting.slice(0, 5).join(", ")}`);
  }
  await sleep(1000); // reports in flight
  return waiting;
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

async function main(): Promise<number> {
  out(
    `chaos: seed ${seed}, ${durationS} s of faults, ${clientCount} clients, ${schedule.length} faults planned (schedule ${fingerprint(schedule)})`,
  );
  out(`chaos: reproduce with: ${reproduce}`);
  cluster = await NatsCluster.start(3, `chaos-${process.pid}`);
  const urls = cluster.urls;
  observer = await ChaosObserver.start(urls, clusterId);
  clientsNc = await connect({ servers: [urls[0]!], maxReconnectAttempts: -1, reconnectTimeWait: 100, name: "chaos clients" });
  sim = new SimulatedClients(clientsNc, clusterId, prefix);
  await clientsNc.flush();
  for (const [i, id] of ["c1", "c2", "c3"].entries()) {
    seedsOf.set(id, [...urls.slice(i), ...urls.slice(0, i)]);
    startCoordinator(id);
  }
  observer.onNewEpoch = (hb) => say(`==> leader ${hb.coordinatorId} (epoch ${hb.epoch})`, hb.at);
  // A replicated stream stores plain publishes only once it has a leader: wait for a monitoring leader.
  await waitFor(
    "a leader monitoring",
    () => [...coordinators.values()].some((c) => c.logs().some((l) => l.message === "loaded stored registrations")),
    30_000,
  );
  const initial = Array.from({ length: clientCount }, () => nextNew++);
  await registerClients(initial);
  await waitFor(
    `NodePresent for all ${clientCount} clients`,
    () => {
      const present = new Set(observer!.presence.filter((r) => r.type === "NodePresent").map((r) => r.clientSubject));
      return initial.every((n) => present.has(subjectOf(n)));
    },
    30_000,
  );
  t0 = performance.now();
  out(`chaos: cluster ${urls.join(" ")}; ${clientCount} clients registered and reported; faults start now`);
  let lastTick = performance.now();
  const stallWatch = setInterval(() => {
    const now = performance.now();
    if (now - lastTick > STALL_MS) harnessStalls.push({ from: lastTick, to: now });
    lastTick = now;
  }, STALL_TICK_MS);
  sim.trap(TRAPPABLE);
  await clientsNc.flush();
  // Every kind of malformed registration, in every run; the schedule adds random ones.
  await sendMalformed(REFUSED_KINDS);
  say(`published one malformed registration of each of ${REFUSED_KINDS.length} kinds`);

  for (const f of schedule) {
    const wait = t0 + f.at - performance.now();
    if (wait > 0) await sleep(wait);
    await inject(f);
  }
  const end = t0 + durationS * 1000;
  if (end > performance.now()) await sleep(end - performance.now());
  say("faults over: restoring everything and settling");
  const unsettled = await settle();
  const endAt = performance.now();
  clearInterval(stallWatch);
  say("observation ends");

  // ------------------------------------------------------------------ judging
  const record = {
    presence: observer.presence,
    heartbeats: observer.heartbeats,
    elections: observer.elections,
    actions,
    subjects: new Set([...used].map(subjectOf)),
    endAt,
    harnessStalls,
    refused,
    trappedPings: [...sim.trapped()],
    leadershipFaults,
  };
  const timings = { ...DEFAULT_CHAOS_TIMINGS, deadTimeoutMs: DEFAULT_DEAD_TIMEOUT_MS, pingIntervalMs: DEFAULT_PING_INTERVAL_MS };
  const checks: CheckResult[] = [
    ...runChecks(record, timings),
    { name: "no coordinator crash", checked: lifetimes, unit: "coordinator processes", violations: crashes },
    {
      name: "reports decodable",
      checked: observer.presence.length + observer.heartbeats.length + observer.elections.length + observer.undecodable.length,
      unit: "messages",
      violations: observer.undecodable.map((message) => ({ at: endAt, message })),
    },
  ];
  const fo = failovers(observer.heartbeats, leadershipFaults, DEFAULT_HEARTBEAT_INTERVAL_MS);
  const injected = faults.filter((f) => !f.skipped);
  const byKind: Record<string, number> = {};
  for (const f of injected) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  const skippedByKind: Record<string, number> = {};
  for (const f of faults.filter((f) => f.skipped)) skippedByKind[f.kind] = (skippedByKind[f.kind] ?? 0) + 1;
  const passed = allPassed(checks);

  out("");
  out(`${"invariant".padEnd(28)} ${"checked".padStart(8)} ${"".padEnd(36)} ${"violations".padStart(10)}  verdict`);
  for (const c of checks) {
    const extra = c.skipped ? ` (+${c.skipped} not judgeable)` : "";
    out(
      `${c.name.padEnd(28)} ${String(c.checked).padStart(8)} ${(c.unit + extra).padEnd(36)} ${String(c.violations.length).padStart(10)}  ${verdictOf(c)}`,
    );
  }
  out("");
  out(
    `reports checked: ${observer.presence.length} presence, ${observer.heartbeats.length} heartbeats, ${observer.elections.length} election`,
  );
  out(
    `faults injected: ${injected.length} (${Object.entries(byKind)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")})${
      faults.length > injected.length
        ? `; skipped: ${Object.entries(skippedByKind)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")}`
        : ""
    }`,
  );
  out(`malformed registrations sent: ${malformedSent}; registrations never acknowledged: ${unackedRegistrations}`);
  out(
    `harness stalls over ${STALL_MS} ms: ${harnessStalls.length}${harnessStalls.length > 0 ? ` (longest ${Math.round(Math.max(...harnessStalls.map((w) => w.to - w.from)))} ms)` : ""}`,
  );
  const ms = fo.map((f) => f.ms);
  out(
    fo.length === 0
      ? "failovers: none"
      : `failovers: ${fo.length}, ${Math.min(...ms)} / ${median(ms)} / ${Math.max(...ms)} ms (min / median / max): ${fo.map((f) => `${f.from}->${f.to} ${f.ms} ms${f.cause ? ` (${f.cause})` : ""}`).join(", ")}`,
  );
  const unprovoked = fo.filter((f) => !f.cause);
  if (unprovoked.length > 0) {
    out(
      `failovers no fault explains: ${unprovoked.map((f) => `${f.from}->${f.to} at ${rel(f.at)}`).join(", ")} (steppings-down: ${stepDowns(observer.elections)})`,
    );
  }
  out(
    `false deaths ${checks[0]!.violations.length}, missed deaths ${checks[1]!.violations.length}, duplicate NodeDead ${checks[2]!.violations.length}, stale-epoch reports ${checks[3]!.violations.length}`,
  );
  if (unsettled.length > 0) out(`not settled at the end: ${unsettled.length} (${unsettled.slice(0, 5).join(", ")})`);

  if (values.json) {
    const result = {
      seed,
      quick: values.quick,
      durationS,
      clients: clientCount,
      passed,
      schedule: { planned: schedule.length, fingerprint: fingerprint(schedule) },
      faults: { injected: injected.length, byKind, skipped: skippedByKind, list: faults.map((f) => ({ ...f, at: Math.round(f.at - t0) })) },
      malformedSent,
      unackedRegistrations,
      harnessStalls: harnessStalls.length,
      reports: { presence: observer.presence.length, heartbeats: observer.heartbeats.length, election: observer.elections.length },
      steppedDown: stepDowns(observer.elections),
      failovers: {
        count: fo.length,
        minMs: fo.length ? Math.min(...ms) : null,
        medianMs: fo.length ? median(ms) : null,
        maxMs: fo.length ? Math.max(...ms) : null,
        list: fo.map((f) => ({ ...f, at: Math.round(f.at - t0) })),
      },
      checks: checks.map((c) => ({
        name: c.name,
        verdict: verdictOf(c),
        checked: c.checked,
        unit: c.unit,
        skipped: c.skipped ?? 0,
        violations: c.violations.length,
        examples: c.violations.slice(0, 10).map((v) => ({ at: Math.round(v.at - t0), message: v.message })),
      })),
    };
    await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
  }

  if (!passed) {
    out("");
    for (const c of checks.filter((c) => verdictOf(c) === "NOT JUDGED"))
      out(`NOT JUDGED ${c.name} (seed ${seed}): it checked no ${c.unit}`);
    for (const c of checks.filter((c) => c.violations.length > 0)) {
      out(`FAIL ${c.name} (seed ${seed}):`);
      for (const v of c.violations.slice(0, 5)) out(`  ${rel(v.at)}  ${v.message}`);
      if (c.violations.length > 5) out(`  ... and ${c.violations.length - 5} more`);
    }
    out(`reproduce with: ${reproduce}`);
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
  for (const c of coordinators.values()) out(`--- last log lines of ${c.id} ---\n${c.lines.slice(-8).join("\n")}`);
  out(`reproduce with: ${reproduce}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
