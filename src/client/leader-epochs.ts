/**
 * Which leader heartbeats concern a PresenceClient, and which of them name a new leader:
 * the client's half of partitioned leadership, without NATS or timers.
 *
 * Each partition has its own leader and its own epochs; a heartbeat names its partition
 * (`partition`, absent when the cluster runs one partition, i.e. partition 0). A client is
 * monitored by its own partition's leader only, so only that partition's new epochs matter
 * to it. It knows its partition when it is told the cluster's number of partitions
 * (`partitions`): `partitionOf(subject, partitions)`. Told nothing, it follows every
 * partition, which is exactly its own at one partition, and at more still safe: a new epoch
 * only makes the client register again when no ping follows it (see PresenceClient).
 */
import type { Heartbeat } from "../protocol/election.js";
import { partitionOf } from "../protocol/partition.js";

/** What one heartbeat means to the client. */
export interface HeartbeatVerdict {
  /** The heartbeat names a new, higher epoch of a partition the client follows. */
  newLeader: boolean;
  /** The heartbeat's partition (0 when it names none). */
  partition: number;
  /**
   * Set once, on the first heartbeat that shows that the cluster's number of partitions is
   * not the `partitions` the client was given: why. From then on the client follows every
   * partition.
   */
  mismatch: string | null;
}

export class LeaderEpochs {
  /** The client's partition; undefined: it follows every partition. */
  private own: number | undefined;
  /** Per partition followed, the highest epoch heard. */
  private readonly epochs = new Map<number, number>();

  /**
   * `partitions`: the cluster's number of partitions (undefined: unknown). Throws a
   * RangeError when it is not a whole number from 1 to MAX_PARTITIONS.
   */
  constructor(
    subject: string,
    private readonly partitions: number | undefined,
  ) {
    this.own = partitions === undefined ? undefined : partitionOf(subject, partitions);
  }

  /** The client's partition; undefined when it was not told the number of partitions, or that number proved wrong. */
  get partition(): number | undefined {
    return this.own;
  }

  /** The highest epoch heard of the client's partition; of any partition when that is unknown (0: none yet). */
  get epoch(): number {
    if (this.own !== undefined) return this.epochs.get(this.own) ?? 0;
    let highest = 0;
    for (const e of this.epochs.values()) if (e > highest) highest = e;
    return highest;
  }

  observe(hb: Heartbeat): HeartbeatVerdict {
    const partition = hb.partition ?? 0;
    const mismatch = this.checkCount(hb);
    // A resigning leader's last heartbeat carries its old epoch: not a new leader.
    if (hb.resigning === true) return { newLeader: false, partition, mismatch };
    if (this.own !== undefined && partition !== this.own) return { newLeader: false, partition, mismatch };
    if (hb.epoch <= (this.epochs.get(partition) ?? 0)) return { newLeader: false, partition, mismatch };
    this.epochs.set(partition, hb.epoch);
    return { newLeader: true, partition, mismatch };
  }

  /**
   * A heartbeat of a cluster of another number of partitions: follow every partition from
   * now on. Only a number too small shows this way (a heartbeat of a partition past it, or one
   * with a partition when it is 1); a number too large is not seen in heartbeats, and the
   * client then follows a partition that may not be its own.
   */
  private checkCount(hb: Heartbeat): string | null {
    const p = this.partitions;
    if (p === undefined || this.own === undefined) return null;
    let why: string | null = null;
    if (p === 1 && hb.partition !== undefined) why = `a heartbeat of partition ${hb.partition}, but partitions is 1`;
    else if (p > 1 && hb.partition === undefined) why = `a heartbeat without a partition (the cluster runs one), but partitions is ${p}`;
    else if (hb.partition !== undefined && hb.partition >= p) why = `a heartbeat of partition ${hb.partition}, but partitions is ${p}`;
    if (why === null) return null;
    this.own = undefined;
    return `${why} (from ${hb.coordinatorId}): the partitions option must equal the cluster's --partitions; following every partition`;
  }
}
