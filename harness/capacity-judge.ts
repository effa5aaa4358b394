/**
 * The capacity bench's verdicts, kept pure so that they can be unit-tested: whether a level
 * held, and whether waiting for a level's registrations is still worth it.
 */

/** What a level must achieve to count as held (design §10). */
export interface HoldCriteria {
  /** The configured ping interval, ms: each client should be pinged 1000 / this many times a second. */
  pingIntervalMs: number;
  /** The configured state interval, ms: each live client should get a NodeState this often. */
  stateIntervalMs: number;
  /** Pings and NodeState reports must reach this fraction of the configured rates (0.9). */
  minRateFraction: number;
  /** The p99 of the interval between two pings of one client must not exceed this, ms. */
  maxPingIntervalP99Ms: number;
}

export const DEFAULT_HOLD_CRITERIA = (pingIntervalMs: number, stateIntervalMs: number): HoldCriteria => ({
  pingIntervalMs,
  stateIntervalMs,
  minRateFraction: 0.9,
  maxPingIntervalP99Ms: 1000,
});

/** What was seen while a level was held. */
export interface LevelObservation {
  /** Clients that should be answering (registered at this level or before, not silenced). */
  answering: number;
  /** Clients registered so far, and how many of them were reported present. */
  registered: number;
  present: number;
  falseDead: number;
  falseSuspect: number;
  /** Times a coordinator took the lease during the level. */
  leaderChanges: number;
  /** Pings answered per second by the simulated clients. */
  pingsPerSecond: number;
  /** NodeState reports per second seen on the report subject. */
  nodeStatePerSecond: number;
  /** p99 of the interval between two pings of one client, ms (NaN when none was measured). */
  pingIntervalP99Ms: number;
}

export interface LevelVerdict {
  holds: boolean;
  /** Why it does not hold, one plain sentence each; empty when it holds. */
  reasons: string[];
}

const fmt = (n: number) => Math.round(n).toLocaleString("en");

/** Judges one level against the criteria; every criterion that fails gives its own reason. */
export function judgeLevel(o: LevelObservation, c: HoldCriteria): LevelVerdict {
  const reasons: string[] = [];
  if (o.present < o.registered) reasons.push(`only ${fmt(o.present)} of ${fmt(o.registered)} clients were reported present`);
  if (o.falseDead > 0) reasons.push(`${fmt(o.falseDead)} false NodeDead`);
  if (o.falseSuspect > 0) reasons.push(`${fmt(o.falseSuspect)} false NodeSuspect`);
  if (o.leaderChanges > 0) reasons.push(`leadership changed ${o.leaderChanges} times`);
  const pingRate = (o.answering * 1000) / c.pingIntervalMs;
  if (!(o.pingsPerSecond >= c.minRateFraction * pingRate)) {
    reasons.push(`${fmt(o.pingsPerSecond)} pings/s, below ${Math.round(c.minRateFraction * 100)} % of the ${fmt(pingRate)} configured`);
  }
  const stateRate = (o.answering * 1000) / c.stateIntervalMs;
  if (!(o.nodeStatePerSecond >= c.minRateFraction * stateRate)) {
    reasons.push(
      `${fmt(o.nodeStatePerSecond)} NodeState/s, below ${Math.round(c.minRateFraction * 100)} % of the ${fmt(stateRate)} configured`,
    );
  }
  if (Number.isNaN(o.pingIntervalP99Ms)) reasons.push("no ping interval was measured");
  else if (o.pingIntervalP99Ms > c.maxPingIntervalP99Ms) {
    reasons.push(`ping interval p99 ${fmt(o.pingIntervalP99Ms)} ms, above ${fmt(c.maxPingIntervalP99Ms)} ms`);
  }
  return { holds: reasons.length === 0, reasons };
}

/** Clients silenced to measure detection at a level of `n`: 1 %, at least 20, at most a few hundred. */
export const silencedAt = (n: number): number => Math.min(300, Math.max(20, Math.round(n / 100)));

/** One look at a level's registration progress. */
export interface ProgressSample {
  /** ms since the level's registrations were published. */
  atMs: number;
  /** Clients of this level reported present so far. */
  present: number;
  /** CPU the leader process has used so far, in seconds (from /proc). */
  leaderCpuSeconds: number;
  /** Times a coordinator took the lease since the wait began (a level that loses its leader does not hold). */
  leaderChanges?: number;
}

export interface WaitPolicy {
  /** Clients this level registered. */
  wanted: number;
  /** The longest the bench waits for them, ms. */
  maxWaitMs: number;
  /** The window over which rate and CPU are judged, ms. */
  windowMs: number;
  /** A leader using at least this many cores over the window is saturated (one event loop ≈ 1). */
  saturatedCores: number;
  /** What is counted, for the reason: "present" (the default) or "reported". */
  counted?: string;
}

export type WaitVerdict = { wait: true } | { wait: false; done: boolean; reason: string };

/**
 * Whether to keep waiting for a level's registrations. It stops when every client is present,
 * when the wait is over, when leadership changed (the level cannot hold), or early, once the
 * leader is saturated (its loop uses a whole core
 * over the window) and, at the rate it reported clients present over that window, the rest
 * would not be present before the wait is over. A leader that is slow but not saturated is
 * given the whole wait.
 */
export function judgeRegistrationWait(samples: readonly ProgressSample[], p: WaitPolicy): WaitVerdict {
  const last = samples.at(-1);
  const counted = p.counted ?? "present";
  if (last === undefined) return { wait: true };
  if (last.present >= p.wanted) return { wait: false, done: true, reason: `all ${fmt(p.wanted)} ${counted} after ${fmt(last.atMs)} ms` };
  if (last.atMs >= p.maxWaitMs) {
    return {
      wait: false,
      done: false,
      reason: `only ${fmt(last.present)} of ${fmt(p.wanted)} ${counted} after the ${fmt(p.maxWaitMs / 1000)} s wait`,
    };
  }
  if ((last.leaderChanges ?? 0) > 0) {
    return {
      wait: false,
      done: false,
      reason: `leadership changed ${last.leaderChanges} times with ${fmt(last.present)} of ${fmt(p.wanted)} ${counted} after ${fmt(last.atMs / 1000)} s`,
    };
  }
  // The oldest sample still inside the window, provided the window is covered.
  let first: ProgressSample | undefined;
  for (const s of samples) {
    if (last.atMs - s.atMs >= p.windowMs) first = s;
  }
  if (first === undefined) return { wait: true };
  const spanS = (last.atMs - first.atMs) / 1000;
  const cores = (last.leaderCpuSeconds - first.leaderCpuSeconds) / spanS;
  // Unknown CPU (the process is gone) is not taken for saturation.
  if (!(cores >= p.saturatedCores)) return { wait: true };
  const rate = (last.present - first.present) / spanS;
  const remainingS = (p.maxWaitMs - last.atMs) / 1000;
  const toGo = p.wanted - last.present;
  if (rate * remainingS >= toGo) return { wait: true };
  const eta = rate > 0 ? `${fmt(toGo / rate)} s more at ${fmt(rate)} ${counted}/s` : "no progress at all";
  return {
    wait: false,
    done: false,
    reason:
      `the leader is saturated (${cores.toFixed(2)} cores over the last ${spanS.toFixed(0)} s) with ${fmt(last.present)} of ${fmt(p.wanted)} ${counted} ` +
      `after ${fmt(last.atMs / 1000)} s; the rest would need ${eta}, past the ${fmt(p.maxWaitMs / 1000)} s wait`,
  };
}

/** A leader heartbeat as the bench heard it. */
export interface HeardHeartbeat {
  /** ms, on the bench's clock. */
  atMs: number;
  coordinatorId: string;
  epoch: number;
}

export interface SettledPolicy {
  /** Leadership counts as settled once one leader alone was heard for this long, ms. */
  windowMs: number;
  /** The leaders' heartbeat interval, ms: a settled leader was heard within two of them. */
  heartbeatIntervalMs: number;
}

/**
 * The leader to crash for the takeover, or null while leadership is not settled. After an
 * overload, leadership may have passed back and forth, and the last heartbeat heard does not
 * say who leads: a deposed leader's last heartbeats still arrive, and the other coordinator
 * may be taking over just then. Settled means: over the last `windowMs` every heartbeat came
 * from one coordinator under one epoch, the first of that leadership was heard at least
 * `windowMs` ago, and the latest within two heartbeat intervals.
 */
export function settledLeader(
  heard: readonly HeardHeartbeat[],
  nowMs: number,
  p: SettledPolicy,
): { coordinatorId: string; epoch: number } | null {
  const last = heard.at(-1);
  if (last === undefined || nowMs - last.atMs > 2 * p.heartbeatIntervalMs) return null;
  const same = (h: HeardHeartbeat) => h.coordinatorId === last.coordinatorId && h.epoch === last.epoch;
  let i = heard.length - 1;
  while (i > 0 && same(heard[i - 1]!)) i -= 1;
  // heard[i] is the first heartbeat of this leadership that the bench kept.
  if (nowMs - heard[i]!.atMs < p.windowMs) return null;
  return { coordinatorId: last.coordinatorId, epoch: last.epoch };
}
