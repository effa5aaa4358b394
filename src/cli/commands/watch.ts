/**
 * `presence-coordinator watch`: prints every presence report of a cluster, one per line,
 * whichever encoding the leader publishes (the Presence-Encoding header says which). Built
 * on the client library's watchPresence, so a report of a stale epoch (an old leader's) is
 * not printed; a line on stderr says it was dropped. Epochs are compared within a
 * partition: each partition has its own leader. Text lines show a partition other than 0 as
 * `[p3]`; JSON lines are the reports as decoded.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { watchPresence } from "../../client/watch-presence.js";
import type { NatsSecurity } from "../../config/security.js";
import { connectFailure, connectionOptions } from "../../nats/connection.js";
import { describeError } from "../../observe/logger.js";
import { formatReport } from "../print/report.js";
import { Command, Option } from "commander";
import { exitOnUsageError, fail, stopOnSignals } from "../exit.js";
import {
  addSecurityOptions,
  clusterIdOption,
  configOption,
  connectionFrom,
  connectTimeoutOption,
  natsUrlOption,
  type ConnectionFlags,
} from "../flags.js";

/** `watch`: prints reports until stopped. */
export function watchCommand(): Command {
  const watch = new Command("watch")
    .description("print every presence report of a cluster, one per line")
    .addOption(natsUrlOption())
    .addOption(clusterIdOption())
    .addOption(new Option("--json", "print JSON lines instead of text").default(false))
    .addOption(connectTimeoutOption());
  addSecurityOptions(watch)
    .addOption(configOption())
    .action(async (flags: ConnectionFlags & { json: boolean }) => {
      const { urls, security } = connectionFrom(flags);
      const starting = runWatch({
        urls,
        clusterId: flags.clusterId,
        json: flags.json === true,
        connectTimeoutMs: flags.connectTimeout,
        security,
        out: process.stdout,
        err: process.stderr,
      });
      stopOnSignals(starting);
      await starting.catch(fail);
    });
  return exitOnUsageError(watch);
}

export interface WatchOptions {
  urls: string[];
  clusterId: string;
  json: boolean;
  connectTimeoutMs: number;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  /** Authentication and TLS (`--user`, `--tls-ca`, ...). */
  security?: NatsSecurity;
}

/** Starts printing; resolves to a function that stops. */
export async function runWatch(options: WatchOptions): Promise<() => Promise<void>> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      timeout: options.connectTimeoutMs,
      maxReconnectAttempts: -1,
      name: "presence-coordinator watch",
      ...connectionOptions(options.urls, options.security),
    });
  } catch (err) {
    throw connectFailure(options.urls, err, options.security);
  }
  // The view's entries are not needed here: no expiry sweep.
  const watch = await watchPresence(nc, { clusterId: options.clusterId, expireAfterMs: 0 });
  watch.on("report", (report) => options.out.write(`${options.json ? JSON.stringify(report) : formatReport(report)}\n`));
  watch.on("error", (err) => options.err.write(`presence-coordinator watch: skipped an unreadable report: ${describeError(err)}\n`));
  watch.on("stale", ({ report, highestEpoch, partition }) =>
    options.err.write(
      `presence-coordinator watch: dropped a ${report.type} of ${report.clientSubject} from ${report.coordinatorId} at stale epoch ${report.epoch}${partition === 0 ? "" : ` of partition ${partition}`} (highest seen ${highestEpoch})\n`,
    ),
  );
  options.err.write(`presence-coordinator watch: reports of cluster "${options.clusterId}" on ${nc.getServer()} (Ctrl-C stops)\n`);
  return async () => {
    await watch.stop();
    await nc.drain();
  };
}
