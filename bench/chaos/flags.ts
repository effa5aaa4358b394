/**
 * The flags of `npm run chaos`, checked before anything starts (exit 2 with the usage on a
 * bad one), and the command line that reproduces the run.
 */
import { parseArgs } from "node:util";
import { MAX_SEED, newSeed } from "../../src/machines/random.js";
import { MAX_PARTITIONS } from "../../src/protocol/partition.js";

export interface ChaosFlags {
  quick: boolean;
  /** Seconds of faults. */
  durationS: number;
  seed: number;
  clientCount: number;
  /** Partitions every coordinator runs (`--partitions`); 1 is the unpartitioned run. */
  partitions: number;
  /** Where to write the results as JSON, if anywhere. */
  json: string | undefined;
  /** Where to write everything judged (reports, heartbeats, actions, coordinator events) as JSON, to study a failure offline. */
  record: string | undefined;
  /** The command that runs the same schedule again. */
  reproduce: string;
}

const usage = (message: string): never => {
  process.stderr.write(
    `chaos: ${message}\nusage: npm run chaos -- [--quick] [--duration <s>] [--seed <n>] [--clients <n>] [--partitions <n>] [--json <file>] [--record <file>]\n`,
  );
  process.exit(2);
};

export function parseChaosFlags(): ChaosFlags {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      seed: { type: "string" },
      clients: { type: "string" },
      partitions: { type: "string" },
      json: { type: "string" },
      record: { type: "string" },
    },
  });
  const durationS = values.duration !== undefined ? Number(values.duration) : values.quick ? 60 : 300;
  if (!Number.isFinite(durationS) || durationS < 10) usage("--duration must be a number of seconds, at least 10");
  const seed = values.seed !== undefined ? Number(values.seed) : newSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) usage(`--seed must be a whole number from 0 to ${MAX_SEED}`);
  const clientCount = values.clients !== undefined ? Number(values.clients) : 300;
  if (!Number.isInteger(clientCount) || clientCount < 10) usage("--clients must be a whole number of at least 10");
  const partitions = values.partitions !== undefined ? Number(values.partitions) : 1;
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS)
    usage(`--partitions must be a whole number from 1 to ${MAX_PARTITIONS}`);

  const reproduce = [
    `npm run chaos -- --seed ${seed}`,
    values.quick && values.duration === undefined ? " --quick" : "",
    values.duration !== undefined ? ` --duration ${values.duration}` : "",
    values.clients !== undefined ? ` --clients ${values.clients}` : "",
    partitions > 1 ? ` --partitions ${partitions}` : "",
  ].join("");
  return { quick: values.quick, durationS, seed, clientCount, partitions, json: values.json, record: values.record, reproduce };
}
