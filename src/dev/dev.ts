/**
 * `presence-coordinator dev`: an embedded JetStream nats-server on a free loopback port,
 * several coordinators in one cluster, and a live view of the election: every election
 * report, who leads, and how long each failover took. It crashes the leader now and then
 * (without resigning, as a killed process would) so that a newcomer sees a failover.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  DEFAULT_MAX_CLIENTS,
  DEFAULT_SHARD_COUNT,
  validateConfig,
  type CoordinatorConfig,
  type ElectionTimings,
  type LogFormat,
  type MonitorTimings,
} from "../config/config.js";
import { parseElectionReport, parseHeartbeat, subjects, type ElectionReport } from "../protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS, type Report, type ReportEncoding } from "../protocol/presence.js";
import { newSeed } from "../machines/random.js";
import { startCoordinator, type Coordinator } from "../coordinator/coordinator.js";
import { Inspection, type InspectSettings } from "../observe/inspect/inspector.js";
import { InspectorError } from "../observe/inspect/inspector-server.js";
import { createLogger, type Logger } from "../observe/logger.js";
import { NatsServer } from "../nats/server.js";

export interface DevOptions {
  coordinators: number;
  /** Demo clients that register and answer pings (one is silenced, one restarted). */
  clients: number;
  clusterId: string;
  timings: ElectionTimings & MonitorTimings & { reportEncoding: ReportEncoding };
  crashEverySeconds: number;
  logFormat: LogFormat;
  verbose: boolean;
  /** The live inspector for every coordinator of the demo; null: off. */
  inspect: InspectSettings | null;
  out: NodeJS.WritableStream;
}

/** The time of day of `at` (ms since the Unix epoch; now by default), to the ms. */
const clock = (at = Date.now()) => new Date(at).toISOString().slice(11, 23);

/**
 * The demo's summary of the NodeState reports of one state interval: one line per coordinator
 * that sent any (around a failover, the old leader and the new one), each client's latest
 * state, stamped with the time the coordinator's last one was published (not the time it is
 * printed: a crashed leader's last reports must not look as if they came after the crash).
 */
export function nodeStateSummary(states: readonly Report[]): string[] {
  const byCoordinator = new Map<string, Map<string, Report>>();
  for (const r of states) {
    const latest = byCoordinator.get(r.coordinatorId) ?? new Map<string, Report>();
    latest.set(r.clientSubject, r);
    byCoordinator.set(r.coordinatorId, latest);
  }
  return [...byCoordinator].map(([coordinatorId, latest]) => {
    const reports = [...latest.values()];
    const list = reports.map((r) => `${r.clientSubject.replace("demo.", "")}=${r.state}`).join(" ");
    const at = Math.max(...reports.map((r) => r.ts));
    return `${clock(at)}  ${coordinatorId.padEnd(8)} ${"NodeState".padEnd(16)} ${list}`;
  });
}

function describePresence(r: Report): string {
  const detail = r.type === "NodeDead" || r.type === "NodeSuspect" ? ` missed=${r.missedPings}` : ` rtt=${r.rttMs}ms`;
  return `${clock()}  ${r.coordinatorId.padEnd(8)} ${r.type.padEnd(16)} ${r.clientSubject} epoch=${r.epoch} seq=${r.seq}${detail}`;
}

function describeReport(r: ElectionReport): string {
  const parts = [`epoch=${r.epoch}`, `reason=${r.reason}`];
  if (r.leaderId !== undefined) parts.push(`leader=${r.leaderId}`);
  if (r.formerEpoch !== undefined) parts.push(`formerEpoch=${r.formerEpoch}`);
  return `${clock()}  ${r.coordinatorId.padEnd(8)} ${r.type.padEnd(16)} ${parts.join(" ")}`;
}

/**
 * Demo clients on the observer's connection: each registers and answers pings. After 10 s
 * the third stops answering (suspect, then dead); after 15 s the second restarts (registers
 * again: NodePresent again).
 */
function startDemoClients(nc: NatsConnection, options: DevOptions, say: (line: string) => void, timers: NodeJS.Timeout[]): void {
  const subjects = Array.from({ length: options.clients }, (_, i) => `demo.client-${i + 1}`);
  const subs = new Map(
    subjects.map((subject) => [
      subject,
      nc.subscribe(subject, {
        callback: (_e, m) => {
          m.respond();
        },
      }),
    ]),
  );
  const register = (subject: string) =>
    nc.publish(presenceSubjects.register(options.clusterId), JSON.stringify({ myPresenceSubject: subject, demo: true }));
  say(`starting ${subjects.length} demo clients: ${subjects.join(", ")}`);
  for (const subject of subjects) register(subject);
  const silenced = subjects[2];
  if (silenced !== undefined) {
    timers.push(
      setTimeout(() => {
        say(`${clock()}  ~~> ${silenced} stops answering pings (watch it turn suspect, then dead)`);
        subs.get(silenced)?.unsubscribe();
      }, 10_000),
    );
  }
  const restarted = subjects[1];
  if (restarted !== undefined) {
    timers.push(
      setTimeout(() => {
        say(`${clock()}  ~~> ${restarted} restarts and registers again`);
        register(restarted);
      }, 15_000),
    );
  }
}

/** The demo's inspector: when its port is taken, it moves to a free one rather than failing the demo. */
async function startDevInspection(settings: InspectSettings, logger: Logger, say: (line: string) => void): Promise<Inspection> {
  try {
    return await Inspection.start(settings, logger);
  } catch (err) {
    const inUse = err instanceof InspectorError && (err.cause as NodeJS.ErrnoException | undefined)?.code === "EADDRINUSE";
    if (!inUse || settings.local === undefined || settings.local.port === 0) throw err;
    say(`${(err as Error).message}; using a free port instead`);
    return Inspection.start({ ...settings, local: { ...settings.local, port: 0 } }, logger);
  }
}

/** Starts the demo; resolves to a function that stops everything it started. */
export async function runDev(options: DevOptions): Promise<() => Promise<void>> {
  const say = (line: string) => options.out.write(`${line}\n`);
  // A Ctrl-C reaches the whole foreground process group: the server must not stop before
  // the coordinators have resigned and left.
  const server = await NatsServer.start({ name: "presence-dev", ownProcessGroup: true });
  say(`presence-coordinator dev: embedded nats-server on ${server.url} (JetStream store ${server.storeDir})`);

  let observer: NatsConnection | undefined;
  const coordinators = new Map<string, Coordinator>();
  const timers: NodeJS.Timeout[] = [];
  let inspection: Inspection | null = null;
  const ids = Array.from({ length: options.coordinators }, (_, i) => `dev-${String.fromCharCode(97 + i)}`);

  const configFor = (coordinatorId: string): CoordinatorConfig => {
    const config: CoordinatorConfig = {
      natsUrls: [server.url],
      clusterId: options.clusterId,
      coordinatorId,
      ...options.timings,
      connectTimeoutMs: 5000,
      kvReplicas: 1,
      maxClients: DEFAULT_MAX_CLIENTS,
      shardCount: DEFAULT_SHARD_COUNT,
      logFormat: options.logFormat,
      verbose: options.verbose,
      seed: newSeed(),
    };
    validateConfig(config);
    return config;
  };

  const startOne = async (id: string) => {
    const config = configFor(id);
    let coordinator: Coordinator | undefined;
    const logger = createLogger({
      format: options.logFormat,
      verbose: options.verbose,
      // The demo prints the reports itself; the coordinators' own logs only with --verbose.
      level: options.verbose ? "info" : "warn",
      fields: { coordinatorId: id },
      epoch: (partition) => coordinator?.view.epochOf(partition) ?? 0,
    });
    coordinator = await startCoordinator(config, {
      logger,
      ...(inspection ? { inspect: inspection.observerFor(id, options.clusterId) } : {}),
    });
    coordinators.set(id, coordinator);
  };

  /** Set once stopping begins: no crashed leader is restarted after that. */
  let stopping = false;
  /** Restarts in progress: stopping waits for them, so that none is left running on a stopped server. */
  const restarting = new Set<Promise<void>>();

  const stopAll = async () => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    await Promise.allSettled([...restarting]);
    await Promise.allSettled([...coordinators.values()].map((c) => c.stop()));
    coordinators.clear();
    await inspection?.stop();
    await observer?.close();
    await server.stop();
  };

  try {
    if (options.inspect !== null) {
      const logger = createLogger({ format: options.logFormat, verbose: options.verbose, level: options.verbose ? "info" : "warn" });
      inspection = await startDevInspection(options.inspect, logger, say);
      say(`live inspector: ${inspection.url ?? "forwarding to the Stately inspector only"}`);
    }
    observer = await connect({ servers: server.url, name: "presence-coordinator dev observer" });
    let leader: { id: string; epoch: number } | null = null;
    let crashedAt: { id: string; at: number } | null = null;
    observer.subscribe(subjects.electionReport(options.clusterId), {
      callback: (_err, msg) => {
        try {
          say(describeReport(parseElectionReport(msg.data)));
        } catch {
          say(`${clock()}  (unreadable election report)`);
        }
      },
    });
    observer.subscribe(subjects.heartbeat(options.clusterId), {
      callback: (_err, msg) => {
        let hb: ReturnType<typeof parseHeartbeat>;
        try {
          hb = parseHeartbeat(msg.data);
        } catch {
          return;
        }
        if (hb.resigning) return;
        if (leader === null || leader.id !== hb.coordinatorId || leader.epoch !== hb.epoch) {
          leader = { id: hb.coordinatorId, epoch: hb.epoch };
          let note = "";
          if (crashedAt !== null) {
            note = `, ${((performance.now() - crashedAt.at) / 1000).toFixed(2)} s after ${crashedAt.id} crashed`;
            crashedAt = null;
          }
          say(`${clock()}  ==> leader is ${hb.coordinatorId} (epoch ${hb.epoch})${note}`);
        }
      },
    });
    // NodeState comes for every client every state interval: one summary line per interval.
    let states: Report[] = [];
    observer.subscribe(presenceSubjects.report(options.clusterId), {
      callback: (_err, msg) => {
        let r: Report;
        try {
          r = decodeReport(msg.data, msg.headers?.get(REPORT_HEADERS.encoding));
        } catch {
          say(`${clock()}  (unreadable presence report)`);
          return;
        }
        if (r.type === "NodeState") states.push(r);
        else say(describePresence(r));
      },
    });
    timers.push(
      setInterval(() => {
        for (const line of nodeStateSummary(states)) say(line);
        states = [];
      }, options.timings.stateIntervalMs),
    );
    await observer.flush();

    say(`starting ${ids.length} coordinators in cluster "${options.clusterId}": ${ids.join(", ")}`);
    await Promise.all(ids.map(startOne));
    const crashNote =
      options.crashEverySeconds > 0 ? `; the leader is crashed every ${options.crashEverySeconds} s and restarted as a follower` : "";
    say(`all coordinators running${crashNote}. Press Ctrl-C to stop.`);
    if (options.clients > 0) startDemoClients(observer, options, say, timers);

    if (options.crashEverySeconds > 0) {
      timers.push(
        setInterval(() => {
          const entry = [...coordinators.entries()].find(([, c]) => c.view.role === "leader");
          if (!entry) return;
          const [id, victim] = entry;
          coordinators.delete(id);
          crashedAt = { id, at: performance.now() };
          say(`${clock()}  ~~> crashing leader ${id} (no resignation; its lease must expire)`);
          void victim.kill().then(() => {
            if (stopping) return;
            const restart = setTimeout(() => {
              say(`${clock()}  ~~> restarting ${id}`);
              const started = startOne(id).catch((err: unknown) => {
                say(`${clock()}  could not restart ${id}: ${String(err)}`);
              });
              restarting.add(started);
              void started.finally(() => restarting.delete(started));
            }, 2 * options.timings.leaderTimeoutMs);
            timers.push(restart);
          });
        }, options.crashEverySeconds * 1000),
      );
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  return async () => {
    say(`${clock()}  stopping: leader resigns, followers leave, nats-server stops`);
    await stopAll();
    say(`${clock()}  stopped`);
  };
}
