/**
 * Who is in the cluster: every coordinator keeps a member key in the leadership bucket
 * (`member.{id}`, see memberKey), written every heartbeat interval with how many partitions
 * it leads, and watches everyone else's. The bucket's TTL (the leader timeout) removes the
 * key of a coordinator that died; one that stops deletes its key.
 *
 * KV does not tell a watcher when a key expires, so a member counts as live while its last
 * write was seen within the leader timeout, on this process's monotonic clock (never the
 * server's timestamps, which may be skewed from ours).
 *
 * A resigning leader names its successor from here: the live coordinator that leads the
 * fewest partitions.
 */
import { performance } from "node:perf_hooks";
import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { memberKey, MEMBER_KEYS, parseMemberValue, resources, type MemberValue } from "../protocol/election.js";
import { describeError, type Logger } from "../observe/logger.js";

export interface MembershipOptions {
  clusterId: string;
  coordinatorId: string;
  /** How often the own member key is written: the heartbeat interval. */
  intervalMs: number;
  /** How long a member counts as live after its last write was seen: the leader timeout. */
  livenessMs: number;
  /** Timeout of each KV operation. */
  timeoutMs: number;
  /** How many partitions this coordinator leads now; read at every write. */
  led: () => number;
  logger: Logger;
}

interface Seen {
  value: MemberValue;
  /** When its last write was seen (performance.now). */
  at: number;
  /** When it was first seen live, this time round. */
  since: number;
}

/** How long a failed member watch waits before it is started again. */
const WATCH_RESTART_MS = 1000;

/** The live coordinators of a cluster, as seen through their member keys. */
export class Membership {
  /** By member key. */
  private readonly members = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;
  private stopWatching: (() => void) | undefined;
  private lastLed = -1;
  private writing = false;
  /** Left or halted: nothing is written or watched any more. */
  private ended = false;

  private constructor(
    private readonly kv: KV,
    private readonly options: MembershipOptions,
  ) {}

  /** Opens the (already prepared) leadership bucket, writes the own key and starts watching the others. */
  static async join(nc: NatsConnection, options: MembershipOptions): Promise<Membership> {
    const kv = await new Kvm(jetstream(nc, { timeout: options.timeoutMs })).open(resources.leadershipBucket(options.clusterId));
    const membership = new Membership(kv, options);
    await membership.watch();
    await membership.write();
    membership.timer = setInterval(() => void membership.write(), options.intervalMs);
    return membership;
  }

  /** The live coordinators, this one included, by id. */
  live(): MemberValue[] {
    const cutoff = performance.now() - this.options.livenessMs;
    const live: MemberValue[] = [];
    for (const seen of this.members.values()) if (seen.at >= cutoff) live.push(seen.value);
    return live.sort((a, b) => (a.coordinatorId < b.coordinatorId ? -1 : a.coordinatorId > b.coordinatorId ? 1 : 0));
  }

  /**
   * The live coordinators that have been live for at least `minAgeMs`: a coordinator that has
   * just joined has not heard every partition's leader yet, and would not take a handover.
   */
  settled(minAgeMs: number): string[] {
    const now = performance.now();
    const cutoff = now - this.options.livenessMs;
    const ids: string[] = [];
    for (const seen of this.members.values()) if (seen.at >= cutoff && now - seen.since >= minAgeMs) ids.push(seen.value.coordinatorId);
    return ids.sort();
  }

  /** The live coordinator, other than this one, that leads the fewest partitions (ties: the lowest id); undefined if none. */
  successor(): string | undefined {
    let best: MemberValue | undefined;
    for (const m of this.live()) {
      if (m.coordinatorId === this.options.coordinatorId) continue;
      if (best === undefined || m.led < best.led) best = m;
    }
    return best?.coordinatorId;
  }

  /** Writes the own key now if the number of led partitions changed since the last write. */
  ledChanged(): void {
    if (this.options.led() !== this.lastLed) void this.write();
  }

  /** Stops writing and watching, and deletes the own key so that the others see the leave at once. */
  async leave(): Promise<void> {
    this.ended = true;
    clearInterval(this.timer);
    this.stopWatching?.();
    try {
      await this.kv.delete(memberKey(this.options.coordinatorId));
    } catch (err) {
      this.options.logger.debug("could not delete the member key; it expires", { error: describeError(err) });
    }
  }

  /** Stops writing and watching, leaving the key to expire, as a crash would. */
  halt(): void {
    this.ended = true;
    clearInterval(this.timer);
    this.stopWatching?.();
  }

  private async write(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    const led = this.options.led();
    const value: MemberValue = { coordinatorId: this.options.coordinatorId, led, ts: Date.now() };
    try {
      await this.kv.put(memberKey(this.options.coordinatorId), JSON.stringify(value));
      this.lastLed = led;
    } catch (err) {
      this.options.logger.debug("could not write the member key", { error: describeError(err) });
    } finally {
      this.writing = false;
    }
  }

  /** Watches the member keys; a watch that fails is started again after WATCH_RESTART_MS until the membership ends. */
  private async watch(): Promise<void> {
    const iter = await this.kv.watch({ key: MEMBER_KEYS });
    this.stopWatching = () => iter.stop();
    void (async () => {
      try {
        for await (const entry of iter) this.apply(entry);
      } catch (err) {
        this.options.logger.warn("the member watch failed", { error: describeError(err) });
      }
      if (this.ended) return;
      this.options.logger.warn(`the member watch ended; it starts again in ${WATCH_RESTART_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, WATCH_RESTART_MS).unref());
      while (!this.ended) {
        try {
          await this.watch();
          return;
        } catch (err) {
          this.options.logger.warn("could not watch the member keys again", { error: describeError(err) });
          await new Promise((resolve) => setTimeout(resolve, WATCH_RESTART_MS).unref());
        }
      }
    })();
  }

  private apply(entry: KvWatchEntry): void {
    if (entry.operation !== "PUT") {
      this.members.delete(entry.key);
      return;
    }
    try {
      const now = performance.now();
      const before = this.members.get(entry.key);
      const since = before !== undefined && before.at >= now - this.options.livenessMs ? before.since : now;
      this.members.set(entry.key, { value: parseMemberValue(entry.value), at: now, since });
    } catch (err) {
      this.options.logger.debug("ignored a malformed member key", { key: entry.key, error: describeError(err) });
    }
  }
}
