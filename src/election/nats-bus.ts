/**
 * The election's heartbeats and reports on NATS: the HeartbeatBus and ReportSink the
 * election driver runs against, on the cluster's heartbeat and election report subjects.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import {
  encodeElectionReport,
  encodeHeartbeat,
  parseHeartbeat,
  subjects,
  type ElectionReport,
  type Heartbeat,
} from "../protocol/election.js";
import { describeError, WarningThrottle, type Logger } from "../observe/logger.js";
import type { HeartbeatBus, ReportSink } from "./election-driver.js";

export class NatsHeartbeatBus implements HeartbeatBus {
  /** Garbage on the heartbeat subject logs a line per 10 s, not one per message. */
  private readonly malformed: WarningThrottle;

  constructor(
    private readonly nc: NatsConnection,
    private readonly clusterId: string,
    private readonly logger: Logger,
  ) {
    this.malformed = new WarningThrottle(logger, "more malformed heartbeats ignored (counted, not logged one by one)");
  }

  publish(heartbeat: Heartbeat): void {
    try {
      this.nc.publish(subjects.heartbeat(this.clusterId), encodeHeartbeat(heartbeat));
    } catch (err) {
      this.logger.warn("could not publish a heartbeat", { error: describeError(err) });
    }
  }

  subscribe(handler: (heartbeat: Heartbeat) => void): () => void {
    const sub = this.nc.subscribe(subjects.heartbeat(this.clusterId), {
      callback: (err, msg) => {
        if (err) {
          this.logger.warn("heartbeat subscription failed", { error: describeError(err) });
          return;
        }
        let hb: Heartbeat;
        try {
          hb = parseHeartbeat(msg.data);
        } catch (e) {
          this.malformed.warn("malformed", "ignored a malformed heartbeat", { error: describeError(e) });
          return;
        }
        handler(hb);
      },
    });
    return () => {
      sub.unsubscribe();
      this.malformed.flush();
    };
  }
}

export class NatsReportSink implements ReportSink {
  constructor(
    private readonly nc: NatsConnection,
    private readonly clusterId: string,
    private readonly logger: Logger,
  ) {}

  publish(report: ElectionReport): void {
    try {
      this.nc.publish(subjects.electionReport(this.clusterId), encodeElectionReport(report));
    } catch (err) {
      this.logger.warn("could not publish an election report", { report: report.type, error: describeError(err) });
    }
  }
}

/**
 * The heartbeats of a cluster of several partitions: one subscription for the coordinator,
 * each heartbeat handed only to the election of the partition it names (P elections each
 * subscribed to every heartbeat would parse P² of them a second). Publishing goes straight
 * to the subject.
 */
export class PartitionedHeartbeats {
  private readonly handlers = new Map<number, (heartbeat: Heartbeat) => void>();
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly bus: HeartbeatBus) {}

  /** The bus of one partition's election. */
  forPartition(partition: number): HeartbeatBus {
    return {
      publish: (heartbeat) => this.bus.publish(heartbeat),
      subscribe: (handler) => {
        this.handlers.set(partition, handler);
        this.unsubscribe ??= this.bus.subscribe((hb) => this.handlers.get(hb.partition ?? 0)?.(hb));
        return () => {
          this.handlers.delete(partition);
          if (this.handlers.size === 0) {
            this.unsubscribe?.();
            this.unsubscribe = null;
          }
        };
      },
    };
  }
}
