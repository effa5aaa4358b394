/**
 * Registrations by partition, when the cluster runs several: how the leader of a client's
 * partition learns of it.
 *
 * Any coordinator that leads a partition pulls the registration stream (one durable
 * consumer for the cluster), stores each registration in the bucket and only then
 * acknowledges it. Every coordinator already mirrors the bucket through one KV watch
 * (registration-mirror.ts), so the partition's leader hears of the stored registration from
 * its own mirror, milliseconds after the write: no forward between coordinators, nothing
 * lost when the one that pulled dies after storing, and the bucket stays the one record of
 * who is registered. This router follows the mirror once for the coordinator and hands each
 * change to the feed of its subject's partition; a takeover loads the partition's part of
 * the bucket.
 */
import { partitionOf } from "../protocol/partition.js";
import type { RegistrationChange, RegistrationStore, StoredRegistration } from "./registration-store.js";

/** One partition's registrations: what its presence edge loads at a takeover and follows while it leads. */
export interface RegistrationFeed {
  readonly partition: number;
  /** Every stored registration of this partition. */
  load(): Promise<StoredRegistration[]>;
  /** Calls `handler` with every change of this partition's registrations from now on; returns a function that stops it. */
  follow(handler: (change: RegistrationChange) => void): () => void;
}

export class RegistrationRouter {
  private readonly handlers = new Map<number, (change: RegistrationChange) => void>();
  private unfollow: (() => void) | null = null;
  /** Each subject's partition, computed once (a takeover filters every stored registration). */
  private readonly partitionCache = new Map<string, number>();

  constructor(
    private readonly store: RegistrationStore & Required<Pick<RegistrationStore, "follow">>,
    readonly partitions: number,
  ) {}

  partitionOf(subject: string): number {
    let p = this.partitionCache.get(subject);
    if (p === undefined) {
      p = partitionOf(subject, this.partitions);
      this.partitionCache.set(subject, p);
    }
    return p;
  }

  feed(partition: number): RegistrationFeed {
    return {
      partition,
      load: () => this.store.loadAll((subject) => this.partitionOf(subject) === partition),
      follow: (handler) => {
        this.handlers.set(partition, handler);
        this.unfollow ??= this.store.follow((change) => this.route(change));
        return () => {
          if (this.handlers.get(partition) === handler) this.handlers.delete(partition);
          if (this.handlers.size === 0) {
            this.unfollow?.();
            this.unfollow = null;
          }
        };
      },
    };
  }

  private route(change: RegistrationChange): void {
    const subject = change.op === "put" ? change.stored.registration.subject : change.subject;
    const partition = this.partitionOf(subject);
    if (change.op === "delete") this.partitionCache.delete(subject);
    this.handlers.get(partition)?.(change);
  }
}
