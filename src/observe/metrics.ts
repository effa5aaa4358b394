/**
 * `run --metrics-port`: Prometheus metrics (prom-client) and health endpoints over plain
 * HTTP, on loopback unless told otherwise.
 *
 * - `/metrics`: Prometheus text. Each coordinator has its own prom-client Registry (never
 *   the global one), so several coordinators in one process (tests, the demo) stay apart.
 * - `/healthz`: 200 while the process runs and its NATS connection is up, 503 otherwise.
 * - `/readyz`: 200 when the lease bucket, the registration bucket and the registration
 *   stream answer JetStream within a short timeout; the answer is cached for a second so
 *   that a busy prober cannot hammer JetStream.
 *
 * The edge feeds it through `MetricsSink` (the driver and the presence edge call it; the
 * machines know nothing of it). The hot path (a ping, a reply, a report) only bumps a
 * counter or observes a histogram with a fixed set of labels. What is cheaper to read
 * than to count (role, epoch, clients by state, connection) is read when scraped.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CoordinatorView } from "../coordinator/view.js";
import type { ElectionReportBody, ElectionReportType } from "../protocol/election.js";
import type { ClientState, RegistrationRefusal, ReportType } from "../protocol/presence.js";
import { describeError, type Logger } from "./logger.js";

export const DEFAULT_METRICS_HOST = "127.0.0.1";

/** What the edge tells the metrics; every method is a counter bump or one observation. */
export interface MetricsSink {
  /** Every transition the election machine reported, published or not (role, failovers). */
  electionTransition(body: ElectionReportBody): void;
  /** A report (election or presence) went out on NATS. */
  reportPublished(type: ElectionReportType | ReportType): void;
  /** Pings sent (one shard sweep's at a time). */
  pingSent(count?: number): void;
  /** A ping got no reply before the next one went out (or no responders). */
  pingFailed(): void;
  /** A sweep came this many ms late: the event loop was stalled, and verdicts were deferred. */
  sweepStalled(stalledMs: number): void;
  /** A ping's round trip, in milliseconds. */
  pingReplied(rttMs: number): void;
  /** A registration was refused (its reason code), or could not be stored ("store-failed"). */
  registrationError(reason: RegistrationRefusal | "store-failed" | "max-clients"): void;
}

/** What only the running coordinator can tell; read when scraped or probed. */
export interface MetricsSource {
  /** The coordinator's read model: epoch, connection, clients. */
  view: CoordinatorView;
  /** Throws, naming the resource, when one of the coordinator's JetStream resources does not answer. */
  checkReady(timeoutMs: number): Promise<void>;
}

const ROLES = ["follower", "candidate", "leader", "stopped"] as const;
type Role = (typeof ROLES)[number];
const CLIENT_STATES: readonly ClientState[] = ["alive", "suspect", "dead", "left"];
/** Records, so that the compiler tells when a report type or refusal reason is added. */
const REPORT_TYPE_NAMES: Record<ElectionReportType | ReportType, true> = {
  BecameFollower: true,
  FollowingLeader: true,
  BecameCandidate: true,
  BecameLeader: true,
  SteppedDown: true,
  Stopped: true,
  NodePresent: true,
  NodeSuspect: true,
  NodeRecovered: true,
  NodeDead: true,
  NodeLeft: true,
  NodeState: true,
};
const REGISTRATION_ERRORS: Record<RegistrationRefusal | "store-failed" | "max-clients", true> = {
  "too-large": true,
  "not-json": true,
  "not-an-object": true,
  "missing-subject": true,
  "empty-subject": true,
  "too-long": true,
  whitespace: true,
  wildcard: true,
  "empty-token": true,
  "reserved-prefix": true,
  "coordinator-subject": true,
  "store-failed": true,
  "max-clients": true,
};
/** Round trips on loopback are ~0.1 ms; a ping that takes a second is about to fail. */
export const PING_RTT_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** How long a /readyz answer is reused. */
const READY_CACHE_MS = 1000;
/** How long /readyz waits for JetStream. */
const READY_TIMEOUT_MS = 1500;

export interface CoordinatorMetricsOptions {
  clusterId: string;
  coordinatorId: string;
  version: string;
  /** Also prom-client's process and Node.js metrics (CPU, memory, GC, handles); default true. */
  defaultMetrics?: boolean;
}

/** One coordinator's metrics, on a registry of its own. */
export class CoordinatorMetrics implements MetricsSink {
  readonly registry = new Registry();
  private source: MetricsSource | null = null;
  private role: Role | null = null;
  private leaderEpoch = 0;
  private readonly failovers: Counter;
  private readonly pingsSent: Counter;
  private readonly pingsFailed: Counter;
  private readonly stalls: Counter;
  private readonly stalledSeconds: Counter;
  private readonly rtt: Histogram;
  /** Children bound once per label value, so the hot path does no label lookup. */
  private readonly reportChildren: Map<string, { inc(): void }> = new Map();
  private readonly registrationChildren: Map<string, { inc(): void }> = new Map();
  private readonly loopDelay: IntervalHistogram;

  constructor(options: CoordinatorMetricsOptions) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ cluster_id: options.clusterId, coordinator_id: options.coordinatorId });
    new Gauge({
      name: "presence_coordinator_info",
      help: "Always 1; the labels say which version runs",
      labelNames: ["version"],
      registers,
    }).set({ version: options.version }, 1);
    const roleGauge = new Gauge({
      name: "presence_role",
      help: "1 for this coordinator's current election role, 0 for the others",
      labelNames: ["role"],
      registers,
      collect: () => {
        for (const r of ROLES) roleGauge.set({ role: r }, this.role === r ? 1 : 0);
      },
    });
    const epochGauge = new Gauge({
      name: "presence_epoch",
      help: "Epoch of the leader this coordinator knows (its own while it leads); 0 when it knows none",
      registers,
      collect: () => {
        if (this.source) epochGauge.set(this.source.view.epoch);
      },
    });
    const ledGauge = new Gauge({
      name: "presence_partitions_led",
      help: "Partitions this coordinator leads with a valid lease (0 or 1 with one partition); summed over the coordinators, the cluster's partitions",
      registers,
      collect: () => {
        if (this.source) ledGauge.set(this.source.view.partitions().filter((p) => p.leads).length);
      },
    });
    const partitionEpochGauge = new Gauge({
      name: "presence_partition_epoch",
      help: "Epoch of each partition's leader as this coordinator knows it (its own where it leads); only partitions it knows an epoch of",
      labelNames: ["partition"],
      registers,
      collect: () => {
        // At most MAX_PARTITIONS series; a partition whose epoch is no longer known drops out.
        partitionEpochGauge.reset();
        for (const p of this.source?.view.partitions() ?? []) {
          if (p.epoch > 0) partitionEpochGauge.set({ partition: String(p.partition) }, p.epoch);
        }
      },
    });
    this.failovers = new Counter({
      name: "presence_failovers_total",
      help: "Times this coordinator saw leadership pass to a new epoch after it had known a leader (crashes and handoffs)",
      registers,
    });
    const connectedGauge = new Gauge({
      name: "presence_nats_connected",
      help: "1 while the NATS connection is up",
      registers,
      collect: () => {
        connectedGauge.set(this.source?.view.connected === true ? 1 : 0);
      },
    });
    const clientsGauge = new Gauge({
      name: "presence_clients",
      help: "Monitored clients by state (non-zero on the leader only)",
      labelNames: ["state"],
      registers,
      collect: () => {
        const counts: Partial<Record<ClientState, number>> = {};
        for (const c of this.source?.view.clients() ?? []) counts[c.state] = (counts[c.state] ?? 0) + 1;
        for (const s of CLIENT_STATES) clientsGauge.set({ state: s }, counts[s] ?? 0);
      },
    });
    this.pingsSent = new Counter({ name: "presence_pings_sent_total", help: "Pings sent to clients", registers });
    this.pingsFailed = new Counter({
      name: "presence_pings_failed_total",
      help: "Pings that got no reply before the next ping of their client went out (or found no responder)",
      registers,
    });
    this.stalls = new Counter({
      name: "presence_sweep_stalls_total",
      help: "Sweeps that came late because the event loop was stalled; each deferred its verdicts",
      registers,
    });
    this.stalledSeconds = new Counter({
      name: "presence_sweep_stalled_seconds_total",
      help: "Time the leader's event loop was stalled before late sweeps, which did not count against any client",
      registers,
    });
    this.rtt = new Histogram({
      name: "presence_ping_rtt_seconds",
      help: "Round trip of answered pings",
      buckets: PING_RTT_BUCKETS_SECONDS,
      registers,
    });
    const reports = new Counter({
      name: "presence_reports_published_total",
      help: "Reports published, election and presence, by type",
      labelNames: ["type"],
      registers,
    });
    for (const type of Object.keys(REPORT_TYPE_NAMES)) {
      reports.inc({ type }, 0); // every series exists from the start, at 0
      this.reportChildren.set(type, reports.labels({ type }));
    }
    const registrationErrors = new Counter({
      name: "presence_registration_errors_total",
      help: "Registrations refused (by reason code) or not stored (store-failed)",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of Object.keys(REGISTRATION_ERRORS)) {
      registrationErrors.inc({ reason }, 0);
      this.registrationChildren.set(reason, registrationErrors.labels({ reason }));
    }
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    const loopGauge = new Gauge({
      name: "presence_event_loop_delay_seconds",
      help: "Event-loop delay since the previous scrape: median, 99th percentile and maximum",
      labelNames: ["quantile"],
      registers,
      collect: () => {
        const h = this.loopDelay;
        // An empty histogram reports absurd values; report 0 until something was sampled.
        const ok = h.count > 0;
        loopGauge.set({ quantile: "0.5" }, ok ? h.percentile(50) / 1e9 : 0);
        loopGauge.set({ quantile: "0.99" }, ok ? h.percentile(99) / 1e9 : 0);
        loopGauge.set({ quantile: "1" }, ok ? h.max / 1e9 : 0);
        h.reset();
      },
    });
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Connects the metrics to the running coordinator. */
  attach(view: CoordinatorView, checkReady: MetricsSource["checkReady"]): void {
    this.source = { view, checkReady };
  }

  get attached(): MetricsSource | null {
    return this.source;
  }

  electionTransition(body: ElectionReportBody): void {
    this.role = body.state;
    if ((body.type === "BecameLeader" || body.type === "FollowingLeader") && body.epoch > this.leaderEpoch) {
      if (this.leaderEpoch > 0) this.failovers.inc();
      this.leaderEpoch = body.epoch;
    }
  }

  reportPublished(type: ElectionReportType | ReportType): void {
    this.reportChildren.get(type)?.inc();
  }

  pingSent(count = 1): void {
    if (count > 0) this.pingsSent.inc(count);
  }

  sweepStalled(stalledMs: number): void {
    this.stalls.inc();
    this.stalledSeconds.inc(stalledMs / 1000);
  }

  pingFailed(): void {
    this.pingsFailed.inc();
  }

  pingReplied(rttMs: number): void {
    this.rtt.observe(rttMs / 1000);
  }

  registrationError(reason: RegistrationRefusal | "store-failed"): void {
    this.registrationChildren.get(reason)?.inc();
  }

  /** The Prometheus text of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops the event-loop sampler. */
  close(): void {
    this.loopDelay.disable();
  }
}

/** The metrics server could not start. */
export class MetricsServerError extends Error {
  override readonly name = "MetricsServerError";
}

export interface MetricsServerOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  metrics: CoordinatorMetrics;
  logger: Logger;
}

/** The HTTP server of `/metrics`, `/healthz` and `/readyz`. */
export class MetricsServer {
  private ready: { at: number; answer: Promise<{ ok: boolean; detail: string }> } | null = null;

  private constructor(
    private readonly http: Server,
    private readonly options: MetricsServerOptions,
    readonly url: string,
  ) {}

  /** Listens before the coordinator connects, so that a port in use stops the start at once. */
  static async start(options: MetricsServerOptions): Promise<MetricsServer> {
    const { host, port, logger } = options;
    const http = createServer();
    await new Promise<void>((resolve, reject) => {
      http.once("error", (err: NodeJS.ErrnoException) => {
        reject(
          new MetricsServerError(
            err.code === "EADDRINUSE"
              ? `metrics: port ${port} on ${host} is in use; pass another with --metrics-port`
              : `metrics: cannot listen on ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        );
      });
      http.listen(port, host, () => resolve());
    });
    const address = http.address() as AddressInfo;
    const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    const server = new MetricsServer(http, options, `http://${shownHost}:${address.port}/metrics`);
    http.on("request", (req, res) => server.handle(req, res));
    const log = logger.child({ component: "metrics" });
    log.info("metrics listening", { url: server.url });
    if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) {
      log.warn("the metrics endpoint listens beyond loopback; it has no authentication", { host });
    }
    return server;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    const { metrics } = this.options;
    switch (path) {
      case "/metrics":
        metrics.text().then(
          (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
          (err: unknown) => {
            this.options.logger.warn("metrics: collecting failed", { error: describeError(err) });
            res.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${describeError(err)}\n`);
          },
        );
        return;
      case "/healthz": {
        const source = metrics.attached;
        const connected = source?.view.connected === true;
        const body = {
          status: connected ? "ok" : source ? "nats-disconnected" : "starting",
          nats: connected ? "connected" : "disconnected",
        };
        res.writeHead(connected ? 200 : 503, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
        return;
      }
      case "/readyz":
        void this.readiness().then(({ ok, detail }) => {
          res
            .writeHead(ok ? 200 : 503, { "content-type": "application/json" })
            .end(`${JSON.stringify({ status: ok ? "ready" : "not-ready", detail })}\n`);
        });
        return;
      default:
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /healthz or /readyz\n");
    }
  }

  /** The readiness answer, from JetStream at most once a second. */
  private readiness(): Promise<{ ok: boolean; detail: string }> {
    const now = performance.now();
    if (this.ready !== null && now - this.ready.at < READY_CACHE_MS) return this.ready.answer;
    const source = this.options.metrics.attached;
    const answer =
      source === null
        ? Promise.resolve({ ok: false, detail: "starting: not connected to NATS yet" })
        : !source.view.connected
          ? Promise.resolve({ ok: false, detail: "not connected to NATS" })
          : source.checkReady(READY_TIMEOUT_MS).then(
              () => ({ ok: true, detail: "lease bucket, registration bucket and stream reachable" }),
              (err: unknown) => ({ ok: false, detail: describeError(err) }),
            );
    this.ready = { at: now, answer };
    return answer;
  }

  async stop(): Promise<void> {
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.options.metrics.close();
  }
}
