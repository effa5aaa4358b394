/** How a command ends: exit codes, the error line, signals, and commander's usage errors. */
import type { Command } from "commander";
import { ConfigError } from "../config/config.js";
import { redactUrlsIn } from "../nats/url.js";
import { describeError } from "../observe/logger.js";
import { RecordLogError } from "../observe/record/record-log.js";

/** Exit codes: 0 clean stop, 1 failure while running, 2 bad flags or configuration. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** Prints why the command stops (any URL in it redacted) and exits: 2 for bad flags, else 1. */
export function fail(err: unknown): never {
  if (err instanceof ConfigError || err instanceof RecordLogError) {
    process.stderr.write(`presence-coordinator: ${redactUrlsIn(err.message)}\n`);
    process.exit(EXIT_USAGE);
  }
  process.stderr.write(`presence-coordinator: ${redactUrlsIn(describeError(err))}\n`);
  process.exit(EXIT_FAILURE);
}

/**
 * Handles SIGTERM and SIGINT from before startup: the first one stops what `starting`
 * started (once it has started) and exits 0; a second one exits at once. So a signal that
 * arrives while connecting still stops an embedded nats-server.
 */
export function stopOnSignals(starting: Promise<() => Promise<void>>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`presence-coordinator: ${signal} again, exiting without waiting\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    starting
      .then((stop) => stop())
      .then(
        () => process.exit(0),
        (err: unknown) => fail(err),
      );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** Commander's own errors (unknown flag, bad value, missing option) exit with the usage code. */
export function exitOnUsageError(cmd: Command): Command {
  return cmd.exitOverride((err) => {
    const clean = err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help";
    process.exit(clean ? 0 : EXIT_USAGE);
  });
}
