/**
 * `presence-coordinator dev`: an embedded JetStream nats-server on a free loopback port,
 * several coordinators in one cluster, and a live view of the election: every election
 * report, who leads, and how long each failover took. It crashes the leader now and then
 * (without resigning, as a killed process would) so that a newcomer sees a failover.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  DEFAULT_SHARD_COUNT,
  validateConfig,
  type CoordinatorConfig,
  type ElectionTimings,
  type LogFormat,
  type MonitorTimings,
  type ReportEncoding,
} from "../config.js";
import { parseElectionReport, parseHeartbeat, subjects, type ElectionReport } from "../protocol/election.js";
import { newSeed } from "../random.js";
import { startCoordinator, type Coordinator } from "./coordinator.js";
import { createLogger } from "./logger.js";
import { NatsServer } from "./nats-server.js";

export interface DevOptions {
  coordinators: number;
  clusterId: string;
  timings: ElectionTimings & MonitorTimings & { reportEncoding: ReportEncoding };
  crashEverySeconds: number;
  logFormat: LogFormat;
  verbose: boolean;
  out: NodeJS.WritableStream;
}

const clock = () => new Date().toISOString().slice(11, 23);

function describeReport(r: ElectionReport): string {
  const parts = [`epoch=${r.epoch}`, `reason=${r.reason}`];
  if (r.leaderId !== undefined) parts.push(`leader=${r.leaderId}`);
  if (r.formerEpoch !== undefined) parts.push(`formerEpoch=${r.formerEpoch}`);
  return `${clock()}  ${r.coordinatorId.padEnd(8)} ${r.type.padEnd(16)} ${parts.join(" ")}`;
}

/** Starts the demo; resolves to a function that stops everything it started. */
export async function runDev(options: DevOptions): Promise<() => Promise<void>> {
  const say = (line: string) => options.out.write(`${line}\n`);
  const server = await NatsServer.start({ name: "presence-dev" });
  say(`presence-coordinator dev: embedded nats-server on ${server.url} (JetStream store ${server.storeDir})`);

  let observer: NatsConnection | undefined;
  const coordinators = new Map<string, Coordinator>();
  const timers: NodeJS.Timeout[] = [];
  const ids = Array.from({ length: options.coordinators }, (_, i) => `dev-${String.fromCharCode(97 + i)}`);

  const configFor = (coordinatorId: string): CoordinatorConfig => {
    const config: CoordinatorConfig = {
      natsUrls: [server.url],
      clusterId: options.clusterId,
      coordinatorId,
      ...options.timings,
      connectTimeoutMs: 5000,
      kvReplicas: 1,
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
      epoch: () => coordinator?.driver.epoch ?? 0,
    });
    coordinator = await startCoordinator(config, { logger });
    coordinators.set(id, coordinator);
  };

  const stopAll = async () => {
    for (const t of timers) clearInterval(t);
    await Promise.allSettled([...coordinators.values()].map((c) => c.stop()));
    coordinators.clear();
    await observer?.close();
    await server.stop();
  };

  try {
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
        let hb;
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
    await observer.flush();

    say(`starting ${ids.length} coordinators in cluster "${options.clusterId}": ${ids.join(", ")}`);
    await Promise.all(ids.map(startOne));
    const crashNote =
      options.crashEverySeconds > 0
        ? `; the leader is crashed every ${options.crashEverySeconds} s and restarted as a follower`
        : "";
    say(`all coordinators running${crashNote}. Press Ctrl-C to stop.`);

    if (options.crashEverySeconds > 0) {
      timers.push(
        setInterval(() => {
          const entry = [...coordinators.entries()].find(([, c]) => c.driver.isLeader);
          if (!entry) return;
          const [id, victim] = entry;
          coordinators.delete(id);
          crashedAt = { id, at: performance.now() };
          say(`${clock()}  ~~> crashing leader ${id} (no resignation; its lease must expire)`);
          void victim.kill().then(() => {
            const restart = setTimeout(() => {
              say(`${clock()}  ~~> restarting ${id}`);
              startOne(id).catch((err: unknown) => say(`${clock()}  could not restart ${id}: ${String(err)}`));
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
