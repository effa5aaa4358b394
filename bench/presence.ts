/**
 * Spawn cost and heap per client for `npm run bench`: N client actors spawned through the
 * monitor (one REGISTRATIONS_LOADED, as a new leader does), in this process, on a
 * SimulatedClock so that no timer fires while measuring. (Detection latency and capacity
 * are measured against real processes in bench/capacity.ts.)
 */
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_SHARD_COUNT } from "../src/config/config.js";
import type { Command, RegistrationRecord } from "../src/machines/commands.js";
import { monitorMachine } from "../src/machines/monitor.js";
import { indexScheduler } from "../src/machines/scheduler-index.js";

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

export async function measureSpawn(clients: number) {
  let reports = 0;
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) =>
        receive((c) => {
          if (c.type === "report.presence") reports += 1;
        }),
      ),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", systemId: "outbox" },
      {
        src: "monitor",
        systemId: "monitor",
        input: { settings: { ...DEFAULT_MONITOR_TIMINGS, shardCount: DEFAULT_SHARD_COUNT } },
      },
    ],
  });
  const records: RegistrationRecord[] = Array.from({ length: clients }, (_, i) => ({
    registration: { subject: `bench.client.${i}`, metadata: { zone: "eu-1" } },
    revision: i + 1,
    atMs: 0,
  }));
  const actor = createActor(root, { clock: new SimulatedClock() });
  indexScheduler(actor.system); // as the driver does; without it, stopping 50,000 clients takes the better part of an hour
  actor.start();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  (actor.system.get("monitor") as AnyActorRef).send({ type: "REGISTRATIONS_LOADED", records });
  const spawnMs = performance.now() - t0;
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  const result = {
    clients,
    shards: DEFAULT_SHARD_COUNT,
    spawnMs: Math.round(spawnMs),
    heapPerClientBytes: Math.round((heapAfter - heapBefore) / clients),
    gcAvailable: typeof (globalThis as { gc?: unknown }).gc === "function",
    nodePresentReports: reports,
  };
  actor.stop();
  return result;
}
