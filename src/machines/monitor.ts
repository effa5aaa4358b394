/**
 * The monitor: runs only while its coordinator leads. It first loads every stored
 * registration (so a new leader monitors every client at once, with no blind period), then
 * pulls new registrations and unregistrations, and routes them and the ping replies to a
 * fixed set of shards, which own the client actors.
 */
import { assign, enqueueActions, sendTo, setup, type ActorRefFrom } from "xstate";
import type { ClientTimings } from "./client.js";
import { outbox, type RegistrationRecord } from "./commands.js";
import { shardMachine, shardOf } from "./shard.js";

export interface MonitorSettings extends ClientTimings {
  /** Number of shard actors the clients are spread over. */
  shardCount: number;
}

export type MonitorEvent =
  /** A part of the stored registrations, while loading; more follow. */
  | { type: "REGISTRATIONS_CHUNK"; records: RegistrationRecord[] }
  /** The (last part of the) stored registrations, in answer to registrations.load: loading is done. */
  | { type: "REGISTRATIONS_LOADED"; records: RegistrationRecord[] }
  /** A registration was stored (new, or again for a known subject). */
  | { type: "REGISTERED"; record: RegistrationRecord }
  /** A client unregistered (its registration is already removed). */
  | { type: "UNREGISTERED"; subject: string }
  /** A ping reply. */
  | { type: "PONG"; subject: string; atMs: number; rttMs: number };

export interface MonitorContext {
  settings: MonitorSettings;
  shards: ActorRefFrom<typeof shardMachine>[];
}

export const monitorMachine = setup({
  types: {
    context: {} as MonitorContext,
    events: {} as MonitorEvent,
    input: {} as { settings: MonitorSettings },
  },
  actors: { shard: shardMachine },
  actions: {
    spawnShards: assign({
      shards: ({ context, spawn }) =>
        Array.from({ length: context.settings.shardCount }, (_, index) =>
          spawn("shard", { id: `shard-${index}`, input: { index, timings: context.settings } }),
        ),
    }),
    loadRegistrations: sendTo(outbox, { type: "registrations.load" as const }),
    pullRegistrations: sendTo(outbox, { type: "registrations.pull" as const }),
    /** Sends each shard its part of the registrations, as one batch per shard. */
    routeRegistrations: enqueueActions(({ context, event, enqueue }) => {
      const records =
        event.type === "REGISTRATIONS_LOADED" || event.type === "REGISTRATIONS_CHUNK"
          ? event.records
          : event.type === "REGISTERED"
            ? [event.record]
            : [];
      const perShard = new Map<number, RegistrationRecord[]>();
      for (const record of records) {
        const i = shardOf(record.registration.subject, context.shards.length);
        const list = perShard.get(i);
        if (list) list.push(record);
        else perShard.set(i, [record]);
      }
      for (const [i, batch] of perShard) enqueue.sendTo(context.shards[i]!, { type: "REGISTER", records: batch });
    }),
    routeToShard: enqueueActions(({ context, event, enqueue }) => {
      if (event.type === "PONG") {
        enqueue.sendTo(context.shards[shardOf(event.subject, context.shards.length)]!, event);
      } else if (event.type === "UNREGISTERED") {
        const shard = context.shards[shardOf(event.subject, context.shards.length)]!;
        enqueue.sendTo(shard, { type: "LEAVE", subject: event.subject });
      }
    }),
  },
}).createMachine({
  id: "monitor",
  description: "Monitors every registered client while this coordinator leads.",
  context: ({ input }) => ({ settings: input.settings, shards: [] }),
  entry: "spawnShards",
  initial: "loading",
  on: {
    PONG: { actions: "routeToShard" },
  },
  states: {
    loading: {
      description: "Loads every stored registration (in parts, so the event loop stays free for the lease) before anything new is pulled.",
      entry: "loadRegistrations",
      on: {
        REGISTRATIONS_CHUNK: { actions: "routeRegistrations" },
        REGISTRATIONS_LOADED: { target: "running", actions: "routeRegistrations" },
      },
    },
    running: {
      description: "Pulls new registrations and unregistrations and routes them to the shards.",
      entry: "pullRegistrations",
      on: {
        REGISTERED: { actions: "routeRegistrations" },
        UNREGISTERED: { actions: "routeToShard" },
      },
    },
  },
});

export type MonitorMachine = typeof monitorMachine;
