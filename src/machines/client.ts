/**
 * The client actor: one per registered presence subject. It drives the client's lifecycle
 *
 *   registered → alive ⇄ suspect → dead | left
 *
 * and emits a report on every transition, plus NodeState every state interval. Activity is
 * a ping reply (PONG) or the registration itself. Every wait is a named `after` delay.
 */
import { assign, sendParent, sendTo, setup } from "xstate";
import type { JsonObject } from "@bufbuild/protobuf";
import type { ClientReport, ClientState, ReportType } from "../protocol/presence.js";
import { outbox, type RegistrationRecord } from "./commands.js";

/** Client timings, all in ms (see src/config.ts for what each trades off). */
export interface ClientTimings {
  pingIntervalMs: number;
  deadTimeoutMs: number;
  stateIntervalMs: number;
}

export type ClientEvent =
  /** A reply to a ping: the client is active. */
  | { type: "PONG"; subject: string; atMs: number; rttMs: number }
  /**
   * The client's subject registered again: its metadata and stored revision are replaced,
   * NodePresent is reported, and its liveness goes on where it was. A registration says who
   * a client is, not that it is alive: only a reply to a ping does, so a suspect client
   * stays suspect, and anyone re-registering a dead client's subject cannot keep it alive.
   */
  | { type: "RESET"; record: RegistrationRecord }
  /** The client unregistered. */
  | { type: "LEAVE"; subject: string };

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
  timings: ClientTimings;
  state: ClientState;
  lastSeenMs: number;
  rttMs: number;
  missedPings: number;
}

export interface ClientInput {
  record: RegistrationRecord;
  timings: ClientTimings;
}

const fromRecord = (record: RegistrationRecord) => ({
  subject: record.registration.subject,
  metadata: record.registration.metadata,
  revision: record.revision,
  lastSeenMs: record.atMs,
  rttMs: 0,
  missedPings: 0,
});

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    events: {} as ClientEvent,
    input: {} as ClientInput,
  },
  delays: {
    /** Silence after which the client is pinged; also how long a ping may go unanswered. */
    pingInterval: ({ context }) => context.timings.pingIntervalMs,
    /** Silence after which the client is dead. */
    deadTimeout: ({ context }) => context.timings.deadTimeoutMs,
    /** Period of NodeState reports. */
    stateInterval: ({ context }) => context.timings.stateIntervalMs,
  },
  actions: {
    applyRegistration: assign(({ event }) =>
      event.type === "RESET" ? { metadata: event.record.registration.metadata, revision: event.record.revision } : {},
    ),
    recordActivity: assign(({ event }) =>
      event.type === "PONG" ? { lastSeenMs: event.atMs, rttMs: event.rttMs, missedPings: 0 } : {},
    ),
    countMissedPing: assign({ missedPings: ({ context }) => context.missedPings + 1 }),
    setState: assign((_, params: { state: ClientState }) => ({ state: params.state })),
    ping: sendTo(outbox, ({ context }) => ({ type: "client.ping" as const, subject: context.subject })),
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
  guards: {
    isForThisClient: ({ context, event }) => "subject" in event && event.subject === context.subject,
  },
}).createMachine({
  id: "client",
  description: "One registered client: pings it when it is quiet, and reports every change of its liveness.",
  context: ({ input }) => ({ ...fromRecord(input.record), timings: input.timings, state: "alive" }),
  initial: "registered",
  states: {
    registered: {
      description: "Just registered (or registered again): reports NodePresent, then is tracked.",
      entry: { type: "report", params: { type: "NodePresent" } },
      always: "tracking",
    },
    tracking: {
      type: "parallel",
      on: {
        RESET: { actions: ["applyRegistration", { type: "report", params: { type: "NodePresent" } }] },
        LEAVE: { guard: "isForThisClient", target: "left" },
      },
      states: {
        liveness: {
          initial: "alive",
          states: {
            alive: {
              description: "Heard from within the last ping intervals.",
              entry: { type: "setState", params: { state: "alive" } },
              initial: "quiet",
              on: { PONG: { guard: "isForThisClient", target: "alive", reenter: true, actions: "recordActivity" } },
              states: {
                quiet: {
                  description: "No ping outstanding; pinged after a ping interval without activity.",
                  after: { pingInterval: "awaitingReply" },
                },
                awaitingReply: {
                  description: "A ping is out; without a reply within a ping interval the client is suspect.",
                  entry: "ping",
                  after: { pingInterval: { target: "#client.tracking.liveness.suspect", actions: "countMissedPing" } },
                },
              },
            },
            suspect: {
              description: "A ping went unanswered; pinged again every ping interval until it replies or is dead.",
              entry: [
                { type: "setState", params: { state: "suspect" } },
                { type: "report", params: { type: "NodeSuspect" } },
              ],
              on: {
                PONG: {
                  guard: "isForThisClient",
                  target: "alive",
                  actions: ["recordActivity", { type: "setState", params: { state: "alive" } }, { type: "report", params: { type: "NodeRecovered" } }],
                },
              },
              initial: "awaitingReply",
              states: {
                awaitingReply: {
                  entry: "ping",
                  after: { pingInterval: { target: "awaitingReply", reenter: true, actions: "countMissedPing" } },
                },
              },
            },
          },
        },
        silence: {
          initial: "counting",
          states: {
            counting: {
              description: "Time since the last activity; at the dead timeout the client is dead.",
              after: { deadTimeout: "#client.dead" },
              on: { PONG: { guard: "isForThisClient", target: "counting", reenter: true } },
            },
          },
        },
        stateReports: {
          initial: "waiting",
          states: {
            waiting: {
              description: "NodeState every state interval while the client is alive or suspect.",
              after: {
                stateInterval: { target: "waiting", reenter: true, actions: { type: "report", params: { type: "NodeState" } } },
              },
            },
          },
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
      entry: [
        { type: "setState", params: { state: "left" } },
        { type: "report", params: { type: "NodeLeft" } },
        "notifyFinished",
      ],
    },
  },
});

export type ClientMachine = typeof clientMachine;
