/**
 * Helpers of the stall tests: a real pause of a coordinator process (SIGSTOP, then SIGCONT
 * after a timed wait), a tally of presence reports that stays cheap with thousands of
 * clients, and a scrape of one Prometheus counter.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeReport, REPORT_HEADERS, type Report } from "../src/protocol/presence.js";
import { waitFor, type CoordinatorProcess } from "./coordinators.js";

/** One pause of a process, in wall-clock ms (the clock the coordinators stamp reports with). */
export interface Pause {
  /** Just after SIGSTOP was sent. */
  stoppedAt: number;
  /** Just before SIGCONT was sent. */
  contAt: number;
}

/**
 * Stops `proc` for `ms` (SIGSTOP, then SIGCONT): its timers fire late and what arrives for
 * it waits in its sockets, as in a long GC pause or CPU starvation. The process is always
 * continued, even if the wait is interrupted.
 */
export async function pauseProcess(proc: CoordinatorProcess, ms: number): Promise<Pause> {
  proc.signal("SIGSTOP");
  const stoppedAt = Date.now();
  let contAt = stoppedAt;
  try {
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    contAt = Date.now();
    proc.signal("SIGCONT");
  }
  return { stoppedAt, contAt };
}

/** A presence report as the tally keeps it: when it arrived (performance.now()) and what it said. */
export interface TalliedReport {
  at: number;
  report: Report;
}

/**
 * Every presence report of a cluster, on a connection of its own, with an index per client
 * subject, so that waiting on thousands of clients costs one map look-up each.
 */
export class ReportTally {
  readonly seen: TalliedReport[] = [];
  private readonly bySubject = new Map<string, TalliedReport[]>();

  private constructor(readonly nc: NatsConnection) {}

  static async start(url: string, cluster: string): Promise<ReportTally> {
    const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const tally = new ReportTally(nc);
    nc.subscribe(`presence.report.${cluster}`, {
      callback: (_e, m) => {
        const seen = { at: performance.now(), report: decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding)) };
        tally.seen.push(seen);
        const subject = seen.report.clientSubject;
        const list = tally.bySubject.get(subject);
        if (list) list.push(seen);
        else tally.bySubject.set(subject, [seen]);
      },
    });
    await nc.flush();
    return tally;
  }

  /** The reports about one client, in arrival order. */
  of(subject: string): readonly TalliedReport[] {
    return this.bySubject.get(subject) ?? [];
  }

  /** True once some report about `subject` satisfies `match`. */
  has(subject: string, match: (r: Report) => boolean): boolean {
    return this.of(subject).some((s) => match(s.report));
  }

  /** The reports of a type about any of `subjects`, as "type subject coordinator epoch ts" lines. */
  describe(type: string, subjects: Iterable<string>): string[] {
    const out: string[] = [];
    for (const subject of subjects) {
      for (const { report: r } of this.of(subject)) {
        if (r.type === type) out.push(`${r.type} ${r.clientSubject} from ${r.coordinatorId} epoch ${r.epoch} ts ${r.ts}`);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/** The `metrics listening` URL a coordinator started with `--metrics-port 0` logged. */
export async function metricsUrl(proc: CoordinatorProcess, timeoutMs = 10_000): Promise<string> {
  const line = await waitFor("the metrics URL in the log", () => proc.logs().find((l) => l.message === "metrics listening"), timeoutMs);
  return String(line.url);
}

/** The value of the first sample named `name` (whatever its labels), or undefined if the scrape has none. */
export async function scrapeValue(url: string, name: string): Promise<number | undefined> {
  const res = await fetch(url);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`metrics scrape of ${url} answered ${res.status}: ${text}`);
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) return Number(m[2]);
  }
  return undefined;
}
