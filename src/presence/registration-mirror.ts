/**
 * The registration bucket, mirrored in memory for the coordinator's lifetime by one KV watch
 * (design §10): a follower that takes over has every stored registration at hand instead of
 * reading the bucket after it won. Reading 50,000 took a new leader about a second of its
 * takeover.
 *
 * The mirror is only used once it has applied everything the bucket holds at the time of
 * asking (the stream's last sequence), so a new leader loads exactly what a read of the
 * bucket would give. A watch that failed, or that does not get there in time, is not used.
 *
 * A watch that fails (a timeout on a busy server, a lost connection) is started again after
 * WATCH_RESTART_MS, for as long as the connection is open: with several partitions the
 * partitions' leaders hear of new registrations through it. The new watch delivers every
 * key's latest value again; followers see those as changes, and skip what they have.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import { describeError, type Logger } from "../observe/logger.js";

/** How long a failed watch waits before it is started again. */
export const WATCH_RESTART_MS = 1000;

/**
 * Keeps, per key, what `decode` makes of its latest value (decoded as it arrives, not when a
 * takeover needs it, and without keeping the message it came in).
 */
export class RegistrationMirror<T> {
  private readonly entries = new Map<string, T>();
  /** The last stream sequence applied. */
  private revision = 0;
  private stopped: string | null = null;
  private readonly waiting = new Set<() => void>();
  private stopWatch: (() => void) | null = null;
  /** Why the watch is down now (null while it runs or starts for the first time); a takeover meanwhile reads the bucket. */
  private down: string | null = null;
  private restarts = 0;
  private readonly listeners = new Set<(key: string, value: T | undefined, revision: number) => void>();

  private constructor(
    private readonly decode: (e: KvWatchEntry) => T,
    private readonly log: Logger,
    private readonly isClosed: () => boolean,
  ) {}

  /** Starts mirroring `kv`; the watch runs until `stop()` or until the connection closes (`isClosed`). */
  static start<T>(kv: KV, decode: (e: KvWatchEntry) => T, log: Logger, isClosed: () => boolean = () => false): RegistrationMirror<T> {
    const mirror = new RegistrationMirror(decode, log, isClosed);
    void mirror.run(kv);
    return mirror;
  }

  /** Clients mirrored now (for tests and logs). */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Calls `listener` with every change the mirror applies from now on: a key's new value, or
   * undefined when it was deleted. Returns a function that stops it.
   */
  follow(listener: (key: string, value: T | undefined, revision: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.end("stopped");
    this.stopWatch?.();
  }

  /**
   * Every key's latest value once the mirror has applied the stream up to `revision`; null if
   * it has stopped, or applied nothing for `stallMs` before it got there.
   */
  async at(revision: number, stallMs: number): Promise<T[] | null> {
    if (this.revision < revision && this.usable()) {
      await new Promise<void>((resolve) => {
        const finish = () => {
          clearTimeout(timer);
          this.waiting.delete(check);
          resolve();
        };
        const timer = setTimeout(finish, stallMs);
        const check = () => {
          if (this.revision < revision && this.usable())
            timer.refresh(); // progress: wait on
          else finish();
        };
        this.waiting.add(check);
      });
    }
    return this.revision >= revision ? [...this.entries.values()] : null;
  }

  /** Not stopped, and the watch runs. */
  private usable(): boolean {
    return this.stopped === null && this.down === null;
  }

  private async run(kv: KV): Promise<void> {
    while (this.stopped === null) {
      try {
        // Deletes are delivered too: a deleted registration leaves the mirror.
        const iter = await kv.watch();
        this.stopWatch = () => iter.stop();
        if (this.stopped !== null) iter.stop();
        if (this.down !== null) this.log.info("the registration mirror watches again", { restarts: ++this.restarts });
        this.down = null;
        for await (const e of iter) {
          const value = e.operation === "PUT" ? this.decode(e) : undefined;
          if (value !== undefined) this.entries.set(e.key, value);
          else this.entries.delete(e.key);
          this.revision = Math.max(this.revision, e.revision);
          for (const listener of this.listeners) listener(e.key, value, e.revision);
          for (const check of this.waiting) check();
        }
        this.fail("the watch ended");
      } catch (err) {
        this.fail(describeError(err));
      }
      if (this.stopped !== null || this.isClosed()) break;
      await new Promise((resolve) => setTimeout(resolve, WATCH_RESTART_MS).unref());
    }
    this.end(this.down ?? "stopped");
  }

  private fail(why: string): void {
    if (this.stopped !== null) return;
    if (!this.isClosed())
      this.log.warn(
        `the registration mirror's watch stopped; it starts again in ${WATCH_RESTART_MS} ms, and a takeover meanwhile reads the bucket`,
        {
          error: why,
        },
      );
    this.down = why;
    for (const check of this.waiting) check();
  }

  private end(why: string): void {
    if (this.stopped !== null) return;
    this.stopped = why;
    for (const check of this.waiting) check();
  }
}
