/**
 * The scale-out bench's readings and verdicts, kept pure so that they can be unit-tested:
 * who leads each partition as the heartbeats say, whether the partitions are balanced over
 * the live coordinators, how long each partition of a crashed coordinator went without a
 * leader, and whether each of n coordinators spends about 1/n of what one leader spends.
 */

/** One heartbeat of a partitioned cluster, as the bench heard it. */
export interface PartitionHeartbeat {
  /** ms, on the bench's clock. */
  atMs: number;
  coordinatorId: string;
  epoch: number;
  partition: number;
  resigning: boolean;
}

/**
 * Who leads each partition as its heartbeats say: the sender of the partition's latest
 * heartbeat; nobody after a resigning one, nor when none was heard for `staleMs` (its
 * leader is gone).
 */
export class PartitionLeaders {
  private readonly latest: (PartitionHeartbeat | undefined)[];

  constructor(
    readonly partitions: number,
    readonly staleMs: number,
  ) {
    this.latest = Array.from({ length: partitions }, () => undefined);
  }

  hear(hb: PartitionHeartbeat): void {
    if (hb.partition < 0 || hb.partition >= this.partitions) return;
    const seen = this.latest[hb.partition];
    if (seen === undefined || seen.atMs <= hb.atMs) this.latest[hb.partition] = hb;
  }

  /** Each partition's leader at `nowMs`, null where it has none. */
  leaders(nowMs: number): (string | null)[] {
    return this.latest.map((hb) => (hb === undefined || hb.resigning || nowMs - hb.atMs > this.staleMs ? null : hb.coordinatorId));
  }

  /** The highest epoch heard on any partition (0 before the first heartbeat). */
  highestEpoch(): number {
    return this.latest.reduce((e, hb) => Math.max(e, hb?.epoch ?? 0), 0);
  }
}

export interface Balance {
  /** Every partition led by a live coordinator, and max − min partitions led over the live ones at most 1. */
  balanced: boolean;
  /** Partitions led per live coordinator (0 for one that leads none). */
  led: Record<string, number>;
  /** Partitions with no leader heard. */
  free: number;
  /** Partitions led by a coordinator not in the live set. */
  byOthers: number;
}

/** Whether `leaders` (one per partition) spread the partitions evenly over `live`. */
export function balanceOf(leaders: readonly (string | null)[], live: readonly string[]): Balance {
  const led: Record<string, number> = {};
  for (const id of live) led[id] = 0;
  let free = 0;
  let byOthers = 0;
  for (const leader of leaders) {
    if (leader === null) free += 1;
    else if (leader in led) led[leader]! += 1;
    else byOthers += 1;
  }
  const counts = Object.values(led);
  const spread = counts.length === 0 ? Number.POSITIVE_INFINITY : Math.max(...counts) - Math.min(...counts);
  return { balanced: free === 0 && byOthers === 0 && spread <= 1, led, free, byOthers };
}

/** The partitions `id` leads in `leaders`. */
export function ledBy(leaders: readonly (string | null)[], id: string): number[] {
  return leaders.flatMap((leader, p) => (leader === id ? [p] : []));
}

export interface PartitionFailover {
  partition: number;
  /** Who sent the partition's first heartbeat after the crash; null when none did. */
  newLeader: string | null;
  /** The crash → that heartbeat, ms; null when none came. */
  ms: number | null;
}

/**
 * For each partition the crashed coordinator led: the time from the crash to the first
 * heartbeat of its new leader (any other coordinator, not resigning).
 */
export function failoverTimes(
  crashAtMs: number,
  victim: string,
  partitions: readonly number[],
  heartbeats: readonly PartitionHeartbeat[],
): PartitionFailover[] {
  return partitions.map((partition) => {
    const next = heartbeats.find(
      (hb) => hb.partition === partition && hb.atMs >= crashAtMs && !hb.resigning && hb.coordinatorId !== victim,
    );
    return next === undefined
      ? { partition, newLeader: null, ms: null }
      : { partition, newLeader: next.coordinatorId, ms: Math.round(next.atMs - crashAtMs) };
  });
}

/** How far above 1/n a coordinator's share of one leader's CPU may go and still count as "about 1/n". */
export const SHARE_TOLERANCE = 0.25;

export interface ShareVerdict {
  /** Each coordinator's CPU over the single leader's, in the order given. */
  shares: number[];
  /** 1/n. */
  target: number;
  /** The n coordinators' CPU together over the single leader's: what partitioning costs in all. */
  total: number;
  /** Every share at most (1 + SHARE_TOLERANCE) / n. */
  ok: boolean;
  reasons: string[];
}

/** Judges n coordinators' CPU (cores each) against one leader's (`singleCores`) doing the same clients alone. */
export function judgeShares(singleCores: number, cores: readonly number[], tolerance = SHARE_TOLERANCE): ShareVerdict {
  const n = cores.length;
  const target = 1 / n;
  const shares = cores.map((c) => c / singleCores);
  const total = cores.reduce((a, c) => a + c, 0) / singleCores;
  const reasons: string[] = [];
  if (!(singleCores > 0)) reasons.push("the single leader's CPU was not measured");
  else {
    const bound = target * (1 + tolerance);
    shares.forEach((s, i) => {
      if (!(s <= bound)) reasons.push(`coordinator ${i + 1} of ${n} spent ${s.toFixed(2)} of one leader's CPU, above ${bound.toFixed(2)}`);
    });
  }
  return { shares, target, total, ok: reasons.length === 0, reasons };
}
