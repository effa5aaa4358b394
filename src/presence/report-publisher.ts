/**
 * Publishes presence reports for the presence edge: numbers them per epoch, encodes them
 * (a live client's unchanging fields once, see ReportEncoder) and publishes each only while
 * this coordinator's lease is valid and NATS is connected. A report that may not go out is
 * withheld: counted, and held until it may if it is a lifecycle report.
 */
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import { presenceSubjects, REPORT_HEADERS, REPORT_SCHEMA, type ClientReport, type ReportEncoding } from "../protocol/presence.js";
import { createReportEncoder, type ReportEncoder, type ReportKeys } from "../protocol/report-encoder.js";
import { describeError, type Logger } from "../observe/logger.js";
import type { MetricsSink } from "../observe/metrics.js";
import { fixedHeaders } from "./fixed-headers.js";

export interface ReportPublisherOptions {
  nc: Pick<NatsConnection, "publish">;
  clusterId: string;
  coordinatorId: string;
  reportEncoding: ReportEncoding;
  log: Logger;
  /** True while this coordinator may act as leader (its renew deadline has not passed). */
  leaseIsValid: () => boolean;
  isConnected: () => boolean;
  /** The epoch this coordinator leads under: reports are numbered from 1 in each. */
  epoch: () => number;
  /**
   * The partition whose clients this publisher reports (design §9), in every report's
   * `partition`. Absent or 0 (one partition, today's only case): the field is left out and
   * the reports are exactly those of a coordinator without partitions.
   */
  partition?: number;
  metrics?: MetricsSink;
}

export class ReportPublisher {
  private seq = 0;
  private seqEpoch = 0;
  /** Built once: every report goes to the same subject with the same headers. */
  private readonly reportSubject: string;
  private readonly reportHeaders: MsgHdrs;
  /** Keeps each live client's unchanging report fields encoded: a report encodes only what changed. */
  private readonly reportEncoder: ReportEncoder;
  /** Per-report debug lines are only built when they would be printed. */
  private readonly debug: boolean;
  private readonly log: Logger;

  constructor(private readonly options: ReportPublisherOptions) {
    this.log = options.log;
    this.debug = this.log.isDebugEnabled();
    this.reportSubject = presenceSubjects.report(options.clusterId);
    this.reportHeaders = fixedHeaders({ [REPORT_HEADERS.encoding]: options.reportEncoding, [REPORT_HEADERS.schema]: REPORT_SCHEMA });
    this.reportEncoder = createReportEncoder(options.reportEncoding, options.clusterId, options.coordinatorId, options.partition ?? 0);
  }

  /** Clients whose unchanging report fields are cached: the live ones of this leadership. */
  get cachedClients(): number {
    return this.reportEncoder.cachedClients;
  }

  /** Publishing works again (the lease was just found valid, NATS is up): the held reports go out, oldest first. */
  resume(): void {
    this.endWithholding();
    this.publishHeld();
  }

  /** Leadership ended: held reports are dropped (another leader reports under its own epoch), and the cache is cleared. */
  stop(): void {
    if (this.held.length > 0) {
      this.log.info(`dropping ${this.held.length} held reports: leadership ended before they could be published`, {
        count: this.held.length,
      });
      this.held = [];
    }
    this.endWithholding();
    this.reportEncoder.clear();
  }

  /**
   * Reports not published because the lease was not valid or the connection was down: the
   * first of a run is logged as a warning, the rest only counted (with 50,000 clients they
   * come by the thousand), and the count is logged when publishing works again.
   */
  private withheld: { reason: string; count: number } | null = null;

  private withhold(reason: string, body: ClientReport): void {
    if (this.withheld?.reason === reason) {
      this.withheld.count += 1;
      return;
    }
    this.endWithholding();
    this.withheld = { reason, count: 1 };
    this.log.warn(`not publishing presence reports: ${reason}`, { report: body.type, subject: body.clientSubject });
  }

  private endWithholding(): void {
    if (this.withheld === null) return;
    const { reason, count } = this.withheld;
    this.withheld = null;
    this.log.info(`presence reports withheld: ${count}`, { reason, count });
  }

  /**
   * Lifecycle reports (everything but NodeState) that could not be published because the
   * lease was unsure or NATS was down. If this leadership goes on (its lease check succeeded,
   * the connection came back in time), they are published in order before anything newer:
   * a NodePresent or NodeDead must not be lost to a short stall. If it ends, they are dropped
   * with it (monitor.stop): another leader reports under its own epoch. A NodeState that
   * could not go out is only counted; the next comes within a state interval.
   */
  private held: ClientReport[] = [];

  /** Why nothing may be published now, or null when it may. */
  private publishBlocked(): string | null {
    return !this.options.leaseIsValid() ? "the lease is no longer valid" : !this.options.isConnected() ? "not connected to NATS" : null;
  }

  /**
   * Publishes a turn's reports, in order, each still checked against the lease when it is
   * sent; those that may not go out are withheld (a lifecycle report is held).
   */
  publish(bodies: ClientReport[], keys: ReportKeys): void {
    const why = this.publishBlocked();
    if (why !== null) {
      this.withholdAll(why, bodies, 0);
      return;
    }
    this.endWithholding();
    this.publishHeld();
    this.emit(bodies, keys);
  }

  /** Withholds `bodies` from `from` on: counted, and a lifecycle report held. */
  private withholdAll(why: string, bodies: readonly ClientReport[], from: number): void {
    for (let i = from; i < bodies.length; i++) {
      const body = bodies[i]!;
      this.withhold(why, body);
      if (body.type !== "NodeState") this.held.push(body);
    }
  }

  /** Publishes the held lifecycle reports, oldest first (the lease was just found valid). */
  private publishHeld(): void {
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    this.log.info(`publishing ${held.length} reports held while they could not be published`, { count: held.length });
    this.emit(held);
  }

  /**
   * Numbers, encodes (as one batch) and publishes reports, in order. The lease is checked
   * again before each report: one that runs out in the middle of a batch stops it there,
   * and the rest are withheld, with no seq taken (they are encoded afresh if published later).
   */
  private emit(bodies: readonly ClientReport[], keys?: ReportKeys): void {
    if (bodies.length === 0) return;
    const epoch = this.options.epoch();
    if (epoch !== this.seqEpoch) {
      this.seqEpoch = epoch;
      this.seq = 0;
    }
    let payloads: Uint8Array[];
    try {
      payloads = this.reportEncoder.encodeAll(bodies, epoch, this.seq + 1, Date.now(), keys);
    } catch (err) {
      // A report that cannot be encoded must not take the others with it: one by one. It
      // takes its seq, as a report that could not be published.
      if (bodies.length > 1) for (const body of bodies) this.emit([body]);
      else {
        this.seq += 1;
        this.log.warn("could not encode a presence report", {
          report: bodies[0]!.type,
          subject: bodies[0]!.clientSubject,
          error: describeError(err),
        });
      }
      return;
    }
    for (let i = 0; i < bodies.length; i++) {
      const why = this.publishBlocked();
      if (why !== null) {
        this.withholdAll(why, bodies, i);
        return;
      }
      this.published(bodies[i]!, payloads[i]!);
    }
  }

  /** Takes the report's seq, publishes its payload and logs it. */
  private published(body: ClientReport, payload: Uint8Array): void {
    this.seq += 1;
    // Changes of liveness are what an operator wants in the log; NodePresent (a takeover
    // brings one per client) and NodeState (one per client every interval) only with debug.
    const routine = body.type === "NodeState" || body.type === "NodePresent";
    if (!routine || this.debug) {
      const fields = { report: body.type, subject: body.clientSubject, state: body.state };
      this.log.log(routine ? "debug" : "info", `${body.type} ${body.clientSubject}`, fields);
    }
    try {
      this.options.nc.publish(this.reportSubject, payload, { headers: this.reportHeaders });
      this.options.metrics?.reportPublished(body.type);
    } catch (err) {
      this.log.warn("could not publish a presence report", { report: body.type, error: describeError(err) });
    }
    // A dead or departed client gets no more reports; registering again brings a NodePresent.
    if (body.type === "NodeDead" || body.type === "NodeLeft") this.reportEncoder.forget(body.clientSubject);
  }
}
