/**
 * Commands: what the machines ask of the world. Every machine sends them to the actor
 * system's `outbox` actor, which the driver provides (tests provide a recorder), so that
 * machines stay pure and every effect runs at the edge. COMMAND_EXECUTOR says which edge.
 */
import type { AnyActorRef } from "xstate";
import type { ElectionReportBody } from "../protocol/election.js";
import type { ClientReport, Registration } from "../protocol/presence.js";

export const OUTBOX = "outbox";

export type ElectionCommand =
  | { type: "lease.create" }
  | { type: "lease.renew"; epoch: number; revision: number }
  | { type: "lease.release"; epoch: number; revision: number }
  /** A resigning one may name the successor (a handover); absent, the driver names one (see ElectionDriverOptions.successor). */
  | { type: "heartbeat.publish"; epoch: number; resigning: boolean; successor?: string }
  | { type: "report.publish"; report: ElectionReportBody };

export type MonitorCommand =
  /** Read every stored registration and answer with REGISTRATIONS_LOADED. */
  | { type: "registrations.load" }
  /** Start pulling new registrations and unregistrations from the stream. */
  | { type: "registrations.pull" }
  /** Stop pulling and forget pending pings: leadership ended. */
  | { type: "monitor.stop" }
  /** Answer with one SWEEP: the time, any stall, and every ping reply since the last one. */
  | { type: "replies.collect" }
  /**
   * Ping these clients (one command per shard sweep); replies come back in a later SWEEP,
   * each with the key its ping carried (`keys[i]` is the key of `subjects[i]`).
   */
  | { type: "clients.ping"; subjects: string[]; keys: number[] }
  /** Remove a client's registration, if it is still the one at `revision`. */
  | { type: "registration.remove"; subject: string; revision: number }
  | { type: "report.presence"; report: ClientReport }
  /** The NodeState reports one shard sweep found due, in order, with their clients' keys (`keys[i]` is the key of `reports[i]`'s client). */
  | { type: "reports.state"; reports: ClientReport[]; keys: number[] };

export type Command = ElectionCommand | MonitorCommand;

/**
 * Who executes each command: the election driver (src/election/election-driver.ts) or the
 * presence edge (src/presence/presence-edge.ts). The coordinator's outbox router reads this
 * one list; a new command does not compile until it is given a side here.
 */
export const COMMAND_EXECUTOR = {
  "lease.create": "election",
  "lease.renew": "election",
  "lease.release": "election",
  "heartbeat.publish": "election",
  "report.publish": "election",
  "registrations.load": "presence",
  "registrations.pull": "presence",
  "monitor.stop": "presence",
  "replies.collect": "presence",
  "clients.ping": "presence",
  "registration.remove": "presence",
  "report.presence": "presence",
  "reports.state": "presence",
} as const satisfies Record<Command["type"], "election" | "presence">;

/** True for the commands the presence edge executes (the monitor's, shards' and client actors'). */
export function isMonitorCommand(command: Command): command is MonitorCommand {
  return COMMAND_EXECUTOR[command.type] === "presence";
}

/** Sends each command to the side that executes it (COMMAND_EXECUTOR). */
export function routeCommands(sides: {
  election: (command: ElectionCommand) => void;
  presence: (command: MonitorCommand) => void;
}): (command: Command) => void {
  return (command) => (isMonitorCommand(command) ? sides.presence(command) : sides.election(command));
}

/** A stored registration, as the monitor receives it. */
export interface RegistrationRecord {
  registration: Registration;
  /** KV revision of the stored entry. */
  revision: number;
  /** Wall-clock ms of the registration (or of loading it): the client's first activity. */
  atMs: number;
}

/** The target of every command: the system's outbox actor (use with `sendTo(outbox, ...)`). */
export const outbox = ({ system }: { system: { get: (id: string) => AnyActorRef | undefined } }): AnyActorRef => {
  const ref = system.get(OUTBOX);
  if (ref === undefined) throw new Error("machines: no outbox actor in this actor system");
  return ref;
};
