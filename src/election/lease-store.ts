/**
 * The leader lease, behind a small interface: take it (KV create), renew it (KV update
 * against the last revision), release it (KV delete against the last revision) and read
 * who holds it. `KvLeaseStore` keeps it in the JetStream KV bucket
 * `coordinator-leadership-{cluster}`, key `leader` (`leader.{p}` for partition p when the
 * cluster runs more than one), whose TTL is the leader timeout.
 *
 * The number of partitions a cluster runs is recorded in the bucket's description
 * (`partitions=P`), which, unlike a key, does not expire; a bucket without it (made by an
 * earlier version or by the Java original) runs one.
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import { ConfigError } from "../config/config.js";
import { encodeLeaseValue, LEASE_KEYS, leaseKeyOf, parseLeaseValue, resources, type LeaseHolder } from "../protocol/election.js";
import { isWrongRevision } from "../nats/jetstream-errors.js";
import { describeError, type Logger } from "../observe/logger.js";

export interface LeaseStore {
  /** Takes the lease if nobody holds it. Throws LeaseTakenError when someone does. */
  acquire(coordinatorId: string): Promise<{ epoch: number; revision: number }>;
  /**
   * Renews the lease written at `revision` (a compare-and-swap). Throws LeaseLostError when
   * the key has another revision, and also when it expired: an expired key has no revision
   * left to match. A success therefore proves that nobody wrote the key since `revision`.
   */
  renew(holder: LeaseHolder, revision: number): Promise<number>;
  /**
   * Deletes the lease if it is still `holder`'s: against `revision`, and, if a write of
   * the holder's landed since (a renewal that was in flight), against that one's revision.
   * Does nothing when someone else holds the lease.
   */
  release(holder: LeaseHolder, revision: number): Promise<void>;
  /** Who holds the lease now, or null. */
  holder(): Promise<LeaseHolder | null>;
}

/** A lease operation failed for a reason other than the lease's state (timeout, no connection, server error). */
export class LeaseStoreError extends Error {
  override readonly name = "LeaseStoreError";
  constructor(operation: string, cause: unknown) {
    super(`lease store: ${operation} failed: ${describeError(cause)}`, { cause });
  }
}

/** The lease create was refused: the key exists, so someone holds the lease. */
export class LeaseTakenError extends Error {
  override readonly name = "LeaseTakenError";
  constructor(cause: unknown) {
    super("lease store: the lease is held by another coordinator", { cause });
  }
}

/** A renewal was refused because the lease's revision changed: someone else holds it now. */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(revision: number, cause: unknown) {
    super(`lease store: the lease is no longer at revision ${revision}`, { cause });
  }
}

/** The lease bucket could not be created, opened or brought to the configured TTL. */
export class LeaseBucketError extends Error {
  override readonly name = "LeaseBucketError";
}

export interface KvLeaseStoreOptions {
  clusterId: string;
  /** The bucket's TTL: the leader timeout. */
  ttlMs: number;
  replicas: number;
  /** Timeout of each lease operation. */
  timeoutMs: number;
  /** How many partitions this coordinator runs (default 1): recorded in the bucket, see reconcilePartitions. */
  partitions?: number;
  logger: Logger;
}

const PARTITIONS_RECORD = /(?:^|;\s*)partitions=(\d+)/;

/** The number of partitions a leadership bucket's description records; 1 when it records none. */
export function recordedPartitions(description: string | undefined): number {
  const m = PARTITIONS_RECORD.exec(description ?? "");
  return m ? Number(m[1]) : 1;
}

/** The description that records `partitions`. */
function partitionsRecord(partitions: number): string {
  return `presence coordinator leadership; partitions=${partitions}`;
}

export class KvLeaseStore implements LeaseStore {
  /** A lease store on a bucket already open (`open` prepares the bucket first). */
  constructor(
    private readonly kv: KV,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
    /** The key this store's lease lives under (leaseKeyOf). */
    readonly key: string = resources.leaseKey,
  ) {}

  /** The lease of `partition` of `partitions`, in the same bucket. */
  forPartition(partition: number, partitions: number): KvLeaseStore {
    return new KvLeaseStore(this.kv, this.timeoutMs, this.logger, leaseKeyOf(partition, partitions));
  }

  /**
   * Opens the lease bucket, creating it if absent. An existing bucket with another TTL or
   * replica count (the leader timeout changed) is updated to the configured values, and
   * the change is logged: a lease that outlives the leader timeout would delay failover.
   */
  static async open(nc: NatsConnection, options: KvLeaseStoreOptions): Promise<KvLeaseStore> {
    const bucket = resources.leadershipBucket(options.clusterId);
    const log = options.logger;
    // Creating a replicated bucket may take seconds; lease operations get the short timeout.
    const js = jetstream(nc);
    try {
      await new Kvm(js).create(bucket, {
        ttl: options.ttlMs,
        history: 1,
        replicas: options.replicas,
      });
      const kv = await new Kvm(jetstream(nc, { timeout: options.timeoutMs })).open(bucket);
      const status = await kv.status();
      const info = status.streamInfo;
      if (status.ttl !== options.ttlMs) {
        // Shortening the TTL under a running leader would let its lease expire before its
        // renew deadline, so refuse while someone leads with other settings.
        const entry = await kv.get(resources.leaseKey);
        if (entry !== null && entry.operation === "PUT") {
          const holder = parseLeaseValue(entry.value, entry.revision);
          throw new LeaseBucketError(
            `lease store: bucket ${bucket} has a TTL of ${status.ttl} ms, but this coordinator's --leader-timeout is ${options.ttlMs} ms, and ${holder.coordinatorId} leads under the old setting. Every coordinator of a cluster must use the same --leader-timeout: start this one with --leader-timeout ${status.ttl}, or stop the others first.`,
          );
        }
      }
      const update: { max_age?: number; duplicate_window?: number; num_replicas?: number } = {};
      if (status.ttl !== options.ttlMs) {
        update.max_age = nanos(options.ttlMs);
        // The server refuses a duplicate window longer than the max age.
        if (info.config.duplicate_window > nanos(options.ttlMs)) update.duplicate_window = nanos(options.ttlMs);
      }
      if (info.config.num_replicas !== options.replicas) update.num_replicas = options.replicas;
      if (Object.keys(update).length > 0) {
        const jsm = await js.jetstreamManager();
        await jsm.streams.update(info.config.name, update);
        log.warn("updated the existing lease bucket to this coordinator's settings", {
          bucket,
          ttlMs: `${status.ttl} -> ${options.ttlMs}`,
          replicas: `${info.config.num_replicas} -> ${options.replicas}`,
        });
      }
      await reconcilePartitions(kv, js, info.config.name, info.config.description, options.partitions ?? 1, log);
      log.debug("lease bucket ready", { bucket, ttlMs: options.ttlMs, replicas: options.replicas });
      return new KvLeaseStore(kv, options.timeoutMs, log);
    } catch (err) {
      if (err instanceof LeaseBucketError || err instanceof ConfigError) throw err;
      throw new LeaseBucketError(`lease store: cannot prepare KV bucket ${bucket}: ${describeError(err)}`, {
        cause: err,
      });
    }
  }

  async acquire(coordinatorId: string): Promise<{ epoch: number; revision: number }> {
    let epoch: number;
    try {
      epoch = await this.kv.create(this.key, encodeLeaseValue({ coordinatorId, epoch: 0 }));
    } catch (err) {
      if (isWrongRevision(err)) throw new LeaseTakenError(err);
      await this.releaseUnstamped(coordinatorId);
      throw new LeaseStoreError("create", err);
    }
    // The epoch is the revision the create returned; stamp it into the value, so that
    // anyone reading the lease sees it. Nobody else can write in between but by an update
    // against this revision, which only the holder knows.
    try {
      const revision = await this.renew({ coordinatorId, epoch }, epoch);
      return { epoch, revision };
    } catch (err) {
      // A lease nobody acts on would only delay the next election by a leader timeout.
      await this.release({ coordinatorId, epoch }, epoch).catch((releaseErr: unknown) =>
        this.logger.debug("could not release a lease whose stamp failed; it expires", { error: describeError(releaseErr) }),
      );
      throw err;
    }
  }

  /**
   * A create that failed without an answer may still have been applied. Such a lease is
   * recognisable: it still has the value of a create (epoch 0), because only the creator
   * stamps it, and the creator did not. It is deleted against that very revision, so a
   * lease that has been stamped since (another process with the same --coordinator-id that
   * really took it) is never touched.
   */
  private async releaseUnstamped(coordinatorId: string): Promise<void> {
    try {
      const entry = await this.kv.get(this.key);
      if (entry === null || entry.operation !== "PUT") return;
      const value = entry.json<{ coordinatorId?: unknown; epoch?: unknown }>();
      if (value.coordinatorId !== coordinatorId || value.epoch !== 0) return;
      await this.kv.delete(this.key, { previousSeq: entry.revision });
      this.logger.info("released a lease that a failed create had taken after all", { revision: entry.revision });
    } catch (err) {
      this.logger.debug("could not check for a lease left by a failed create", { error: describeError(err) });
    }
  }

  /**
   * Renews against `revision`. A renewal that timed out may still have landed, and moved the
   * revision: then the key holds this very holder's value (coordinator id and epoch: only
   * the holder of an epoch writes it) at a newer revision, and the renewal is made again
   * against that one. Any other value, or none, means the lease was lost.
   */
  async renew(holder: LeaseHolder, revision: number): Promise<number> {
    const value = encodeLeaseValue(holder);
    try {
      return await this.kv.update(this.key, value, revision, this.timeoutMs);
    } catch (err) {
      if (!isWrongRevision(err)) throw new LeaseStoreError("renew", err);
      const entry = await this.entry();
      if (
        entry === null ||
        entry.holder.coordinatorId !== holder.coordinatorId ||
        entry.holder.epoch !== holder.epoch ||
        entry.revision <= revision
      ) {
        throw new LeaseLostError(revision, err);
      }
      this.logger.info("a renewal that timed out had landed; renewing against its revision", { revision, landed: entry.revision });
      try {
        return await this.kv.update(this.key, value, entry.revision, this.timeoutMs);
      } catch (again) {
        if (isWrongRevision(again)) throw new LeaseLostError(entry.revision, again);
        throw new LeaseStoreError("renew", again);
      }
    }
  }

  async release(holder: LeaseHolder, revision: number): Promise<void> {
    let expected = revision;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.kv.delete(this.key, { previousSeq: expected });
        return;
      } catch (err) {
        if (!isWrongRevision(err)) throw new LeaseStoreError("release", err);
      }
      // Someone wrote since: if it was this holder (a renewal in flight), delete that write.
      const entry = await this.entry();
      if (entry === null || entry.holder.coordinatorId !== holder.coordinatorId || entry.holder.epoch !== holder.epoch) {
        return;
      }
      expected = entry.revision;
    }
  }

  async holder(): Promise<LeaseHolder | null> {
    return (await this.entry())?.holder ?? null;
  }

  private async entry(): Promise<{ holder: LeaseHolder; revision: number } | null> {
    let entry: Awaited<ReturnType<KV["get"]>>;
    try {
      entry = await this.kv.get(this.key);
    } catch (err) {
      throw new LeaseStoreError("read", err);
    }
    if (entry === null || entry.operation !== "PUT") return null;
    return { holder: parseLeaseValue(entry.value, entry.revision), revision: entry.revision };
  }
}

/**
 * Brings the bucket's record of the number of partitions to `partitions`. Every coordinator
 * of a cluster must run the same number: while any partition has a leader under another
 * number this one refuses to start (a ConfigError, exit 2) naming the number to use; when
 * nobody leads, it records its own number and warns.
 */
async function reconcilePartitions(
  kv: KV,
  js: ReturnType<typeof jetstream>,
  stream: string,
  description: string | undefined,
  partitions: number,
  log: Logger,
): Promise<void> {
  const recorded = recordedPartitions(description);
  if (recorded === partitions) return;
  const leaders: string[] = [];
  // One filter at a time: filters in a list need nats-server 2.10.
  for (const filter of LEASE_KEYS) {
    for await (const key of await kv.keys(filter)) {
      const entry = await kv.get(key);
      if (entry !== null && entry.operation === "PUT")
        leaders.push(`${parseLeaseValue(entry.value, entry.revision).coordinatorId} (${key})`);
    }
  }
  if (leaders.length > 0) {
    throw new ConfigError(
      "--partitions",
      `${partitions} does not match the cluster, which runs ${recorded} partition${recorded === 1 ? "" : "s"} and is led by ${leaders.slice(0, 3).join(", ")}${leaders.length > 3 ? ` and ${leaders.length - 3} more` : ""}. Every coordinator of a cluster must use the same --partitions: start this one with --partitions ${recorded}, or stop the others first.`,
    );
  }
  const jsm = await js.jetstreamManager();
  await jsm.streams.update(stream, { description: partitionsRecord(partitions) });
  log.warn("nobody leads: recorded this coordinator's number of partitions in the lease bucket", {
    partitions: `${recorded} -> ${partitions}`,
  });
}
