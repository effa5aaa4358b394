/**
 * The balancer: a coordinator's elections, one per partition, kept in balance with the other
 * coordinators' (design §5, Partitions). Every heartbeat interval it looks at who is live
 * (membership.ts) and who leads each partition (its own elections know, from the heartbeats),
 * and applies the balancing plan (balance-plan.ts):
 *
 * - the surplus over its target is handed over, a few partitions a round, each by a
 *   resigning heartbeat that names its successor, who takes the lease at once;
 * - every partition's standing delay is set from the partition's order of heirs, so a free
 *   partition is stood for by everyone, its heir first.
 *
 * It hands nothing over until it has heard the cluster for a leader timeout, nor while any
 * partition is free: those are taken by their heirs first, and a plan made on a partial view
 * would move partitions back and forth.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "../observe/logger.js";
import { heirs, planBalance, standingDelays } from "./balance-plan.js";

/** What the balancer uses of one partition's election (the ElectionDriver). */
export interface BalancedElection {
  readonly isLeader: boolean;
  /** Who leads the partition as far as this coordinator knows: itself while leading, else the one it follows. */
  readonly leaderId: string | null;
  handOver(successor: string): void;
  setStandingDelay(ms: number): void;
}

export interface BalancerOptions {
  coordinatorId: string;
  /** One per partition, by partition. */
  elections: readonly BalancedElection[];
  /** The live coordinators' ids (this one's included or not). */
  live: () => readonly string[];
  /** The live coordinators that may receive a handover: live for a while, so that they have heard every partition's leader. */
  ready: () => readonly string[];
  /** How often it plans: the heartbeat interval. */
  intervalMs: number;
  /** How long it listens before its first handover: the leader timeout. */
  settleMs: number;
  /** The most partitions it hands over per round. */
  maxMovesPerRound: number;
  /** The standing delay per place in a partition's order of heirs (at least the backoff's spread). */
  standingStepMs: number;
  /** The most places counted. */
  maxRanks: number;
  logger: Logger;
}

/** Partitions handed over per round: a few, so that a new coordinator does not make all the clients change hands at once. */
export const MAX_MOVES_PER_ROUND = 2;

export class Balancer {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = performance.now();
  private readonly log: Logger;
  /** Fixed when the coordinator stops: the successor each led partition is handed to. */
  private stopPlan: Map<number, string> | null = null;

  constructor(private readonly options: BalancerOptions) {
    this.log = options.logger.child({ component: "balancer" });
  }

  start(): void {
    this.round();
    this.timer = setInterval(() => this.round(), this.options.intervalMs);
  }

  /**
   * Stops planning, and fixes whom each partition this coordinator leads goes to when it
   * resigns: the partition's heir, so that its partitions spread over the others.
   */
  stop(): void {
    clearInterval(this.timer);
    if (this.stopPlan !== null) return;
    const { coordinatorId } = this.options;
    const leaders = this.leaders();
    const live = this.live().filter((id) => id !== coordinatorId);
    const order = heirs(live, leaders);
    this.stopPlan = new Map();
    leaders.forEach((leader, p) => {
      const heir = order[p]?.[0];
      if (leader === coordinatorId && heir !== undefined) this.stopPlan!.set(p, heir);
    });
  }

  /** The successor a resigning leader of `partition` names: its heir when the coordinator stops (see stop). */
  successorFor(partition: number): string | undefined {
    if (this.stopPlan === null) this.stop();
    return this.stopPlan!.get(partition);
  }

  private leaders(): (string | null)[] {
    return this.options.elections.map((e) => e.leaderId);
  }

  private live(): string[] {
    const live = new Set(this.options.live());
    live.add(this.options.coordinatorId);
    return [...live];
  }

  /** One round: the standing delays, then (once settled, with every partition led) the handovers. */
  round(): void {
    const { coordinatorId: self, elections, standingStepMs, maxRanks } = this.options;
    const leaders = this.leaders();
    const live = this.live();
    const delays = standingDelays(self, heirs(live, leaders), standingStepMs, maxRanks);
    elections.forEach((e, p) => {
      e.setStandingDelay(delays[p]!);
    });
    if (performance.now() - this.startedAt < this.options.settleMs || leaders.includes(null)) return;
    const plan = planBalance({
      self,
      partitions: elections.length,
      live,
      leaders,
      maxMovesPerRound: this.options.maxMovesPerRound,
      ready: this.options.ready(),
    });
    for (const { partition, successor } of plan.handovers) {
      this.log.info("handing a partition over to balance the cluster", {
        partition,
        successor,
        led: plan.led,
        target: plan.target,
        live: live.length,
      });
      elections[partition]!.handOver(successor);
    }
  }
}
