/**
 * A shard: owns the client actors of the subjects that hash to it, and their liveness as
 * plain data (src/machines/liveness.ts).
 *
 * The client actors are created in this shard's actor system with the shard as their parent
 * (they report to it with sendParent, the inspector and replay see them as any actor), but
 * they are kept in the shard's own map rather than in its snapshot's `children`: XState
 * copies a parent's children on every spawn and on every stop, which made stopping a shard
 * quadratic in its clients (200 clients: 90 ms; 800: 1.7 s; a leader with 50,000 clients
 * took 44 s to step down). The shard starts them and stops a finished one; when the shard
 * itself is stopped (its monitor stopped: leadership ended, whichever way), the `clientLifetime`
 * actor it invokes is stopped with it, and that stops every client (O(1) each).
 *
 * On every SWEEP the shard applies the replies that came since the last one, judges its
 * clients, sends the pings that are due as one command and the NodeState reports that are
 * due as another, and gives a client actor a fact only when its lifecycle may change.
 */
import {
  assertEvent,
  createActor,
  enqueueActions,
  fromCallback,
  setup,
  type ActorRefFrom,
  type AnyActorRef,
  type EventObject,
} from "xstate";
import { clientMachine, type ClientFinished } from "./client.js";
import type { RegistrationRecord } from "./commands.js";
import { outbox } from "./commands.js";
import { LivenessTable, subjectHash, type ClientTimings, type ReplyFact } from "./liveness.js";

/** One sweep, as the monitor hands it to a shard. */
export interface SweepEvent {
  type: "SWEEP";
  /** Wall-clock ms of the sweep. */
  atMs: number;
  /** > 0: the event loop was stalled this long before it; nobody is judged (see LivenessTable.sweep). */
  stalledMs: number;
  /** The replies of this shard's clients since the last sweep, in the order they were read. */
  replies: ReplyFact[];
  /** Clients whose ping was asked for but not sent (the lease was unsure, NATS down): pinged again, not judged on it. */
  unsent?: string[];
}

export type ShardEvent =
  /**
   * Registrations for this shard: new subjects get an actor, known ones start over. `held`:
   * a part of a new leader's load; they are not pinged, reported or judged before LOAD_DONE.
   */
  | { type: "REGISTER"; records: RegistrationRecord[]; held?: boolean }
  /** Every part of the load is in, at `atMs`: the held clients start (LivenessTable.startHeld). */
  | { type: "LOAD_DONE"; atMs: number }
  | SweepEvent
  /** The client unregistered (its registration is already removed). */
  | { type: "LEAVE"; subject: string }
  | ClientFinished;

export interface ShardInput {
  index: number;
  /** How many shards the monitor has (the clients' keys count them: see LivenessSlots). */
  shards: number;
  timings: ClientTimings;
}

export interface ShardContext {
  index: number;
  /**
   * The client actors of this shard, by subject (also their actor ids). Like `liveness`, a
   * mutable map changed only by this shard's own actions.
   */
  clients: Map<string, ActorRefFrom<typeof clientMachine>>;
  /**
   * The clients' liveness. A mutable table, changed only by this shard's own actions: copying
   * it on every sweep would cost what the sweep saves (the object itself never changes).
   */
  liveness: LivenessTable;
}

/**
 * Lives as long as its shard and stops the shard's client actors when it is stopped. XState
 * stops a stopping actor's invoked and spawned children, but runs no exit action, and these
 * clients are not among its children (see the file comment). A client actor is not a root,
 * so it is stopped the way XState stops its children: with its stop event.
 */
const clientLifetime = fromCallback<EventObject, { clients: ReadonlyMap<string, AnyActorRef> }>(({ input }) => () => {
  for (const ref of input.clients.values()) ref.send({ type: "xstate.stop" });
});

/** What the table knows of a client that has an actor, for the reports of its lifecycle events. */
function factOf(liveness: LivenessTable, subject: string): { lastSeenMs: number; rttMs: number; missedPings: number } {
  const entry = liveness.get(subject);
  if (entry === undefined) throw new Error(`shard: client ${subject} has an actor but no liveness entry`);
  return { lastSeenMs: entry.lastSeenMs, rttMs: entry.rttMs, missedPings: entry.missedPings };
}

export const shardMachine = setup({
  types: {
    context: {} as ShardContext,
    events: {} as ShardEvent,
    input: {} as ShardInput,
  },
  actors: { clientLifetime },
  guards: {
    isKnownClient: ({ context, event }) => {
      assertEvent(event, ["LEAVE", "CLIENT_FINISHED"]);
      return context.clients.has(event.subject);
    },
  },
  actions: {
    /** Starts an actor per new subject; a known subject gets RESET (re-registration). */
    register: enqueueActions(({ context, event, enqueue, self }) => {
      assertEvent(event, "REGISTER");
      const fresh: RegistrationRecord[] = [];
      for (const record of event.records) {
        const { subject, metadata } = record.registration;
        const known = context.clients.get(subject);
        if (known !== undefined) {
          context.liveness.register(subject, metadata, record.atMs);
          enqueue.sendTo(known, { type: "RESET", record, ...factOf(context.liveness, subject) });
        } else if (context.liveness.register(subject, metadata, record.atMs, event.held === true)) fresh.push(record);
        // else: a duplicate within one batch; the first one counts
      }
      if (fresh.length === 0) return;
      enqueue(() => {
        for (const record of fresh) {
          const subject = record.registration.subject;
          const ref = createActor(clientMachine, { id: subject, parent: self, input: { record } });
          context.clients.set(subject, ref);
          ref.start();
        }
      });
    }),
    /** Applies the replies, judges every client, and sends what is due. */
    sweep: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "SWEEP");
      const result = context.liveness.sweep(event.atMs, event.stalledMs, event.replies, event.unsent);
      const tell = (type: "PING_MISSED" | "REPLIED" | "DEAD_TIMEOUT", facts: typeof result.missed): void => {
        for (const { subject, lastSeenMs, rttMs, missedPings } of facts) {
          const ref = context.clients.get(subject);
          if (ref !== undefined) enqueue.sendTo(ref, { type, lastSeenMs, rttMs, missedPings });
        }
      };
      tell("REPLIED", result.replied);
      tell("PING_MISSED", result.missed);
      tell("DEAD_TIMEOUT", result.dead);
      if (result.ping.length > 0) enqueue.sendTo(outbox, { type: "clients.ping" as const, subjects: result.ping, keys: result.pingKeys });
      if (result.states.length > 0)
        enqueue.sendTo(outbox, { type: "reports.state" as const, reports: result.states, keys: result.stateKeys });
    }),
    startHeld: ({ context, event }) => {
      assertEvent(event, "LOAD_DONE");
      context.liveness.startHeld(event.atMs);
    },
    leave: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "LEAVE");
      const fact = factOf(context.liveness, event.subject);
      context.liveness.remove(event.subject);
      enqueue.sendTo(context.clients.get(event.subject)!, { type: "LEAVE", ...fact });
    }),
    stopFinishedClient: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, "CLIENT_FINISHED");
      const ref = context.clients.get(event.subject)!;
      context.clients.delete(event.subject);
      enqueue.stopChild(ref);
    }),
  },
}).createMachine({
  id: "shard",
  description: "Owns the client actors and the liveness of its share of the subjects, and sweeps them.",
  context: ({ input }) => ({
    index: input.index,
    clients: new Map(),
    liveness: new LivenessTable(input.timings, { shard: input.index, shards: input.shards }),
  }),
  invoke: { src: "clientLifetime", input: ({ context }) => ({ clients: context.clients }) },
  initial: "routing",
  states: {
    routing: {
      description: "Starts client actors on registration, sweeps on every SWEEP, passes on leaves and stops finished clients.",
      on: {
        REGISTER: { actions: "register" },
        SWEEP: { actions: "sweep" },
        LOAD_DONE: { actions: "startHeld" },
        LEAVE: { guard: "isKnownClient", actions: "leave" },
        CLIENT_FINISHED: { guard: "isKnownClient", actions: "stopFinishedClient" },
      },
    },
  },
});

export type ShardMachine = typeof shardMachine;

/** The shard of a subject: FNV-1a of its UTF-16 code units, modulo the shard count. */
export function shardOf(subject: string, shardCount: number): number {
  return subjectHash(subject) % shardCount;
}
