/**
 * The election machine: follower → candidate → leader, and the ways out of leadership
 * (stepping down after losing the lease, resigning on shutdown), wired from the parts in
 * election-setup.ts.
 *
 * Pure: it never touches NATS. Events come in (heartbeats heard, results of lease
 * operations, a request to stop); commands go out to the actor system's outbox (create, renew
 * or release the lease; publish a heartbeat; publish a report), which the driver in
 * `src/election/election-driver.ts` provides: it executes them and feeds the results back.
 * While leading, the `leader` state invokes the monitor, so every way out of leadership
 * stops it. Every wait is a named `after` delay on the actor's clock and the election backoff
 * comes from the injected `random` source, so a run is reproducible under a `SimulatedClock`.
 */
import { and } from "xstate";
import { OUTBOX } from "./commands.js";
import { electionSetup } from "./election-setup.js";

export type { ElectionCommand } from "./commands.js";
export type { ElectionContext, ElectionEvent, ElectionInput } from "./election-setup.js";

/** A candidate waiting to create the lease (backoff, lingering): a live leader's heartbeat ends the wait, and so does a stop. */
const WHILE_WAITING_TO_CREATE = {
  HEARTBEAT: {
    guard: "isLiveLeaderHeartbeat",
    target: "#election.follower",
    actions: ["followHeartbeatSender", { type: "report", params: { type: "FollowingLeader", reason: "leader-seen" } }],
  },
  RESIGN: {
    target: "#election.stopped",
    actions: { type: "report", params: { type: "Stopped", reason: "shutdown" } },
  },
} as const;

export const electionMachine = electionSetup.createMachine({
  id: "election",
  description: "Elects one leader per cluster through a JetStream KV lease.",
  context: ({ input }) => ({
    coordinatorId: input.coordinatorId,
    timings: input.timings,
    random: input.random,
    monitor: input.monitor,
    backoffMs: 0,
    handoff: false,
    createAttempts: 0,
    standingDelayMs: 0,
    handoverTo: null,
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
  on: {
    STANDING_DELAY: { actions: "setStandingDelay" },
  },
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
            guard: and(["isLeaderResignation", "namesMeSuccessor"]),
            target: "candidate",
            actions: ["forgetLeader", "acceptHandover", { type: "report", params: { type: "BecameCandidate", reason: "leader-resigned" } }],
          },
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
      description:
        "Waits a random backoff (none when named successor), then tries to create the lease; tries again shortly while a silent holder's lease lingers.",
      entry: "chooseBackoff",
      exit: "endCandidacy",
      initial: "backoff",
      states: {
        backoff: {
          description: "A random wait in [backoff min, backoff max]; a live leader's heartbeat ends it.",
          after: { electionBackoff: "acquiring" },
          on: WHILE_WAITING_TO_CREATE,
        },
        acquiring: {
          description: "The lease create is in flight; its result decides.",
          entry: ["countCreate", "requestLeaseCreate"],
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
              { guard: "isLingeringLease", target: "lingering" },
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
        lingering: {
          description:
            "The key is still held by a lease whose holder has gone silent: waits for it to expire, trying the create again at short intervals; a live leader's heartbeat ends it.",
          after: { leaseRetry: "acquiring" },
          on: WHILE_WAITING_TO_CREATE,
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
        HAND_OVER: {
          target: "handingOver",
          actions: [
            "setHandoverTo",
            "forgetLeader",
            { type: "report", params: { type: "SteppedDown", reason: "handover", fromLeadership: true } },
          ],
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
    handingOver: {
      description:
        "Balancing: a last heartbeat with resigning: true naming the successor, then the lease key is deleted against its revision; then it follows (or stops, if asked meanwhile).",
      entry: ["publishResigningHeartbeat", "requestRelease"],
      exit: "clearHandoverTo",
      after: { releaseTimeout: "leavingLeadership" },
      on: {
        // The successor often heartbeats before the release's answer is in: it is followed at once.
        HEARTBEAT: { guard: "isLiveLeaderHeartbeat", actions: "followHeartbeatSender" },
        LEASE_RELEASED: [
          { guard: "releasedToNobody", target: "leavingLeadership" },
          { target: "leavingLeadership", actions: "recordHolder" },
        ],
        LEASE_ERROR: { target: "leavingLeadership" },
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
