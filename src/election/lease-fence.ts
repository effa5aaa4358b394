/**
 * "May this process act as leader now?", answered on its own monotonic clock and
 * independent of the election machine's timers: yes while the renew deadline, measured from
 * when the last successful lease write was sent, has not passed. Everything published as
 * leader (heartbeats, leader reports, presence reports) asks first, so a process that was
 * paused past its lease publishes nothing as leader when it wakes, whatever order its timers
 * fire in (design §5).
 */
export class LeaseFence {
  /** Monotonic time until which this process may act as leader. */
  private validUntil = Number.NEGATIVE_INFINITY;
  /**
   * Bumped on every release: a renewal that was in flight then cannot make the released
   * lease valid again when its success arrives.
   */
  private generation = 0;

  constructor(
    /** Monotonic milliseconds. */
    private readonly now: () => number,
    /** How long a successful lease write lets this process act as leader, from when it was sent. */
    private readonly renewDeadlineMs: number,
  ) {}

  /** True while the renew deadline of the last successful lease write has not passed. */
  isValid(): boolean {
    return this.now() < this.validUntil;
  }

  /** A lease write sent at `sentAt` succeeded: this process may act as leader until its renew deadline. */
  written(sentAt: number): void {
    this.validUntil = sentAt + this.renewDeadlineMs;
  }

  /** Call before sending a renewal; hand the result to `renewed` when it succeeds. */
  renewing(): number {
    return this.generation;
  }

  /**
   * The renewal `renewing` returned `ticket` for, sent at `sentAt`, succeeded. False (and the
   * fence stays shut) if the lease was released meanwhile: the release deletes that write too.
   */
  renewed(ticket: number, sentAt: number): boolean {
    if (ticket !== this.generation) return false;
    this.written(sentAt);
    return true;
  }

  /** The lease is lost, or this process stops: it no longer acts as leader. */
  close(): void {
    this.validUntil = Number.NEGATIVE_INFINITY;
  }

  /** The lease is being released: closed, and no renewal in flight opens it again. */
  release(): void {
    this.close();
    this.generation += 1;
  }
}
