/**
 * Presence figures for `npm run bench`:
 * - spawn cost and heap per client: 10,000 client actors spawned through the monitor (one
 *   REGISTRATIONS_LOADED, as a new leader does), in this process, on a SimulatedClock so no
 *   timer fires while measuring;
 * - detection latency: 20 clients answering pings stop at once; last reply -> NodeDead,
 *   against a real nats-server and a coordinator process with default timings.
 */
import { connect } from "@nats-io/transport-node";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_SHARD_COUNT } from "../src/config.js";
import type { Command, RegistrationRecord } from "../src/machines/commands.js";
import { monitorMachine } from "../src/machines/monitor.js";
import { decodeReport, REPORT_HEADERS } from "../src/protocol/presence.js";
import { NatsServer } from "../src/services/nats-server.js";
import { spawnCoordinator, waitFor } from "../test/helpers/coordinators.js";

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
      outbox: fromCallback<Command>(({ receive }) => receive((c) => {
        if (c.type === "report.presence") reports += 1;
      })),
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
  const actor = createActor(root, { clock: new SimulatedClock() }).start();
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

export async function measureDetection(clients: number) {
  const server = await NatsServer.start();
  const cluster = "benchdetect";
  const app = await connect({ servers: server.url });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "d1" });
  try {
    const lastReply = new Map<string, number>();
    const dead = new Map<string, number>();
    const present = new Set<string>();
    app.subscribe(`presence.report.${cluster}`, {
      callback: (_e, m) => {
        const r = decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding));
        if (r.type === "NodePresent") present.add(r.clientSubject);
        if (r.type === "NodeDead" && !dead.has(r.clientSubject)) dead.set(r.clientSubject, performance.now());
      },
    });
    const subjects = Array.from({ length: clients }, (_, i) => `bench.detect.${i}`);
    const subs = subjects.map((subject) =>
      app.subscribe(subject, {
        callback: (_e, m) => {
          lastReply.set(subject, performance.now());
          m.respond();
        },
      }),
    );
    await app.flush();
    await waitFor("the registration stream", () => coordinator.lines.some((l) => l.includes("created the registration stream")), 10_000);
    for (const subject of subjects) app.publish(`presence.register.${cluster}`, JSON.stringify({ myPresenceSubject: subject }));
    await waitFor("NodePresent for every client", () => present.size === clients, 20_000);
    await new Promise((r) => setTimeout(r, 3000)); // a few ping rounds
    for (const s of subs) s.unsubscribe();
    await waitFor("NodeDead for every client", () => dead.size === clients, 20_000);
    const latencies = subjects.map((s) => dead.get(s)! - (lastReply.get(s) ?? 0)).sort((a, b) => a - b);
    return {
      clients,
      medianMs: Math.round(latencies[Math.floor(latencies.length / 2)]!),
      maxMs: Math.round(latencies.at(-1)!),
      minMs: Math.round(latencies[0]!),
      boundMs: DEFAULT_MONITOR_TIMINGS.deadTimeoutMs + DEFAULT_MONITOR_TIMINGS.pingIntervalMs,
    };
  } finally {
    await coordinator.kill();
    await app.close();
    await server.stop();
  }
}
