/**
 * The monitor: runs only while its coordinator leads. It first loads every stored
 * registration (so a new leader monitors every client at once, with no blind period), then
 * pulls new registrations and unregistrations, and routes them to a fixed set of shards,
 * which own the client actors and their liveness. A large load comes in parts: the shards
 * hold the clients of the earlier parts until the last part is in, and start them all then.
 *
 * Every sweep interval it asks the edge for the ping replies that came since the last sweep
 * (`replies.collect`); the edge answers with one SWEEP, which the monitor splits into one
 * SWEEP per shard (none for a shard with no clients and nothing for it). So replies reach a
 * shard as one batch per sweep, never one event each.
 */
import { assertEvent, assign, enqueueActions, sendTo, setup, type ActorRefFrom } from "xstate";
import { outbox, type RegistrationRecord } from "./commands.js";
import type { ClientTimings, ReplyFact } from "./liveness.js";
import { shardMachine, shardOf, type SweepEvent } from "./shard.js";

export interface MonitorSettings extends ClientTimings {
  /** Number of shard actors the clients are spread over. */
  shardCount: number;
  /** Period of the sweep, in ms (see DEFAULT_SWEEP_INTERVAL_MS in src/config/config.ts). */
  sweepIntervalMs: number;
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
  /** The edge's answer to replies.collect: the sweep's time, any stall before it, and every reply since the last one. */
  | SweepEvent;

export interface MonitorContext {
  settings: MonitorSettings;
  shards: ActorRefFrom<typeof shardMachine>[];
  /**
   * When the latest held part of the load came (null: none): the stored registrations came in
   * more than one part, and the earlier parts are held until the last.
   */
  heldPartAtMs: number | null;
}

export const monitorMachine = setup({
  types: {
    context: {} as MonitorContext,
    events: {} as MonitorEvent,
    input: {} as { settings: MonitorSettings },
  },
  actors: { shard: shardMachine },
  delays: {
    /** Between two sweeps: detection may be late by at most this much. */
    sweepInterval: ({ context }) => context.settings.sweepIntervalMs,
  },
  actions: {
    spawnShards: assign({
      shards: ({ context, spawn }) =>
        Array.from({ length: context.settings.shardCount }, (_, index) =>
          spawn("shard", { id: `shard-${index}`, input: { index, shards: context.settings.shardCount, timings: context.settings } }),
        ),
    }),
    loadRegistrations: sendTo(outbox, { type: "registrations.load" as const }),
    pullRegistrations: sendTo(outbox, { type: "registrations.pull" as const }),
    collectReplies: sendTo(outbox, { type: "replies.collect" as const }),
    /** One SWEEP per shard, each with the replies of its own clients. */
    sweepShards: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "SWEEP");
      const count = context.shards.length;
      const perShard: ReplyFact[][] = Array.from({ length: count }, () => []);
      // A reply's key names its client's shard (see LivenessSlots): no hash of its subject. A
      // reply without one (a log recorded before keys) goes by its subject.
      for (const reply of event.replies) {
        const key = reply.key;
        perShard[key !== undefined && Number.isInteger(key) && key >= 0 ? key % count : shardOf(reply.subject, count)]!.push(reply);
      }
      const unsent: (string[] | undefined)[] = new Array<string[] | undefined>(count);
      for (const subject of event.unsent ?? []) {
        const shard = shardOf(subject, count);
        const list = unsent[shard] ?? [];
        unsent[shard] = list;
        list.push(subject);
      }
      for (let i = 0; i < count; i++) {
        // A shard without clients has nothing to judge: no event for it (256 shards, 20 sweeps a second).
        const shard = context.shards[i]!;
        if (perShard[i]!.length === 0 && unsent[i] === undefined && shard.getSnapshot().context.liveness.size === 0) continue;
        const sweep: SweepEvent = { type: "SWEEP", atMs: event.atMs, stalledMs: event.stalledMs, replies: perShard[i]! };
        if (unsent[i] !== undefined) sweep.unsent = unsent[i];
        enqueue.sendTo(shard, sweep);
      }
    }),
    /** Sends each shard its part of the registrations, as one batch per shard. */
    routeRegistrations: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, ["REGISTRATIONS_LOADED", "REGISTRATIONS_CHUNK", "REGISTERED"]);
      const records = event.type === "REGISTERED" ? [event.record] : event.records;
      const perShard = new Map<number, RegistrationRecord[]>();
      for (const record of records) {
        const i = shardOf(record.registration.subject, context.shards.length);
        const list = perShard.get(i);
        if (list) list.push(record);
        else perShard.set(i, [record]);
      }
      // A part of the load is held until the whole load is in (LivenessTable.register).
      const held = event.type === "REGISTRATIONS_CHUNK";
      for (const [i, batch] of perShard)
        enqueue.sendTo(context.shards[i]!, held ? { type: "REGISTER", records: batch, held } : { type: "REGISTER", records: batch });
    }),
    /** The load is complete: the clients of its earlier parts start, at the time of its last part. */
    startLoaded: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "REGISTRATIONS_LOADED");
      if (context.heldPartAtMs === null) return;
      // An empty last part (the edge sends none) must not leave the held clients unmonitored.
      const atMs = event.records[0]?.atMs ?? context.heldPartAtMs;
      for (const shard of context.shards) enqueue.sendTo(shard, { type: "LOAD_DONE", atMs });
    }),
    noteHeldPart: assign({
      heldPartAtMs: ({ context, event }) => {
        assertEvent(event, "REGISTRATIONS_CHUNK");
        return event.records[0]?.atMs ?? context.heldPartAtMs;
      },
    }),
    routeLeave: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "UNREGISTERED");
      const shard = context.shards[shardOf(event.subject, context.shards.length)]!;
      enqueue.sendTo(shard, { type: "LEAVE", subject: event.subject });
    }),
  },
}).createMachine({
  id: "monitor",
  description: "Monitors every registered client while this coordinator leads.",
  context: ({ input }) => ({ settings: input.settings, shards: [], heldPartAtMs: null }),
  entry: "spawnShards",
  type: "parallel",
  on: {
    SWEEP: { actions: "sweepShards" },
  },
  states: {
    registrations: {
      initial: "loading",
      states: {
        loading: {
          description:
            "Loads every stored registration (in parts, so the event loop stays free for the lease) before anything new is pulled.",
          entry: "loadRegistrations",
          on: {
            REGISTRATIONS_CHUNK: { actions: ["noteHeldPart", "routeRegistrations"] },
            REGISTRATIONS_LOADED: { target: "running", actions: ["routeRegistrations", "startLoaded"] },
          },
        },
        running: {
          description: "Pulls new registrations and unregistrations and routes them to the shards.",
          entry: "pullRegistrations",
          on: {
            REGISTERED: { actions: "routeRegistrations" },
            UNREGISTERED: { actions: "routeLeave" },
          },
        },
      },
    },
    sweeping: {
      initial: "waiting",
      states: {
        waiting: {
          description: "Every sweep interval, asks the edge for the replies since the last sweep; its SWEEP goes to every shard.",
          after: { sweepInterval: { target: "waiting", reenter: true, actions: "collectReplies" } },
        },
      },
    },
  },
});

export type MonitorMachine = typeof monitorMachine;
