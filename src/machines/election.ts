/**
 * The election machine: follower → candidate → leader, and the ways out of leadership
 * (stepping down after losing the lease, resigning on shutdown).
 *
 * Pure: it never touches NATS. Events come in (heartbeats heard, results of lease
 * operations, a request to stop); commands go out as emitted events (create, renew or
 * release the lease; publish a heartbeat; publish a report). The driver in
 * `src/election/election-driver.ts` executes the commands and feeds results back. Every
 * wait is a named `after` delay on the actor's clock, and the only randomness (the election
 * backoff) comes from the injected `random` source, so a run is reproducible under a
 * `SimulatedClock`.
 */
import { and, assertEvent, assign, fromCallback, sendTo, setup, stateIn } from "xstate";
import type { ElectionTimings } from "../config/config.js";
import type { RandomSource } from "./random.js";
import { OUTBOX, outbox, type Command, type ElectionCommand } from "./commands.js";
import { monitorMachine, type MonitorSettings } from "./monitor.js";

export type { ElectionCommand } from "./commands.js";
import type { ElectionReason, ElectionReportBody, ElectionReportType, LeaseHolder } from "../protocol/election.js";

export interface ElectionInput {
  coordinatorId: string;
  timings: ElectionTimings;
  /** Seeded, so that runs can be replayed. */
  random: RandomSource;
  /** Settings of the monitor this coordinator runs while it leads. */
  monitor: MonitorSettings;
}

export type ElectionEvent =
  /** A heartbeat heard on the cluster's heartbeat subject (own heartbeats included). */
  | { type: "HEARTBEAT"; coordinatorId: string; epoch: number; resigning: boolean }
  /** The lease create succeeded: this coordinator leads under `epoch`. */
  | { type: "LEASE_CREATED"; epoch: number; revision: number; latencyMs: number }
  /** The lease create was refused because someone holds the lease (`holder`, if it could be read). */
  | { type: "LEASE_TAKEN"; holder: LeaseHolder | null }
  /** A renewal succeeded; `latencyMs` is the time from sending it to its success. */
  | { type: "LEASE_RENEWED"; revision: number; latencyMs: number }
  /** A renewal was refused: the lease has another revision, so someone else holds it. */
  | { type: "LEASE_LOST" }
  /** The lease was released (or was no longer ours); `holder` is who holds it now, if anyone. */
  | { type: "LEASE_RELEASED"; holder: LeaseHolder | null }
  /** A lease operation failed without an answer (timeout, no connection, server error). */
  | { type: "LEASE_ERROR"; operation: "create" | "renew" | "release"; message: string }
  /** Shut down: a leader resigns gracefully, anyone else just stops. */
  | { type: "RESIGN" };

export interface ElectionContext {
  coordinatorId: string;
  timings: ElectionTimings;
  random: RandomSource;
  monitor: MonitorSettings;
  /** The backoff chosen on entering `candidate`. */
  backoffMs: number;
  /** The epoch this coordinator holds or last held (0 if it never led). */
  epoch: number;
  /** Revision of this coordinator's last successful lease write. */
  revision: number;
  /** Time left on the renew deadline, measured from when the last successful write was sent. */
  leaseValidForMs: number;
  /** The highest epoch seen in any heartbeat or lease read; lower ones are stale. */
  highestEpoch: number;
  /** The leader this coordinator currently knows of. */
  leader: LeaseHolder | null;
  stepDownReason: ElectionReason;
  stopRequested: boolean;
}

type ReportParams = {
  type: ElectionReportType;
  reason?: ElectionReason;
  /** The coordinator is leaving leadership: the report names the epoch it held. */
  fromLeadership?: boolean;
};

const STATE_AFTER: Record<ElectionReportType, ElectionReportBody["state"]> = {
  BecameFollower: "follower",
  FollowingLeader: "follower",
  BecameCandidate: "candidate",
  BecameLeader: "leader",
  SteppedDown: "follower",
  Stopped: "stopped",
};

export const electionMachine = setup({
  types: {
    context: {} as ElectionContext,
    events: {} as ElectionEvent,
    input: {} as ElectionInput,
  },
  actors: {
    /** Where every command goes; the driver provides the real one. This default drops them. */
    outbox: fromCallback<Command>(() => undefined),
    monitor: monitorMachine,
  },
  delays: {
    /** Silence after which a follower stands for election. */
    leaderTimeout: ({ context }) => context.timings.leaderTimeoutMs,
    /** The random wait of a candidate before it tries to create the lease. */
    electionBackoff: ({ context }) => context.backoffMs,
    /** Time between two renewals (and heartbeats) of the leader. */
    heartbeatInterval: ({ context }) => context.timings.heartbeatIntervalMs,
    /**
     * Wait before retrying a renewal that failed without an answer: a fifth of the slack
     * between the renewal and the renew deadline, so that a retry still fits in it.
     */
    renewRetry: ({ context }) => Math.max(1, Math.floor((context.timings.renewDeadlineMs - context.timings.heartbeatIntervalMs) / 5)),
    /** What is left of the renew deadline since the last successful write was sent. */
    renewDeadline: ({ context }) => context.leaseValidForMs,
    /**
     * How long a leader past its renew deadline waits for the answer to its check (one
     * renewal against its own revision) before it gives up and steps down. The lease store
     * times out its requests well before this; it only bounds a store that never answers.
     */
    leaseCheckTimeout: ({ context }) => context.timings.leaderTimeoutMs,
    /** How long stepping down waits for the release before it gives up on NATS. */
    releaseTimeout: ({ context }) => context.timings.leaderTimeoutMs,
  },
  guards: {
    /** A heartbeat of another coordinator, not resigning, from the current epoch or a newer one. */
    isLiveLeaderHeartbeat: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return event.coordinatorId !== context.coordinatorId && !event.resigning && event.epoch >= context.highestEpoch;
    },
    /** The heartbeat comes from a leader (or epoch) this coordinator did not follow yet. */
    isNewLeader: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return context.leader === null || context.leader.coordinatorId !== event.coordinatorId || context.leader.epoch !== event.epoch;
    },
    /** A resigning heartbeat of another coordinator from the current epoch or a newer one. */
    isLeaderResignation: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return event.coordinatorId !== context.coordinatorId && event.resigning && event.epoch >= context.highestEpoch;
    },
    /** While leading: another coordinator heartbeats under a higher epoch, so this lease is gone. */
    isNewerLeaderHeartbeat: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return event.coordinatorId !== context.coordinatorId && event.epoch > context.epoch;
    },
    stopRequested: ({ context }) => context.stopRequested,
    /**
     * A renewal that was sent less than the renew deadline ago: the lease is valid from when
     * it was sent. One that took longer (its answer waited out a pause of this process)
     * still proves nobody took the lease, but not that it is valid now.
     */
    isFreshRenewal: ({ context, event }) => {
      assertEvent(event, "LEASE_RENEWED");
      return event.latencyMs < context.timings.renewDeadlineMs;
    },
    /** The renew deadline has passed and no renewal has confirmed the lease since. */
    leaseIsUnsure: stateIn({ leader: { lease: "unsure" } }),
  },
  actions: {
    chooseBackoff: assign({
      backoffMs: ({ context }) => {
        const { electionBackoffMinMs: min, electionBackoffMaxMs: max } = context.timings;
        return context.random.int(min, max);
      },
    }),
    followHeartbeatSender: assign(({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return {
        leader: { coordinatorId: event.coordinatorId, epoch: event.epoch },
        highestEpoch: Math.max(context.highestEpoch, event.epoch),
      };
    }),
    forgetLeader: assign({ leader: null }),
    /** Records who holds the lease after a lost election or a release (null: nobody). */
    recordHolder: assign(({ context, event }) => {
      assertEvent(event, ["LEASE_TAKEN", "LEASE_RELEASED"]);
      const holder = event.holder;
      const isOther = holder !== null && holder.coordinatorId !== context.coordinatorId;
      return {
        leader: isOther ? holder : null,
        highestEpoch: Math.max(context.highestEpoch, holder?.epoch ?? 0),
      };
    }),
    recordLeaseCreated: assign(({ context, event }) => {
      assertEvent(event, "LEASE_CREATED");
      return {
        epoch: event.epoch,
        revision: event.revision,
        highestEpoch: Math.max(context.highestEpoch, event.epoch),
        leader: { coordinatorId: context.coordinatorId, epoch: event.epoch },
        leaseValidForMs: Math.max(0, context.timings.renewDeadlineMs - event.latencyMs),
      };
    }),
    recordRenewal: assign(({ context, event }) => {
      assertEvent(event, "LEASE_RENEWED");
      return {
        revision: event.revision,
        leaseValidForMs: Math.max(0, context.timings.renewDeadlineMs - event.latencyMs),
      };
    }),
    setStepDownReason: assign((_, params: { reason: ElectionReason }) => ({
      stepDownReason: params.reason,
    })),
    requestStop: assign({ stopRequested: true }),
    requestLeaseCreate: sendTo(outbox, { type: "lease.create" } satisfies ElectionCommand),
    requestRenewal: sendTo(
      outbox,
      ({ context }): ElectionCommand => ({
        type: "lease.renew",
        epoch: context.epoch,
        revision: context.revision,
      }),
    ),
    requestRelease: sendTo(
      outbox,
      ({ context }): ElectionCommand => ({
        type: "lease.release",
        epoch: context.epoch,
        revision: context.revision,
      }),
    ),
    stopMonitoring: sendTo(outbox, { type: "monitor.stop" } satisfies Command),
    publishHeartbeat: sendTo(
      outbox,
      ({ context }): ElectionCommand => ({
        type: "heartbeat.publish",
        epoch: context.epoch,
        resigning: false,
      }),
    ),
    publishResigningHeartbeat: sendTo(
      outbox,
      ({ context }): ElectionCommand => ({
        type: "heartbeat.publish",
        epoch: context.epoch,
        resigning: true,
      }),
    ),
    /** Emits the report of the transition being taken. */
    report: sendTo(outbox, ({ context }, params: ReportParams): ElectionCommand => {
      const body: ElectionReportBody = {
        type: params.type,
        epoch: params.type === "BecameLeader" ? context.epoch : (context.leader?.epoch ?? 0),
        state: STATE_AFTER[params.type],
        reason: params.reason ?? context.stepDownReason,
      };
      if (context.leader !== null) body.leaderId = context.leader.coordinatorId;
      if (params.fromLeadership === true) body.formerEpoch = context.epoch;
      return { type: "report.publish", report: body };
    }),
  },
}).createMachine({
  id: "election",
  description: "Elects one leader per cluster through a JetStream KV lease.",
  context: ({ input }) => ({
    coordinatorId: input.coordinatorId,
    timings: input.timings,
    random: input.random,
    monitor: input.monitor,
    backoffMs: 0,
    epoch: 0,
    revision: 0,
    leaseValidForMs: 0,
    highestEpoch: 0,
    leader: null,
    stepDownReason: "started",
    stopRequested: false,
  }),
  initial: "starting",
  invoke: { id: OUTBOX, src: "outbox", systemId: OUTBOX },
  states: {
    starting: {
      description: "Reports the start once the outbox runs (invoked actors start after entry actions).",
      always: {
        target: "follower",
        actions: { type: "report", params: { type: "BecameFollower", reason: "started" } },
      },
    },
    follower: {
      description:
        "Listens to the leader's heartbeats; stands for election after the leader timeout of silence, or at once when the leader resigns.",
      after: {
        leaderTimeout: {
          target: "candidate",
          actions: ["forgetLeader", { type: "report", params: { type: "BecameCandidate", reason: "leader-timeout" } }],
        },
      },
      on: {
        HEARTBEAT: [
          {
            guard: "isLeaderResignation",
            target: "candidate",
            actions: ["forgetLeader", { type: "report", params: { type: "BecameCandidate", reason: "leader-resigned" } }],
          },
          {
            guard: and(["isLiveLeaderHeartbeat", "isNewLeader"]),
            target: "follower",
            reenter: true,
            actions: ["followHeartbeatSender", { type: "report", params: { type: "FollowingLeader", reason: "leader-seen" } }],
          },
          { guard: "isLiveLeaderHeartbeat", target: "follower", reenter: true },
        ],
        RESIGN: {
          target: "stopped",
          actions: { type: "report", params: { type: "Stopped", reason: "shutdown" } },
        },
      },
    },
    candidate: {
      description: "Waits a random backoff, then tries to create the lease.",
      entry: "chooseBackoff",
      initial: "backoff",
      states: {
        backoff: {
          description: "A random wait in [backoff min, backoff max]; a live leader's heartbeat ends it.",
          after: { electionBackoff: "acquiring" },
          on: {
            HEARTBEAT: {
              guard: "isLiveLeaderHeartbeat",
              target: "#election.follower",
              actions: ["followHeartbeatSender", { type: "report", params: { type: "FollowingLeader", reason: "leader-seen" } }],
            },
            RESIGN: {
              target: "#election.stopped",
              actions: { type: "report", params: { type: "Stopped", reason: "shutdown" } },
            },
          },
        },
        acquiring: {
          description: "The lease create is in flight; its result decides.",
          entry: "requestLeaseCreate",
          on: {
            LEASE_CREATED: [
              { guard: "stopRequested", target: "#election.resigning", actions: "recordLeaseCreated" },
              { target: "#election.leader", actions: "recordLeaseCreated" },
            ],
            LEASE_TAKEN: [
              {
                guard: "stopRequested",
                target: "#election.stopped",
                actions: ["recordHolder", { type: "report", params: { type: "Stopped", reason: "shutdown" } }],
              },
              {
                target: "#election.follower",
                actions: ["recordHolder", { type: "report", params: { type: "BecameFollower", reason: "lost-election" } }],
              },
            ],
            LEASE_ERROR: [
              {
                guard: "stopRequested",
                target: "#election.stopped",
                actions: { type: "report", params: { type: "Stopped", reason: "shutdown" } },
              },
              {
                target: "#election.follower",
                actions: { type: "report", params: { type: "BecameFollower", reason: "lease-error" } },
              },
            ],
            RESIGN: { actions: "requestStop" },
          },
        },
      },
    },
    leader: {
      description:
        "Holds the lease: renews it and heartbeats every interval. Once the renew deadline passes without a successful renewal it publishes nothing until one renewal against its own revision decides whether it still leads.",
      type: "parallel",
      entry: ["publishHeartbeat", { type: "report", params: { type: "BecameLeader", reason: "won-election" } }],
      // The monitor lives exactly as long as the leadership: every way out of this state stops it.
      invoke: { id: "monitor", src: "monitor", systemId: "monitor", input: ({ context }) => ({ settings: context.monitor }) },
      exit: "stopMonitoring",
      on: {
        HEARTBEAT: {
          guard: "isNewerLeaderHeartbeat",
          target: "steppingDown",
          actions: [{ type: "setStepDownReason", params: { reason: "superseded" } }, "followHeartbeatSender"],
        },
        RESIGN: {
          target: "resigning",
          actions: ["forgetLeader", { type: "report", params: { type: "SteppedDown", reason: "shutdown", fromLeadership: true } }],
        },
      },
      states: {
        renewal: {
          initial: "waiting",
          description: "Renews the lease every heartbeat interval; a heartbeat follows each successful renewal.",
          states: {
            waiting: {
              description: "Until the next renewal; at once if the renew deadline has passed.",
              after: { heartbeatInterval: "renewing" },
              always: { guard: "leaseIsUnsure", target: "renewing" },
            },
            renewing: {
              description: "A renewal (KV update against the last revision) is in flight.",
              entry: "requestRenewal",
              on: {
                LEASE_RENEWED: [
                  { guard: "isFreshRenewal", target: "waiting", actions: ["recordRenewal", "publishHeartbeat"] },
                  // Its answer came too late to count: ask again at once, against the new revision.
                  { target: "renewing", reenter: true, actions: "recordRenewal" },
                ],
                LEASE_LOST: {
                  target: "#election.steppingDown",
                  actions: [{ type: "setStepDownReason", params: { reason: "lease-lost" } }, "forgetLeader"],
                },
                LEASE_ERROR: [
                  // Past the deadline a renewal without an answer may have landed or not:
                  // the leader cannot tell whether it still holds the lease, so it steps down.
                  {
                    guard: "leaseIsUnsure",
                    target: "#election.steppingDown",
                    actions: [{ type: "setStepDownReason", params: { reason: "renew-deadline-missed" } }, "forgetLeader"],
                  },
                  { target: "retrying" },
                ],
              },
            },
            retrying: {
              description:
                "The last renewal failed without an answer; try again soon, while the renew deadline still allows it, and at once if it has passed.",
              after: { renewRetry: "renewing" },
              always: { guard: "leaseIsUnsure", target: "renewing" },
            },
          },
        },
        lease: {
          description: "Watches the renew deadline on the actor's clock.",
          initial: "valid",
          states: {
            valid: {
              description: "The renew deadline has not passed; each successful renewal restarts it.",
              after: { renewDeadline: "unsure" },
              on: { LEASE_RENEWED: { guard: "isFreshRenewal", target: "valid", reenter: true } },
            },
            // Why this cannot make two leaders. The check is a KV update against the revision
            // of this leader's last successful write. It succeeds only if nobody wrote the key
            // since: no other coordinator created it (a create gives a new revision), and it
            // did not expire (an expired key has no last revision to match). So on success the
            // lease was this leader's all along, under the same epoch, and it is valid again
            // from when the check was sent, as after any renewal. Nothing is published between
            // the deadline and that success: no heartbeat, no election report, and the edge's
            // own fence (the driver's renew deadline) holds back pings and presence reports.
            // A check that fails, or gets no answer, steps down. A check whose answer was lost
            // may still have landed; the release that stepping down sends deletes that write
            // too (it retries against the holder's newer revision), and a success arriving
            // after the release is dropped by the driver, so it cannot revive the lease. At
            // worst the stray write keeps the key until its TTL, which delays the next leader
            // but never gives two.
            unsure: {
              description:
                "The renew deadline passed without a successful renewal (the process may have been paused). Publishes nothing while one renewal against its own revision decides: success leads on under the same epoch, keeping the monitor; failure or no answer steps down.",
              after: {
                leaseCheckTimeout: {
                  target: "#election.steppingDown",
                  actions: [{ type: "setStepDownReason", params: { reason: "renew-deadline-missed" } }, "forgetLeader"],
                },
              },
              on: { LEASE_RENEWED: { guard: "isFreshRenewal", target: "valid" } },
            },
          },
        },
      },
    },
    steppingDown: {
      description:
        "Leadership is lost: no more heartbeats or reports as leader. Releases the lease if it is still ours and learns who holds it now.",
      entry: [{ type: "report", params: { type: "SteppedDown", fromLeadership: true } }, "requestRelease"],
      after: { releaseTimeout: { target: "leavingLeadership", actions: "forgetLeader" } },
      on: {
        LEASE_RELEASED: { target: "leavingLeadership", actions: "recordHolder" },
        LEASE_ERROR: { target: "leavingLeadership", actions: "forgetLeader" },
        RESIGN: { actions: "requestStop" },
      },
    },
    leavingLeadership: {
      description: "Stepping down has ended (released, failed or timed out): stops if a stop was requested meanwhile, else follows.",
      always: [
        {
          guard: "stopRequested",
          target: "stopped",
          actions: { type: "report", params: { type: "Stopped", reason: "shutdown", fromLeadership: true } },
        },
        {
          target: "follower",
          actions: { type: "report", params: { type: "BecameFollower", reason: "stepped-down" } },
        },
      ],
    },
    resigning: {
      description:
        "Graceful step-down on shutdown: a last heartbeat with resigning: true, then the lease key is deleted against its revision.",
      entry: ["publishResigningHeartbeat", "requestRelease"],
      after: {
        releaseTimeout: {
          target: "stopped",
          actions: ["forgetLeader", { type: "report", params: { type: "Stopped", reason: "shutdown", fromLeadership: true } }],
        },
      },
      on: {
        LEASE_RELEASED: {
          target: "stopped",
          actions: ["forgetLeader", { type: "report", params: { type: "Stopped", reason: "shutdown", fromLeadership: true } }],
        },
        LEASE_ERROR: {
          target: "stopped",
          actions: ["forgetLeader", { type: "report", params: { type: "Stopped", reason: "shutdown", fromLeadership: true } }],
        },
      },
    },
    stopped: {
      description: "The coordinator has left the election.",
      type: "final",
    },
  },
});

export type ElectionMachine = typeof electionMachine;
