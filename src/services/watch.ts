/**
 * `presence-coordinator watch`: prints every presence report of a cluster, one per line,
 * whichever encoding the leader publishes (the Presence-Encoding header says which).
 */
import { connect } from "@nats-io/transport-node";
import { decodeReport, presenceSubjects, REPORT_HEADERS, type Report } from "../protocol/presence.js";
import { describeError } from "./logger.js";
import { NatsConnectError } from "./nats.js";

export interface WatchOptions {
  urls: string[];
  clusterId: string;
  json: boolean;
  connectTimeoutMs: number;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

const time = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** One human-readable line per report. */
export function formatReport(r: Report): string {
  const meta = Object.keys(r.metadata).length > 0 ? `  ${JSON.stringify(r.metadata)}` : "";
  const seen = r.lastSeenMs > 0 ? time(r.lastSeenMs) : "-";
  return (
    `${time(r.ts)}  ${r.type.padEnd(13)} ${r.clientSubject}  ${r.state}` +
    `  lastSeen=${seen} rtt=${r.rttMs}ms missed=${r.missedPings}` +
    `  leader=${r.coordinatorId} epoch=${r.epoch} seq=${r.seq}${meta}`
  );
}

/** Starts printing; resolves to a function that stops. */
export async function runWatch(options: WatchOptions): Promise<() => Promise<void>> {
  let nc;
  try {
    nc = await connect({ servers: options.urls, timeout: options.connectTimeoutMs, maxReconnectAttempts: -1, name: "presence-coordinator watch" });
  } catch (err) {
    throw new NatsConnectError(`cannot connect to NATS at ${options.urls.join(", ")}: ${describeError(err)}`, { cause: err });
  }
  nc.subscribe(presenceSubjects.report(options.clusterId), {
    callback: (_e, m) => {
      let report: Report;
      try {
        report = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding));
      } catch (err) {
        options.err.write(`presence-coordinator watch: skipped an unreadable report: ${describeError(err)}\n`);
        return;
      }
      options.out.write(`${options.json ? JSON.stringify(report) : formatReport(report)}\n`);
    },
  });
  await nc.flush();
  options.err.write(`presence-coordinator watch: reports of cluster "${options.clusterId}" on ${nc.getServer()} (Ctrl-C stops)\n`);
  return async () => {
    await nc.drain();
  };
}
