/**
 * The parts the election machine is made of: its input, events and context, and the named
 * delays, guards and actions of its `setup` (design §5, §6). The chart that wires them into
 * states and transitions is in election.ts.
 *
 * Every wait is a named delay on the actor's clock, and the only randomness (the election
 * backoff) comes from the context's `random` source. Guards and actions that read an event's
 * fields assert its type: wired to another event, they throw rather than do nothing.
 */
import { assertEvent, assign, fromCallback, sendTo, setup, stateIn } from "xstate";
import type { ElectionTimings } from "../config/config.js";
import type { ElectionReason, ElectionReportBody, ElectionReportType, LeaseHolder } from "../protocol/election.js";
import { outbox, type Command, type ElectionCommand } from "./commands.js";
import { monitorMachine, type MonitorSettings } from "./monitor.js";
import type { RandomSource } from "./random.js";

export interface ElectionInput {
  coordinatorId: string;
  timings: ElectionTimings;
  /** Seeded, so that runs can be replayed. */
  random: RandomSource;
  /** Settings of the monitor this coordinator runs while it leads. */
  monitor: MonitorSettings;
}

export type ElectionEvent =
  /**
   * A heartbeat heard on the cluster's heartbeat subject (own heartbeats included). A
   * resigning one may name the coordinator it hands over to (`successor`).
   */
  | { type: "HEARTBEAT"; coordinatorId: string; epoch: number; resigning: boolean; successor?: string }
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
  | { type: "RESIGN" }
  /**
   * Balancing: a leader hands its lease to `successor` (named in its resigning heartbeat)
   * and follows on; anyone else ignores it.
   */
  | { type: "HAND_OVER"; successor: string }
  /**
   * Balancing: from now on, wait `ms` more before standing for election (not when named
   * successor), so that coordinators that lead fewer partitions stand first.
   */
  | { type: "STANDING_DELAY"; ms: number };

export interface ElectionContext {
  coordinatorId: string;
  timings: ElectionTimings;
  random: RandomSource;
  monitor: MonitorSettings;
  /** The backoff chosen on entering `candidate`. */
  backoffMs: number;
  /** This candidacy was handed over: the resigning leader named this coordinator its successor. */
  handoff: boolean;
  /** Lease creates sent in this candidacy. */
  createAttempts: number;
  /** Added to every backoff but a named successor's (STANDING_DELAY); 0 unless balancing. */
  standingDelayMs: number;
  /** While handing the lease over (HAND_OVER): the successor its resigning heartbeat names. */
  handoverTo: string | null;
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

/** What the `report` action is told by the transition that runs it. */
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

/** How often a candidate tries again to create a lease that lingers: two thirds of the shortest backoff (100 ms by default). */
export function leaseRetryMs(t: ElectionTimings): number {
  return Math.max(1, Math.round((t.electionBackoffMinMs * 2) / 3));
}

/** A named successor's first retries: a fifteenth of the shortest backoff (10 ms by default). */
export function handoffRetryMs(t: ElectionTimings): number {
  return Math.max(1, Math.round(t.electionBackoffMinMs / 15));
}

/** A named successor tries this many times at handoffRetryMs before it slows to leaseRetryMs. */
const FAST_HANDOFF_RETRIES = 5;

/**
 * The creates a candidacy may send while a lease lingers. A lease outlives the followers'
 * timeout by at most a heartbeat interval, and the first create goes out after at least the
 * shortest backoff, so tries at leaseRetryMs over a heartbeat interval plus the longest
 * backoff cover it, with one to spare.
 */
export function maxCreateAttempts(t: ElectionTimings): number {
  return Math.ceil((t.heartbeatIntervalMs + t.electionBackoffMaxMs) / leaseRetryMs(t)) + FAST_HANDOFF_RETRIES + 1;
}

export const electionSetup = setup({
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
    /**
     * Wait before a candidate tries the create again when a lease it has no heartbeat from
     * still holds the key (see isLingeringLease). A named successor, whose predecessor is
     * deleting the key right now, first tries again sooner; one with a standing delay (not the
     * partition's heir) tries that much later each time, so that the heir takes the lease
     * when it expires.
     */
    leaseRetry: ({ context }) =>
      context.handoff && context.createAttempts <= FAST_HANDOFF_RETRIES
        ? handoffRetryMs(context.timings)
        : leaseRetryMs(context.timings) + (context.handoff ? 0 : context.standingDelayMs),
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
    /** The heartbeat names this coordinator the successor (checked together with isLeaderResignation). */
    namesMeSuccessor: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return event.successor === context.coordinatorId;
    },
    /**
     * The create failed on a lease whose holder this candidate has no heartbeat from: the
     * holder of the epoch it last knew (or an older one), whose heartbeats stopped. Such a
     * lease is only waiting for its TTL (a leader killed between its renewal and its
     * heartbeat leaves one that outlives the leader timeout by up to a heartbeat interval),
     * so the candidate tries again shortly instead of waiting a whole leader timeout. The
     * tries are counted, not timed against the server's clock, and bounded by
     * maxCreateAttempts. A holder of a newer epoch has just won and heartbeats at once.
     */
    isLingeringLease: ({ context, event }) => {
      assertEvent(event, "LEASE_TAKEN");
      const holder = event.holder;
      return (
        holder !== null &&
        holder.coordinatorId !== context.coordinatorId &&
        holder.epoch <= context.highestEpoch &&
        context.createAttempts < maxCreateAttempts(context.timings)
      );
    },
    /** While leading: another coordinator heartbeats under a higher epoch, so this lease is gone. */
    isNewerLeaderHeartbeat: ({ context, event }) => {
      assertEvent(event, "HEARTBEAT");
      return event.coordinatorId !== context.coordinatorId && event.epoch > context.epoch;
    },
    stopRequested: ({ context }) => context.stopRequested,
    /** The release left the key free (nobody had created it yet when it was read). */
    releasedToNobody: ({ event }) => {
      assertEvent(event, "LEASE_RELEASED");
      return event.holder === null;
    },
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
    /** A named successor stands at once; everyone else waits a random backoff. */
    chooseBackoff: assign({
      backoffMs: ({ context }) => {
        if (context.handoff) return 0;
        const { electionBackoffMinMs: min, electionBackoffMaxMs: max } = context.timings;
        return context.random.int(min, max) + context.standingDelayMs;
      },
      createAttempts: 0,
    }),
    acceptHandover: assign({ handoff: true }),
    setStandingDelay: assign({
      standingDelayMs: ({ event }) => {
        assertEvent(event, "STANDING_DELAY");
        return Math.max(0, event.ms);
      },
    }),
    setHandoverTo: assign({
      handoverTo: ({ event }) => {
        assertEvent(event, "HAND_OVER");
        return event.successor;
      },
    }),
    clearHandoverTo: assign({ handoverTo: null }),
    endCandidacy: assign({ handoff: false }),
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
    countCreate: assign({ createAttempts: ({ context }) => context.createAttempts + 1 }),
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
        ...(context.handoverTo !== null ? { successor: context.handoverTo } : {}),
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
});
