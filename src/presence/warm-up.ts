/**
 * A rehearsal of a takeover, once per process, soon after its first coordinator starts: a
 * throwaway monitor, in an actor system of its own that touches no NATS, loads
 * WARM_UP_CLIENTS made-up clients the way a new leader loads its stored ones (held parts,
 * then the last one), and their `NodePresent` reports are encoded and dropped.
 *
 * A new leader spawns an actor and encodes a report for every stored client at once, and
 * V8 compiles that code only after it has run some thousands of times: a follower that never
 * led runs its first few thousand at a third of the speed. Spawning 1,000 client actors took
 * 100–150 ms cold, 30 ms once warm; at a takeover of 50,000 that is 100–250 ms of the time
 * until every client is reported. The rehearsal costs about 0.4 s of CPU, in parts with a
 * turn of the event loop between them. It is meant for a follower: it stops between two
 * parts as soon as `proceed` says no (the coordinator stands for election, leads or stops),
 * and then the next coordinator of the process may try again.
 */
import { createActor, fromCallback, setup, type AnyActorRef } from "xstate";
import { OUTBOX, type Command, type RegistrationRecord } from "../machines/commands.js";
import { monitorMachine, type MonitorSettings } from "../machines/monitor.js";
import type { ClientReport, ReportEncoding } from "../protocol/presence.js";
import { createReportEncoder } from "../protocol/report-encoder.js";

/** Made-up clients of the rehearsal: past the first few thousand, spawning is as fast as it gets. */
export const WARM_UP_CLIENTS = 5000;
/**
 * Clients per part. A load hands them over in parts of 2,000 (LOAD_CHUNK), once its code is
 * compiled; cold, a part of 1,000 already holds the event loop for 100–150 ms.
 */
const WARM_UP_PART = 1000;

export interface WarmUpResult {
  /** Made-up clients loaded: fewer than asked when `proceed` stopped it. */
  clients: number;
  /** NodePresent reports their actors sent, all of them encoded. */
  reports: number;
  ms: number;
  completed: boolean;
}

/**
 * Rehearses the load of `clients` stored clients with these settings and report encoding;
 * leaves nothing behind. Checks `proceed` before each part. Rejects with what a machine threw,
 * or when a made-up client was not reported.
 */
export async function rehearseTakeover(
  settings: MonitorSettings,
  encoding: ReportEncoding,
  clients = WARM_UP_CLIENTS,
  proceed: () => boolean = () => true,
): Promise<WarmUpResult> {
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
  const actor = createActor(rehearsal);
  // An error of a machine ends the rehearsal, not the process: the root's is observed here
  // (unobserved, XState would throw it on a timer); the monitor's only stops the monitor, and
  // is read from its snapshot; a shard's or a client's shows as a client not reported.
  let failed: { error: unknown } | null = null;
  actor.subscribe({ error: (error) => (failed ??= { error }) });
  actor.start();
  let loaded = 0;
  let reports = 0;
  try {
    const monitor = actor.getSnapshot().children.monitor as AnyActorRef | undefined;
    if (monitor === undefined) throw new Error("warm-up: the rehearsal has no monitor");
    const monitorFailed = (): boolean => {
      const snapshot = monitor.getSnapshot() as { status: string; error?: unknown };
      if (snapshot.status === "error") failed ??= { error: snapshot.error };
      return failed !== null;
    };
    while (loaded < clients && !monitorFailed() && proceed()) {
      const atMs = Date.now();
      const records: RegistrationRecord[] = [];
      const end = Math.min(clients, loaded + WARM_UP_PART);
      for (let n = loaded; n < end; n++) records.push({ registration: { subject: `rehearsal.${n}`, metadata: {} }, revision: n + 1, atMs });
      monitor.send({ type: end < clients ? "REGISTRATIONS_CHUNK" : "REGISTRATIONS_LOADED", records });
      loaded = end;
      reports += encoder.encodeAll(pending.splice(0), 1, reports + 1, atMs).length;
      await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    actor.stop();
  }
  // Set by the observers above, which TypeScript's narrowing cannot see.
  const failure = failed as { error: unknown } | null;
  if (failure !== null) throw failure.error;
  if (reports !== loaded) throw new Error(`warm-up: the rehearsal loaded ${loaded} clients and reported ${reports}`);
  return { clients: loaded, reports, ms: Math.round(performance.now() - started), completed: loaded === clients };
}

/** Whether this process has rehearsed (V8's compiled code is per process), or is rehearsing. */
let processRehearsal: "none" | "running" | "done" = "none";

/**
 * `rehearseTakeover` unless this process has done it, or is doing it: null then. One that
 * `proceed` stopped leaves it to the next call.
 */
export async function rehearseTakeoverOnce(
  settings: MonitorSettings,
  encoding: ReportEncoding,
  proceed: () => boolean,
): Promise<WarmUpResult | null> {
  if (processRehearsal !== "none") return null;
  processRehearsal = "running";
  let completed = false;
  try {
    const result = await rehearseTakeover(settings, encoding, WARM_UP_CLIENTS, proceed);
    completed = result.completed;
    return result;
  } finally {
    processRehearsal = completed ? "done" : "none";
  }
}
