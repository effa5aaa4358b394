/** The machines that get a chart, by the name of their diagram in `visualizations/`. */
import { clientMachine } from "../machines/client.js";
import { electionMachine } from "../machines/election.js";
import { monitorMachine } from "../machines/monitor.js";
import { shardMachine } from "../machines/shard.js";

export const MACHINES = {
  election: electionMachine,
  monitor: monitorMachine,
  shard: shardMachine,
  client: clientMachine,
} as const;

export type MachineName = keyof typeof MACHINES;

export const MACHINE_NAMES: MachineName[] = Object.keys(MACHINES) as MachineName[];
