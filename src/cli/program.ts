/**
 * The command line: one program with a command per file (src/cli/commands/), the flags they
 * share in src/cli/flags.ts, and `--config` applied before a command parses its flags.
 */
import { Command } from "commander";
import { applyConfigFile, findConfigPath } from "../config/config-file.js";
import { PACKAGE_VERSION } from "../version.js";
import { devCommand } from "./commands/dev.js";
import { replayCommand } from "./commands/replay.js";
import { runCommand } from "./commands/run.js";
import { statusCommand } from "./commands/status.js";
import { watchCommand } from "./commands/watch.js";
import { exitOnUsageError, fail } from "./exit.js";

export function buildProgram(): Command {
  const program = new Command("presence-coordinator")
    .description("Presence and leader-election coordinator on NATS JetStream")
    .version(PACKAGE_VERSION)
    .showHelpAfterError("(run with --help for usage)");
  for (const command of [runCommand(), watchCommand(), statusCommand(), replayCommand(), devCommand()]) program.addCommand(command);
  // `--config <file>` (or PRESENCE_CONFIG): the file's values go in before the subcommand
  // parses its arguments, with the value source "config", so that commander's own parsing
  // lets the command line and then the environment override them, and required options
  // may come from the file.
  program.hook("preSubcommand", (_program, sub) => {
    if (!sub.options.some((o) => o.long === "--config")) return;
    // The program's arguments: the subcommand's name, then everything after it.
    const raw = _program.args;
    const at = raw.indexOf(sub.name());
    try {
      const path = findConfigPath(at >= 0 ? raw.slice(at + 1) : []);
      if (path !== undefined) applyConfigFile(sub, path);
    } catch (err) {
      fail(err);
    }
  });
  return exitOnUsageError(program);
}
