/**
 * The client actor: one per registered presence subject. It owns the client's lifecycle
 *
 *   alive ⇄ suspect → dead | left
 *
 * and emits a report on every change of it (NodePresent when it starts and when the subject
 * registers again). It keeps no timer and hears nothing while the client answers: its shard
 * keeps the liveness data and sweeps it (src/machines/liveness.ts), and gives this actor only
 * the facts that can change its lifecycle (a missed ping, a reply after one, the dead
 * timeout, a registration again, a leave). This actor turns them into states and reports,
 * and removes a dead client's registration.
 */
import { assertEvent, assign, sendParent, sendTo, setup } from "xstate";
import type { JsonObject } from "@bufbuild/protobuf";
import type { ClientReport, ClientState, ReportType } from "../protocol/presence.js";
import { outbox, type RegistrationRecord } from "./commands.js";
import type { LivenessFact } from "./liveness.js";

export type { ClientTimings } from "./liveness.js";

/** What the shard's sweep found, as the client actor hears it. */
type Fact = Omit<LivenessFact, "subject">;

export type ClientEvent =
  /** A ping went unanswered for a ping interval (`missedPings` counts it). */
  | ({ type: "PING_MISSED" } & Fact)
  /** A reply came from a client that had missed pings. */
  | ({ type: "REPLIED" } & Fact)
  /** No reply for the dead timeout. */
  | ({ type: "DEAD_TIMEOUT" } & Fact)
  /**
   * The client's subject registered again: its metadata and stored revision are replaced,
   * NodePresent is reported, and its liveness goes on where it was. A registration says who
   * a client is, not that it is alive: only a reply to a ping does, so a suspect client
   * stays suspect, and anyone re-registering a dead client's subject cannot keep it alive.
   * The fact is what its shard knows of it now, for the report.
   */
  | ({ type: "RESET"; record: RegistrationRecord } & Fact)
  /** The client unregistered; the fact is what its shard knew of it last, for the report. */
  | ({ type: "LEAVE" } & Fact);

/** Sent to the parent (the shard) when the client is dead or has left. */
export interface ClientFinished {
  type: "CLIENT_FINISHED";
  subject: string;
}

export interface ClientContext {
  subject: string;
  metadata: JsonObject;
  /** KV revision of the registration this actor monitors. */
  revision: number;
  state: ClientState;
  /** As of the last fact this actor heard (the shard's table has the latest). */
  lastSeenMs: number;
  rttMs: number;
  missedPings: number;
}

export interface ClientInput {
  record: RegistrationRecord;
}

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    events: {} as ClientEvent,
    input: {} as ClientInput,
  },
  actions: {
    applyRegistration: assign(({ event }) => {
      assertEvent(event, "RESET");
      return { metadata: event.record.registration.metadata, revision: event.record.revision };
    }),
    applyFact: assign(({ event }) => {
      assertEvent(event, ["PING_MISSED", "REPLIED", "DEAD_TIMEOUT", "RESET", "LEAVE"]);
      return { lastSeenMs: event.lastSeenMs, rttMs: event.rttMs, missedPings: event.missedPings };
    }),
    setState: assign((_, params: { state: ClientState }) => ({ state: params.state })),
    removeRegistration: sendTo(outbox, ({ context }) => ({
      type: "registration.remove" as const,
      subject: context.subject,
      revision: context.revision,
    })),
    report: sendTo(outbox, ({ context }, params: { type: ReportType }) => {
      const report: ClientReport = {
        type: params.type,
        clientSubject: context.subject,
        state: context.state,
        lastSeenMs: context.lastSeenMs,
        rttMs: context.rttMs,
        missedPings: context.missedPings,
        metadata: context.metadata,
      };
      return { type: "report.presence" as const, report };
    }),
    notifyFinished: sendParent(({ context }): ClientFinished => ({ type: "CLIENT_FINISHED", subject: context.subject })),
  },
}).createMachine({
  id: "client",
  description: "One registered client: reports every change of its liveness, as its shard's sweeps find them.",
  context: ({ input }) => ({
    subject: input.record.registration.subject,
    metadata: input.record.registration.metadata,
    revision: input.record.revision,
    state: "alive",
    lastSeenMs: input.record.atMs,
    rttMs: 0,
    missedPings: 0,
  }),
  entry: { type: "report", params: { type: "NodePresent" } },
  initial: "alive",
  on: {
    RESET: { actions: ["applyRegistration", "applyFact", { type: "report", params: { type: "NodePresent" } }] },
    LEAVE: { target: ".left", actions: "applyFact" },
    DEAD_TIMEOUT: { target: ".dead", actions: "applyFact" },
  },
  states: {
    alive: {
      description: "Answers its pings. Its shard pings it and reports its NodeState; this actor hears nothing.",
      on: { PING_MISSED: { target: "suspect", actions: "applyFact" } },
    },
    suspect: {
      description: "A ping went unanswered; its shard pings it every ping interval until it replies or is dead.",
      entry: [
        { type: "setState", params: { state: "suspect" } },
        { type: "report", params: { type: "NodeSuspect" } },
      ],
      on: {
        PING_MISSED: { actions: "applyFact" },
        REPLIED: {
          target: "alive",
          actions: ["applyFact", { type: "setState", params: { state: "alive" } }, { type: "report", params: { type: "NodeRecovered" } }],
        },
      },
    },
    dead: {
      description: "No reply for the dead timeout. Its registration is removed; a later reply changes nothing.",
      type: "final",
      entry: [
        { type: "setState", params: { state: "dead" } },
        { type: "report", params: { type: "NodeDead" } },
        "removeRegistration",
        "notifyFinished",
      ],
    },
    left: {
      description: "The client unregistered (the edge removed its registration before acknowledging that).",
      type: "final",
      entry: [{ type: "setState", params: { state: "left" } }, { type: "report", params: { type: "NodeLeft" } }, "notifyFinished"],
    },
  },
});

export type ClientMachine = typeof clientMachine;
