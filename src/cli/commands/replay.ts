/** `presence-coordinator replay`: a record log replayed through the machines, or checked against them. */
import { Command, InvalidArgumentError, Option } from "commander";
import { readRecordLog } from "../../observe/record/record-log.js";
import { isReport, replayLog } from "../../observe/record/replay.js";
import { formatActors, formatCommand, formatDivergence } from "../print/replay.js";
import { exitOnUsageError, fail } from "../exit.js";

/** `replay <file>`: exits 1 at the first difference with --check. */
export function replayCommand(): Command {
  const replay = new Command("replay")
    .description("replay a record log (run --record) through the machines and print the commands and reports they produce")
    .argument("<file>", "the record log")
    .addOption(new Option("--json", "print JSON lines instead of text").default(false))
    .addOption(new Option("--check", "compare every command with the recorded one; exit 1 at the first difference").default(false))
    .addOption(
      new Option("--until <ms>", "stop at this time (ms since the recording started) and print every actor's state").argParser((v) => {
        const n = Number(v);
        if (v.trim() === "" || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError("must be a number of milliseconds.");
        return n;
      }),
    )
    .action(async (file: string, flags: { json: boolean; check: boolean; until?: number }) => {
      // `replay log | head`: a reader that went away is not an error.
      process.stdout.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
        fail(err);
      });
      try {
        process.exitCode = await runReplay({
          file,
          json: flags.json === true,
          check: flags.check === true,
          ...(flags.until !== undefined ? { until: flags.until } : {}),
          out: process.stdout,
          err: process.stderr,
        });
      } catch (err) {
        fail(err);
      }
    });
  return exitOnUsageError(replay);
}

export interface RunReplayOptions {
  file: string;
  json: boolean;
  check: boolean;
  until?: number;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** The replay command; resolves to the exit code (0 ok, 1 replay differs from the log). Throws RecordLogError. */
export async function runReplay(options: RunReplayOptions): Promise<number> {
  const log = await readRecordLog(options.file);
  const result = replayLog(log, { check: options.check, ...(options.until !== undefined ? { until: options.until } : {}) });
  const { out } = options;
  if (options.check) {
    if (result.divergence !== null) {
      if (options.json) out.write(`${JSON.stringify({ kind: "divergence", ...result.divergence })}\n`);
      else options.err.write(`${formatDivergence(result.divergence, options.file)}\n`);
      return 1;
    }
    const reports = result.produced.filter((c) => isReport(c.command)).length;
    const several = result.partitions > 1;
    const summary = {
      kind: "check",
      file: options.file,
      ...(several ? { partitions: result.partitions } : {}),
      entries: result.entries,
      commands: result.produced.length,
      reports,
      matches: true,
    };
    out.write(
      options.json
        ? `${JSON.stringify(summary)}\n`
        : `${options.file}: ${result.entries} entries replayed${several ? ` through ${result.partitions} partitions' actor systems` : ""}; all ${result.produced.length} commands (${reports} reports) match the log\n`,
    );
  } else if (options.json) {
    for (const c of result.produced) out.write(`${JSON.stringify(c)}\n`);
  } else {
    // replies.collect says nothing but "a sweep interval passed" and comes 20 times a second:
    // the text leaves it out and says so first (--json has every command).
    const collects = result.produced.filter((c) => c.command.type === "replies.collect").length;
    if (collects > 0) {
      options.err.write(
        `(${collects} replies.collect commands, one per sweep interval of ${log.header.config.sweepIntervalMs} ms, are not shown; --json shows every command)\n`,
      );
    }
    for (const c of result.produced) if (c.command.type !== "replies.collect") out.write(`${formatCommand(c)}\n`);
  }
  if (result.until) {
    out.write(options.json ? `${JSON.stringify({ kind: "actors", ...result.until })}\n` : `${formatActors(result.until)}\n`);
  }
  if (!options.check && result.divergence !== null) {
    options.err.write(`${formatDivergence(result.divergence, options.file)}\n`);
    return 1;
  }
  return 0;
}
