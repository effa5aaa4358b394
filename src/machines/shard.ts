/**
 * A shard: owns the client actors of the subjects that hash to it. The monitor spreads
 * clients over a fixed number of shards because XState copies a parent's children on every
 * spawn and stop; with bounded shards that cost stays flat as the number of clients grows.
 */
import { assign, enqueueActions, setup, stopChild, type ActorRefFrom } from "xstate";
import { clientMachine, type ClientEvent, type ClientFinished, type ClientTimings } from "./client.js";
import type { RegistrationRecord } from "./commands.js";

export type ShardEvent =
  /** Registrations for this shard: new subjects get an actor, known ones start over. */
  | { type: "REGISTER"; records: RegistrationRecord[] }
  | Extract<ClientEvent, { type: "PONG" | "LEAVE" }>
  | ClientFinished;

export interface ShardInput {
  index: number;
  timings: ClientTimings;
}

export interface ShardContext {
  index: number;
  timings: ClientTimings;
  /** The client actors of this shard, by subject (also their actor ids). */
  clients: Record<string, ActorRefFrom<typeof clientMachine>>;
}

export const shardMachine = setup({
  types: {
    context: {} as ShardContext,
    events: {} as ShardEvent,
    input: {} as ShardInput,
  },
  actors: { client: clientMachine },
  guards: {
    isKnownClient: ({ context, event }) => "subject" in event && event.subject in context.clients,
  },
  actions: {
    /** Spawns an actor per new subject; a known subject gets RESET (re-registration). */
    register: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "REGISTER") return;
      const fresh: RegistrationRecord[] = [];
      const seen = new Set<string>();
      for (const record of event.records) {
        const subject = record.registration.subject;
        const known = context.clients[subject];
        if (known !== undefined) enqueue.sendTo(known, { type: "RESET", record });
        else if (seen.has(subject)) continue; // a duplicate within one batch: the first one counts
        else {
          seen.add(subject);
          fresh.push(record);
        }
      }
      if (fresh.length === 0) return;
      // One assign for the whole batch: one copy of the clients record, not one per client.
      enqueue.assign({
        clients: ({ context: c, spawn }) => {
          const clients = { ...c.clients };
          for (const record of fresh) {
            const subject = record.registration.subject;
            clients[subject] = spawn("client", { id: subject, input: { record, timings: c.timings } });
          }
          return clients;
        },
      });
    }),
    forwardToClient: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "PONG" && event.type !== "LEAVE") return;
      const ref = context.clients[event.subject];
      if (ref !== undefined) enqueue.sendTo(ref, event);
    }),
    stopFinishedClient: stopChild(({ event }) => (event.type === "CLIENT_FINISHED" ? event.subject : "")),
    forgetFinishedClient: assign({
      clients: ({ context, event }) => {
        if (event.type !== "CLIENT_FINISHED") return context.clients;
        const { [event.subject]: _gone, ...rest } = context.clients;
        return rest;
      },
    }),
  },
}).createMachine({
  id: "shard",
  description: "Owns the client actors of its share of the subjects and routes their events.",
  context: ({ input }) => ({ index: input.index, timings: input.timings, clients: {} }),
  initial: "routing",
  states: {
    routing: {
      description: "Spawns client actors on registration, forwards ping replies and leaves, and stops finished clients.",
      on: {
        REGISTER: { actions: "register" },
        PONG: { guard: "isKnownClient", actions: "forwardToClient" },
        LEAVE: { guard: "isKnownClient", actions: "forwardToClient" },
        CLIENT_FINISHED: { guard: "isKnownClient", actions: ["stopFinishedClient", "forgetFinishedClient"] },
      },
    },
  },
});

export type ShardMachine = typeof shardMachine;

/** The shard of a subject: FNV-1a of its UTF-16 code units, modulo the shard count. */
export function shardOf(subject: string, shardCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < subject.length; i++) {
    h ^= subject.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shardCount;
}
