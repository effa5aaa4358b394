/**
 * The flags of `npm run chaos`, checked before anything starts (exit 2 with the usage on a
 * bad one), and the command line that reproduces the run.
 */
import { parseArgs } from "node:util";
import { MAX_SEED, newSeed } from "../../src/machines/random.js";

export interface ChaosFlags {
  quick: boolean;
  /** Seconds of faults. */
  durationS: number;
  seed: number;
  clientCount: number;
  /** Where to write the results as JSON, if anywhere. */
  json: string | undefined;
  /** The command that runs the same schedule again. */
  reproduce: string;
}

const usage = (message: string): never => {
  process.stderr.write(
    `chaos: ${message}\nusage: npm run chaos -- [--quick] [--duration <s>] [--seed <n>] [--clients <n>] [--json <file>]\n`,
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
      json: { type: "string" },
    },
  });
  const durationS = values.duration !== undefined ? Number(values.duration) : values.quick ? 60 : 300;
  if (!Number.isFinite(durationS) || durationS < 10) usage("--duration must be a number of seconds, at least 10");
  const seed = values.seed !== undefined ? Number(values.seed) : newSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) usage(`--seed must be a whole number from 0 to ${MAX_SEED}`);
  const clientCount = values.clients !== undefined ? Number(values.clients) : 300;
  if (!Number.isInteger(clientCount) || clientCount < 10) usage("--clients must be a whole number of at least 10");

  const reproduce = [
    `npm run chaos -- --seed ${seed}`,
    values.quick && values.duration === undefined ? " --quick" : "",
    values.duration !== undefined ? ` --duration ${values.duration}` : "",
    values.clients !== undefined ? ` --clients ${values.clients}` : "",
  ].join("");
  return { quick: values.quick, durationS, seed, clientCount, json: values.json, reproduce };
}
