/**
 * What a chaos run records, for its checks to judge: the reports the observer saw (with
 * their arrival times), the heartbeats, and the harness's own actions on its clients (the
 * ground truth), with the timing bounds the checks allow. The checks themselves are in the
 * other files of this folder; run-checks.ts lists them.
 *
 * All times are ms on one monotonic clock (performance.now() of the chaos process):
 * arrival times at the observer for reports, and the moment the harness acted for client
 * actions (for a registration: when JetStream acknowledged it, so it is stored).
 *
 * "Answering" means the simulated client replies to pings: it is registered and not
 * silenced (a client that unregistered stops answering). The clients and the observer
 * are connected to the one NATS server the run never stops, so a client never stops
 * answering because its own server is down; a stopped server only disturbs coordinators
 * (and the JetStream replicas), which is what the run is after.
 */

export interface ChaosTimings {
  deadTimeoutMs: number;
  pingIntervalMs: number;
  /** Time a report may spend between the leader's decision and its arrival at the observer. */
  travelMs: number;
  /**
   * Slack on top of dead timeout + ping interval for a NodeDead (loading registrations
   * after a takeover, a busy 2-core machine). The dead timer of a client restarts at a
   * takeover, so the bound is measured from the later of the silencing and the takeover.
   */
  deathAllowanceMs: number;
  /** After a failover, every registered client must get a report of the new epoch within this. */
  takeoverBoundMs: number;
  /** A registration acknowledged this long before a NodeDead may still be in flight to the leader. */
  registrationSlackMs: number;
  /** A stored registration must be reported NodePresent within this (more when a takeover comes in between). */
  registrationBoundMs: number;
  /** The leader's heartbeat period: heartbeats further apart than this plus the travel allowance mark a blind window. */
  heartbeatIntervalMs: number;
  /**
   * Slack on top of ping interval + travel for a NodeDead of a client that answers again:
   * the leader sends its next ping within a ping interval, and the reply restarts the dead
   * timer, so a client answering longer than ping interval + travel + this is not dead.
   */
  answerSlackMs: number;
  /** An acknowledged unregistration must be reported NodeLeft within this (from a takeover, or a blind window's end, when one comes in between). */
  leaveBoundMs: number;
}

export const DEFAULT_CHAOS_TIMINGS: ChaosTimings = {
  deadTimeoutMs: 5000,
  pingIntervalMs: 750,
  travelMs: 250,
  deathAllowanceMs: 2000,
  takeoverBoundMs: 5000,
  registrationSlackMs: 2000,
  registrationBoundMs: 8000,
  heartbeatIntervalMs: 1000,
  answerSlackMs: 500,
  leaveBoundMs: 3000,
};

export type ClientActionKind = "register" | "unregister" | "silence" | "revive";

/** Something the harness did to one simulated client. */
export interface ClientAction {
  at: number;
  subject: string;
  kind: ClientActionKind;
}

/** A presence report as the observer saw it. */
export interface SeenPresence {
  at: number;
  type: string;
  clientSubject: string;
  coordinatorId: string;
  epoch: number;
  seq: number;
  /** The report's partition; absent for partition 0 (and in every report of a cluster of one partition). */
  partition?: number;
}

export interface SeenHeartbeat {
  at: number;
  coordinatorId: string;
  epoch: number;
  resigning?: boolean;
  /** The partition it is for; absent in a cluster of one partition. */
  partition?: number;
  /** On a resigning heartbeat, whom the partition is handed to. */
  successor?: string;
}

export interface SeenElection {
  at: number;
  type: string;
  coordinatorId: string;
  epoch: number;
  reason?: string;
  formerEpoch?: number;
  /** The partition whose election it is; absent in a cluster of one partition. */
  partition?: number;
}

/** A fault that could take the leader away (for the failover durations). */
export interface LeadershipFault {
  at: number;
  kind: string;
}

export interface ChaosRecord {
  presence: SeenPresence[];
  heartbeats: SeenHeartbeat[];
  elections: SeenElection[];
  actions: ClientAction[];
  /** Every subject the harness ever used for a well-formed client. */
  subjects: Set<string>;
  /** When observation ended. */
  endAt: number;
  /**
   * Times the harness's own event loop stood still (its simulated clients answered nothing,
   * and arrivals were stamped late): blind windows, like a leader's heartbeat gaps.
   */
  harnessStalls?: Window[];
  /** The malformed registrations the harness sent, with the subject each names (if any). */
  refused?: RefusedInput[];
  /** Pings the simulated clients received on a refused registration's subject. */
  trappedPings?: { at: number; subject: string }[];
  /** The faults that hit the leader (SIGSTOP, SIGKILL, SIGTERM, a server stop). */
  leadershipFaults?: LeadershipFault[];
}

/** A span of time [from, to] on the run's clock. */
export interface Window {
  from: number;
  to: number;
}

/** A malformed registration the harness sent: which kind of refusal it tests, and the subject it names if it names one. */
export interface RefusedInput {
  at: number;
  kind: string;
  subject?: string;
}

/**
 * Every kind of malformed registration a chaos run sends, each at least once: a coordinator
 * must refuse them all, never ping their subject and never report it.
 */
export const REFUSED_KINDS = [
  "not-json",
  "not-an-object",
  "no-subject",
  "subject-not-a-string",
  "empty-subject",
  "wildcard-star",
  "wildcard-gt",
  "whitespace",
  "empty-token",
  "dollar",
  "inbox",
  "presence-namespace",
  "coordinator-namespace",
  "too-long-subject",
  "over-64-kib",
  "bad-utf-8",
] as const;
export type RefusedKind = (typeof REFUSED_KINDS)[number];
