/**
 * A coordinator's rehearsal of a takeover, once, soon after it starts: a throwaway monitor,
 * in an actor system of its own that touches no NATS, loads WARM_UP_CLIENTS made-up clients
 * the way a new leader loads its stored ones (in held parts, then the last one), and their
 * `NodePresent` reports are encoded and dropped.
 *
 * A new leader spawns an actor and encodes a report for every stored client at once, and
 * V8 compiles that code only after it has run some thousands of times: a follower that never
 * led runs its first few thousand at a third of the speed. Spawning 1,000 client actors took
 * 100–150 ms cold, 30 ms once warm; at a takeover of 50,000 that is 100–250 ms of the time
 * until every client is reported. The rehearsal costs about 0.4 s of CPU once, in parts with
 * a turn of the event loop between them, long before the coordinator can lead (it stands for
 * election only after a leader timeout without a leader).
 */
import { createActor, fromCallback, setup, type AnyActorRef } from "xstate";
import { OUTBOX, type Command, type RegistrationRecord } from "../machines/commands.js";
import { monitorMachine, type MonitorSettings } from "../machines/monitor.js";
import type { ClientReport, ReportEncoding } from "../protocol/presence.js";
import { createReportEncoder } from "../protocol/report-encoder.js";

/** Made-up clients of the rehearsal: past the first few thousand, spawning is as fast as it gets. */
export const WARM_UP_CLIENTS = 5000;
/** Clients per part, as a load hands them over (with a turn of the event loop after each). */
const WARM_UP_PART = 1000;

export interface WarmUpResult {
  clients: number;
  /** NodePresent reports the made-up clients' actors sent, all of them encoded. */
  reports: number;
  ms: number;
}

/** Rehearses the load of `clients` stored clients with these settings and report encoding; leaves nothing behind. */
export async function rehearseTakeover(settings: MonitorSettings, encoding: ReportEncoding, clients = WARM_UP_CLIENTS): Promise<WarmUpResult> {
  const started = performance.now();
  const pending: ClientReport[] = [];
  const rehearsal = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) =>
        receive((command) => {
          if (command.type === "report.presence") pending.push(command.report);
        }),
      ),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: OUTBOX },
      { src: "monitor", id: "monitor", input: { settings } },
    ],
  });
  const encoder = createReportEncoder(encoding, "rehearsal", "rehearsal");
  const actor = createActor(rehearsal).start();
  let reports = 0;
  try {
    const monitor = actor.getSnapshot().children.monitor as AnyActorRef | undefined;
    if (monitor === undefined) throw new Error("warm-up: the rehearsal has no monitor");
    for (let from = 0; from < clients; from += WARM_UP_PART) {
      const atMs = Date.now();
      const records: RegistrationRecord[] = [];
      for (let n = from; n < Math.min(clients, from + WARM_UP_PART); n++) records.push({ registration: { subject: `rehearsal.${n}`, metadata: {} }, revision: n + 1, atMs });
      monitor.send({ type: from + WARM_UP_PART < clients ? "REGISTRATIONS_CHUNK" : "REGISTRATIONS_LOADED", records });
      reports += encoder.encodeAll(pending.splice(0), 1, reports + 1, atMs).length;
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    actor.stop();
  }
  return { clients, reports, ms: Math.round(performance.now() - started) };
}
