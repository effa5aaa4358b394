/**
 * Heartbeats are believed only when the lease confirms their sender (design §5). Anyone
 * who can publish on the heartbeat subject could otherwise keep every follower from
 * standing for election, or make them all stand at once with a forged resignation.
 *
 * A heartbeat of a leader the lease already confirmed (its id and epoch) is delivered at
 * once. One that could change nothing (an epoch older than one already seen) is dropped.
 * Any other is held until the lease is read, one read at a time and at most one every
 * CONFIRM_SPACING_MS, so a flood of forgeries costs a bounded number of reads: delivered if
 * the lease names its sender, refused (and its copies dropped for a leader timeout) if not.
 * A resignation is always checked, even from a confirmed leader.
 *
 * A heartbeat with this coordinator's own id that it did not send means another process runs
 * with the same --coordinator-id (or a forgery): the gate warns of it. Both warnings are
 * throttled (WarningThrottle) to one per leader timeout on the gate's clock, the rest counted.
 */
import type { Heartbeat, LeaseHolder } from "../protocol/election.js";
import { describeError, WarningThrottle, type Logger } from "../observe/logger.js";
import type { LeaseStore } from "./lease-store.js";

/** Leaders confirmed against the lease that are remembered (the newest). */
const CONFIRMED_KEPT = 8;
/** Unconfirmed heartbeats (one per leader and epoch) that wait for a lease read at most. */
const WAITING_KEPT = 16;
/** Shortest time between two lease reads for confirmation: a flood of forged heartbeats costs at most this many reads. */
const CONFIRM_SPACING_MS = 50;
/** Refused (coordinator, epoch) pairs that are remembered, so that their heartbeats cost no read. */
const REFUSED_KEPT = 256;
/**
 * How long a resignation is checked against a lease that still names the resigning leader:
 * a leader publishes its last heartbeat first and deletes the lease right after, so the
 * delete may not have landed at the first read. Past this, the resignation is a forgery
 * (or the delete failed, and the lease's expiry does the rest).
 */
const RESIGNATION_GRACE_MS = 500;

const leaderKey = (coordinatorId: string, epoch: number) => `${epoch}\u0000${coordinatorId}`;
/** Resignations wait and are refused apart from the same leader's ordinary heartbeats. */
const resignationKey = (key: string) => `resigning\u0000${key}`;

export interface HeartbeatGateOptions {
  coordinatorId: string;
  /** Refused senders are dropped, and warnings repeated at most, once per this many ms. */
  leaderTimeoutMs: number;
  /** Where the lease is read. */
  lease: Pick<LeaseStore, "holder">;
  /** Monotonic milliseconds. */
  now: () => number;
  log: Logger;
  /** What the election knows now: its own epoch, and the highest it has seen. */
  epochs: () => { epoch: number; highestEpoch: number };
  /** Whether this coordinator leads now (for the warning of its own id). */
  isLeader: () => boolean;
  /** Whether the election still runs: no read starts once it has stopped. */
  isRunning: () => boolean;
  /** Hands a believed heartbeat to the election. */
  deliver: (heartbeat: Heartbeat) => void;
}

export class HeartbeatGate {
  /** Leaders (id and epoch) the lease confirmed, oldest first. */
  private readonly confirmed = new Set<string>();
  /** Heartbeats of leaders not confirmed yet, and resignations, waiting for the lease read (with when they were heard). */
  private readonly waiting = new Map<string, { hb: Heartbeat; heardAt: number }>();
  /** The heartbeats (wait keys) the lease read in flight decides: copies heard meanwhile cost no read of their own. */
  private readonly reading = new Set<string>();
  /** Leaders the lease did not confirm, with when: their heartbeats are dropped for a leader timeout. */
  private readonly refused = new Map<string, number>();
  private confirming = false;
  private lastReadAt = Number.NEGATIVE_INFINITY;
  /** The pause between two lease reads for confirmation, cleared when the gate stops. */
  private pause: NodeJS.Timeout | undefined;
  /** Heartbeats refused by the lease: one warning per leader timeout, the rest counted. */
  private readonly refusedWarnings: WarningThrottle;
  /** Heartbeats with this coordinator's own id: one warning per leader timeout, the rest counted. */
  private readonly ownIdWarnings: WarningThrottle;

  constructor(private readonly options: HeartbeatGateOptions) {
    const { log, leaderTimeoutMs, now } = options;
    this.refusedWarnings = new WarningThrottle(
      log,
      "more heartbeats that the lease does not confirm were ignored (counted, not logged one by one)",
      leaderTimeoutMs,
      "warn",
      now,
    );
    this.ownIdWarnings = new WarningThrottle(
      log,
      "more heartbeats with this coordinator's own id were heard (counted, not logged one by one)",
      leaderTimeoutMs,
      "warn",
      now,
    );
  }

  /** A heartbeat heard: delivered, dropped, or held for the lease read (see the file comment). */
  hear(hb: Heartbeat): void {
    const { epoch, highestEpoch } = this.options.epochs();
    if (hb.coordinatorId === this.options.coordinatorId) {
      // The machine ignores heartbeats with its own id: only one it did not send is news.
      if (hb.epoch !== epoch) this.warnOwnId(hb);
      return;
    }
    if (hb.epoch < highestEpoch) return; // stale: the machine would ignore it
    const key = leaderKey(hb.coordinatorId, hb.epoch);
    const resigning = hb.resigning === true;
    if (!resigning && this.confirmed.has(key)) {
      this.options.deliver(hb);
      return;
    }
    const waitKey = resigning ? resignationKey(key) : key;
    const refusedAt = this.refused.get(waitKey);
    if (refusedAt !== undefined && this.options.now() - refusedAt < this.options.leaderTimeoutMs) return;
    if (this.waiting.has(waitKey) || this.reading.has(waitKey)) return; // already waiting for a read, or being read
    if (this.waiting.size >= WAITING_KEPT) return; // a flood: the real leader heartbeats again
    this.waiting.set(waitKey, { hb, heardAt: this.options.now() });
    void this.confirmWaiting();
  }

  /** The lease named `holder` (this coordinator lost an election to it): its heartbeats need no read to be believed. */
  confirm(holder: LeaseHolder): void {
    this.remember(leaderKey(holder.coordinatorId, holder.epoch));
  }

  /** Ends a pause between lease reads and sums up the warnings not logged: the election has stopped. */
  stop(): void {
    clearTimeout(this.pause);
    this.refusedWarnings.flush();
    this.ownIdWarnings.flush();
  }

  /** Reads the lease, one read at a time, until no heartbeat waits; delivers those it confirms. */
  private async confirmWaiting(): Promise<void> {
    if (this.confirming) return;
    this.confirming = true;
    try {
      while (this.waiting.size > 0 && this.options.isRunning()) {
        const wait = this.lastReadAt + CONFIRM_SPACING_MS - this.options.now();
        if (wait > 0) {
          await new Promise((resolve) => {
            this.pause = setTimeout(resolve, wait);
          });
          if (!this.options.isRunning()) break;
        }
        this.lastReadAt = this.options.now();
        const batch = [...this.waiting];
        this.waiting.clear();
        for (const [waitKey] of batch) this.reading.add(waitKey);
        let holder: LeaseHolder | null;
        try {
          holder = await this.options.lease.holder();
        } catch (err) {
          // Unconfirmed, but not refused either: the next heartbeat tries again.
          this.options.log.warn("could not read the lease to confirm a new leader's heartbeat", { error: describeError(err) });
          continue;
        } finally {
          this.reading.clear();
        }
        const holderKey = holder === null ? null : leaderKey(holder.coordinatorId, holder.epoch);
        if (holderKey !== null) this.remember(holderKey);
        for (const [waitKey, { hb, heardAt }] of batch) this.decide(waitKey, hb, heardAt, holder, holderKey);
      }
    } finally {
      this.confirming = false;
    }
  }

  /** A held heartbeat, once the lease was read. */
  private decide(waitKey: string, hb: Heartbeat, heardAt: number, holder: LeaseHolder | null, holderKey: string | null): void {
    const key = leaderKey(hb.coordinatorId, hb.epoch);
    if (hb.resigning === true) {
      // Believed once the lease is gone: standing for election then is right anyway.
      if (holder === null) {
        this.options.deliver(hb);
        return;
      }
      // The lease still names the resigning leader: its delete may not have landed yet.
      if (holderKey === key && this.options.now() - heardAt < RESIGNATION_GRACE_MS) {
        if (!this.waiting.has(waitKey)) this.waiting.set(waitKey, { hb, heardAt });
        return;
      }
    } else if (this.confirmed.has(key)) {
      this.options.deliver(hb);
      return;
    }
    if (this.refused.size >= REFUSED_KEPT) this.refused.clear();
    this.refused.set(waitKey, this.options.now());
    this.warnRefused(hb, holder);
  }

  private warnRefused(hb: Heartbeat, holder: LeaseHolder | null): void {
    this.refusedWarnings.warn("refused", "ignored a heartbeat that the lease does not confirm", {
      heartbeatFrom: hb.coordinatorId,
      heartbeatEpoch: hb.epoch,
      ...(hb.resigning === true ? { resigning: true } : {}),
      leaseHolder: holder === null ? null : `${holder.coordinatorId} (epoch ${holder.epoch})`,
    });
  }

  private warnOwnId(hb: Heartbeat): void {
    this.ownIdWarnings.warn(
      "own-id",
      "heard a heartbeat with this coordinator's own id that this process did not send: is another coordinator running with the same --coordinator-id?",
      { heartbeatEpoch: hb.epoch, leading: this.options.isLeader() },
    );
  }

  /** Adds a confirmed leader, keeping the CONFIRMED_KEPT newest. */
  private remember(key: string): void {
    this.confirmed.delete(key);
    this.confirmed.add(key);
    if (this.confirmed.size > CONFIRMED_KEPT) this.confirmed.delete(this.confirmed.values().next().value!);
  }
}
