/** `presence-coordinator status`: the cluster's leader (each partition's, with several), epoch, coordinators and client counts. */
import { Command, Option } from "commander";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { NatsSecurity } from "../../config/security.js";
import { connectFailure, connectionOptions } from "../../nats/connection.js";
import { collectStatus, StatusError } from "../../observe/query/status.js";
import { formatStatus } from "../print/status.js";
import { exitOnUsageError, fail } from "../exit.js";
import {
  addSecurityOptions,
  clusterIdOption,
  configOption,
  connectionFrom,
  connectTimeoutOption,
  natsUrlOption,
  wholeNumber,
  type ConnectionFlags,
} from "../flags.js";

/** `status`: asks every coordinator, prints, and exits 0 when a leader answered. */
export function statusCommand(): Command {
  const status = new Command("status")
    .description("print the cluster's leader, epoch, coordinators and client counts, per partition with several (from the query service)")
    .addOption(natsUrlOption())
    .addOption(clusterIdOption())
    .addOption(new Option("--json", "print one JSON object instead of text").default(false))
    .addOption(new Option("--timeout <ms>", "how long to wait for the coordinators' answers").argParser(wholeNumber).default(2000))
    .addOption(connectTimeoutOption());
  addSecurityOptions(status)
    .addOption(configOption())
    .action(async (flags: ConnectionFlags & { json: boolean; timeout: number }) => {
      const { urls, security } = connectionFrom(flags);
      try {
        process.exitCode = await runStatus({
          urls,
          clusterId: flags.clusterId,
          json: flags.json === true,
          timeoutMs: Math.max(1, flags.timeout),
          connectTimeoutMs: flags.connectTimeout,
          security,
          out: process.stdout,
          err: process.stderr,
        });
      } catch (err) {
        fail(err);
      }
    });
  return exitOnUsageError(status);
}

export interface StatusOptions {
  urls: string[];
  clusterId: string;
  json: boolean;
  /** How long to wait for answers, ms. */
  timeoutMs: number;
  connectTimeoutMs: number;
  security?: NatsSecurity;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** Runs the command; resolves to the exit code (0, or 1 when no coordinator answered). */
export async function runStatus(options: StatusOptions): Promise<number> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      timeout: options.connectTimeoutMs,
      name: "presence-coordinator status",
      ...connectionOptions(options.urls, options.security),
    });
  } catch (err) {
    throw connectFailure(options.urls, err, options.security);
  }
  try {
    const status = await collectStatus(nc, options.clusterId, options.timeoutMs);
    options.out.write(options.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
    return 0;
  } catch (err) {
    if (!(err instanceof StatusError)) throw err;
    options.err.write(`presence-coordinator status: ${err.message}\n`);
    return 1;
  } finally {
    await nc.close();
  }
}
