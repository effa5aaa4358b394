/**
 * The chaos run's observer: its own connection to the server the run never stops, recording
 * every presence report (either encoding), heartbeat and election report with its arrival
 * time, and the messages it could not decode.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parseElectionReport, parseHeartbeat, subjects } from "../../src/protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS } from "../../src/protocol/presence.js";
import type { SeenElection, SeenHeartbeat, SeenPresence } from "../../harness/chaos-invariants/record.js";
import { rel, say } from "./output.js";

export class ChaosObserver {
  readonly presence: SeenPresence[] = [];
  readonly heartbeats: SeenHeartbeat[] = [];
  readonly elections: SeenElection[] = [];
  readonly undecodable: string[] = [];
  /** By partition: the highest epoch and the latest heartbeat seen. */
  private readonly highestEpoch = new Map<number, number>();
  private readonly lastBeat = new Map<number, SeenHeartbeat>();
  onNewEpoch: (hb: SeenHeartbeat) => void = () => {};
  onElection: (e: SeenElection) => void = () => {};

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
          o.presence.push({
            at,
            type: r.type,
            clientSubject: r.clientSubject,
            coordinatorId: r.coordinatorId,
            epoch: r.epoch,
            seq: r.seq,
            ...(r.partition !== undefined ? { partition: r.partition } : {}),
          });
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
            ...(hb.successor !== undefined ? { successor: hb.successor } : {}),
            ...(hb.partition !== undefined ? { partition: hb.partition } : {}),
          };
          o.heartbeats.push(seen);
          const p = hb.partition ?? 0;
          o.lastBeat.set(p, seen);
          if (hb.epoch > (o.highestEpoch.get(p) ?? 0)) {
            o.highestEpoch.set(p, hb.epoch);
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
          const seen: SeenElection = {
            at,
            type: r.type,
            coordinatorId: r.coordinatorId,
            epoch: r.epoch,
            reason: r.reason,
            ...(r.formerEpoch !== undefined ? { formerEpoch: r.formerEpoch } : {}),
            ...(r.partition !== undefined ? { partition: r.partition } : {}),
          };
          o.elections.push(seen);
          o.onElection(seen);
          if (r.type === "SteppedDown" && r.reason !== "shutdown" && r.reason !== "handover")
            say(
              `<== ${r.coordinatorId} stepped down from ${r.partition !== undefined ? `partition ${r.partition} ` : ""}epoch ${String(r.formerEpoch)}: ${r.reason}`,
              at,
            );
        } catch (err) {
          o.undecodable.push(`election report at ${rel(at)}: ${(err as Error).message}`);
        }
      },
    });
    await nc.flush();
    return o;
  }

  /** The leader of `partition` heartbeating now: its latest heartbeat, of its highest epoch, within `withinMs`. */
  leader(withinMs = 1500, partition = 0): SeenHeartbeat | undefined {
    const last = this.lastBeat.get(partition);
    if (!last || last.resigning || last.epoch < (this.highestEpoch.get(partition) ?? 0) || performance.now() - last.at > withinMs)
      return undefined;
    return last;
  }
}
