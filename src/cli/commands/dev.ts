/** `presence-coordinator dev`: the demo on an embedded nats-server. */
import { Command, Option } from "commander";
import { ConfigError, type LogFormat } from "../../config/config.js";
import { runDev } from "../../dev/dev.js";
import { DEFAULT_INSPECT_PORT } from "../../observe/inspect/inspector-server.js";
import type { ReportEncoding } from "../../protocol/presence.js";
import { exitOnUsageError, fail, stopOnSignals } from "../exit.js";
import {
  addTimingOptions,
  inspectHostOption,
  inspectOption,
  inspectSettings,
  inspectStatelyOption,
  logFormatOption,
  timingsFrom,
  wholeNumber,
  type TimingFlags,
} from "../flags.js";

/** `dev`: its flags, then the demo. */
export function devCommand(): Command {
  const dev = new Command("dev")
    .description("demo: an embedded nats-server and three coordinators, printing every election report")
    .addOption(new Option("--coordinators <n>", "how many coordinators to run").argParser(wholeNumber).default(3))
    .addOption(new Option("--clients <n>", "how many demo clients to run").argParser(wholeNumber).default(5))
    .addOption(new Option("--cluster-id <id>", "coordinator cluster id").default("dev"))
    .addOption(
      new Option("--crash-every <s>", "crash the leader this often to show a failover (0: never)").argParser(wholeNumber).default(20),
    )
    .addOption(new Option("--duration <s>", "stop by itself after this long (0: run until Ctrl-C)").argParser(wholeNumber).default(0));
  addTimingOptions(dev)
    .addOption(inspectOption().default(true, String(DEFAULT_INSPECT_PORT)))
    .addOption(new Option("--no-inspect", "do not serve the inspector page"))
    .addOption(inspectHostOption())
    .addOption(inspectStatelyOption())
    .addOption(logFormatOption())
    .addOption(new Option("-v, --verbose", "also print the coordinators' logs").default(false))
    .action(
      async (
        flags: TimingFlags & {
          reportEncoding: ReportEncoding;
          coordinators: number;
          clients: number;
          clusterId: string;
          crashEvery: number;
          duration: number;
          logFormat: LogFormat;
          verbose: boolean;
          inspect: number | boolean;
          inspectHost: string;
          inspectStately: boolean;
        },
      ) => {
        const timings = timingsFrom(flags);
        if (flags.coordinators < 1 || flags.coordinators > 26) fail(new ConfigError("--coordinators", "must be from 1 to 26"));
        const starting = runDev({
          coordinators: flags.coordinators,
          clients: flags.clients,
          clusterId: flags.clusterId,
          timings,
          crashEverySeconds: flags.crashEvery,
          logFormat: flags.logFormat,
          verbose: flags.verbose === true,
          inspect: flags.inspect === false ? null : inspectSettings(flags.inspect, flags.inspectHost, flags.inspectStately === true),
          out: process.stdout,
        });
        stopOnSignals(starting);
        await starting.catch(fail);
        if (flags.duration > 0) {
          setTimeout(() => process.kill(process.pid, "SIGTERM"), flags.duration * 1000);
        }
      },
    );
  return exitOnUsageError(dev);
}
