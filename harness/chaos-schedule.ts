/**
 * The fault schedule of `npm run chaos`, drawn up front from the seed: the same seed gives
 * the same faults at the same times with the same parameters. What a fault hits at run
 * time (who leads, which clients) is chosen then, from the fault's own `pick` seed.
 *
 * Rules:
 * - a fault every 1.5-4 s, drawn by weight;
 * - one disruptive cluster fault at a time (coordinator kill or SIGTERM, SIGSTOP of the
 *   leader, a NATS server down): the next may start only once the previous one has been
 *   undone and the cluster had time to settle (a new leader elected and monitoring), so
 *   at least 2 coordinators and 2 NATS servers always run, and each failover is measured;
 * - client faults (silence, revive, register, unregister, malformed input) go on meanwhile;
 * - every run unregisters clients: once at the start, and shortly before every fault that
 *   takes the leader away, so that a new leader meets recent leaves (a leader that ignored
 *   them, or one that loaded them back from the bucket, would be seen). These are drawn
 *   from a source of their own, so they leave the rest of a seed's schedule as it was;
 * - every run holds the leader faults the invariants depend on: a SIGSTOP of the leader past
 *   its lease (a stale leader with clients) and a SIGTERM of the leader (a handoff). A draw
 *   that lacks either is drawn again from a seed derived from the first, so the same seed
 *   still gives the same schedule, and a seed whose first draw has both keeps it.
 *
 * With partitions (`planSchedule(seed, runMs, { partitions })`, P > 1) the schedule also
 * starts and stops coordinators (membership faults): "start-coordinator" adds one while 3
 * run, "stop-coordinator" stops one (SIGTERM, not restarted) while 4 run, so 3 or 4 run
 * between faults and at least 2 during one. A membership fault is not undone; the next
 * cluster fault waits 11 s (SETTLE_AFTER_MS), past the bound in which the partitions must be
 * balanced again, so that every membership fault's balance is judged. Every such schedule
 * holds both. With one partition the schedule is exactly the one above.
 */
import { createRandom } from "../src/machines/random.js";

export const CLUSTER_FAULTS = ["kill-coordinator", "term-leader", "stop-leader", "stop-server"] as const;
/** Cluster faults of partitioned runs only: a coordinator joins, or leaves for good. */
export const MEMBERSHIP_FAULTS = ["start-coordinator", "stop-coordinator"] as const;
export const CLIENT_FAULTS = ["silence", "revive", "register", "unregister", "malformed"] as const;
export type MembershipFault = (typeof MEMBERSHIP_FAULTS)[number];
export type ClusterFault = (typeof CLUSTER_FAULTS)[number] | MembershipFault;
export type ClientFault = (typeof CLIENT_FAULTS)[number];
export type FaultKind = ClusterFault | ClientFault;

const WEIGHTS: Record<FaultKind, number> = {
  "kill-coordinator": 3,
  "term-leader": 2,
  "stop-leader": 2,
  "stop-server": 2,
  "start-coordinator": 2,
  "stop-coordinator": 2,
  silence: 3,
  revive: 3,
  register: 2,
  unregister: 1,
  malformed: 1,
};

/** How long before a fault that takes the leader away its unregistrations are sent. */
export const UNREGISTER_BEFORE_LEADER_FAULT_MS = 300;
const LEADER_FAULTS: readonly FaultKind[] = ["kill-coordinator", "term-leader", "stop-leader"];

/** How long after a cluster fault has been undone before the next may start (re-election, reload). */
export const SETTLE_AFTER_MS: Record<ClusterFault, number> = {
  "kill-coordinator": 4000,
  "term-leader": 3000,
  "stop-leader": 4000,
  "stop-server": 5000,
  // Past the 10 s in which the partitions must be balanced again (see the file's comment).
  "start-coordinator": 11_000,
  "stop-coordinator": 11_000,
};

/** How many coordinators a partitioned run has between faults: it starts with the first, a start-coordinator needs fewer than the last. */
export const COORDINATORS_BETWEEN_FAULTS = [3, 4] as const;

export interface PlannedFault {
  /** ms after the start of the fault phase. */
  at: number;
  kind: FaultKind;
  /**
   * kill-coordinator / term-leader: the restart delay; stop-leader: how long it stays
   * stopped; stop-server: how long the server is down. 0 for client faults.
   */
  durationMs: number;
  /** How many clients (or malformed messages) a client fault involves. */
  count: number;
  /** Seed of the fault's own choices at run time (target, clients, payloads). */
  pick: number;
}

export const isClusterFault = (k: FaultKind): k is ClusterFault =>
  (CLUSTER_FAULTS as readonly string[]).includes(k) || (MEMBERSHIP_FAULTS as readonly string[]).includes(k);

/** The leader faults every schedule holds (design §5's invariants need a stale leader and a handoff). */
export const REQUIRED_LEADER_FAULTS: readonly FaultKind[] = ["stop-leader", "term-leader"];
/** ... and with partitions, the membership faults too (the balance after them is an invariant). */
export const REQUIRED_PARTITIONED_FAULTS: readonly FaultKind[] = [...REQUIRED_LEADER_FAULTS, ...MEMBERSHIP_FAULTS];
/** How many derived seeds are tried for a schedule that holds REQUIRED_LEADER_FAULTS. */
const MAX_DRAWS = 200;

/**
 * The schedule of `seed` for a run of `runMs`: the first draw, from `seed` and then from
 * seeds derived from it, that holds every REQUIRED_LEADER_FAULTS kind. A run too short to
 * hold them gets the last draw, and its verdict says the leader faults did not run.
 */
export function planSchedule(seed: number, runMs: number, options: { partitions?: number } = {}): PlannedFault[] {
  const partitioned = (options.partitions ?? 1) > 1;
  const required = partitioned ? REQUIRED_PARTITIONED_FAULTS : REQUIRED_LEADER_FAULTS;
  let faults: PlannedFault[] = [];
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    faults = drawSchedule((seed + Math.imul(draw, 0x9e37_79b9)) >>> 0, runMs, partitioned);
    if (required.every((k) => faults.some((f) => f.kind === k))) return faults;
  }
  return faults;
}

function drawSchedule(seed: number, runMs: number, partitioned: boolean): PlannedFault[] {
  const random = createRandom(seed);
  const draw = (kinds: readonly FaultKind[]): FaultKind => {
    const total = kinds.reduce((n, k) => n + WEIGHTS[k], 0);
    let x = random.int(1, total);
    for (const k of kinds) {
      x -= WEIGHTS[k];
      if (x <= 0) return k;
    }
    return kinds.at(-1)!;
  };
  const all = [...CLUSTER_FAULTS, ...(partitioned ? MEMBERSHIP_FAULTS : []), ...CLIENT_FAULTS];
  const faults: PlannedFault[] = [];
  let clusterFreeAt = 0;
  let coordinators: number = COORDINATORS_BETWEEN_FAULTS[0];
  for (let at = random.int(1500, 3000); at < runMs; at += random.int(1500, 4000)) {
    let kind = draw(at >= clusterFreeAt ? all : CLIENT_FAULTS);
    let durationMs = 0;
    // A membership fault the number of coordinators does not allow becomes the other one.
    if (kind === "start-coordinator" && coordinators >= COORDINATORS_BETWEEN_FAULTS[1]) kind = "stop-coordinator";
    else if (kind === "stop-coordinator" && coordinators <= COORDINATORS_BETWEEN_FAULTS[0]) kind = "start-coordinator";
    if (kind === "start-coordinator" || kind === "stop-coordinator") {
      const freeAt = at + SETTLE_AFTER_MS[kind];
      if (freeAt > runMs) kind = draw(CLIENT_FAULTS);
      else {
        clusterFreeAt = freeAt;
        coordinators += kind === "start-coordinator" ? 1 : -1;
      }
    } else if (isClusterFault(kind)) {
      durationMs =
        kind === "stop-leader" ? random.int(3000, 4000) : kind === "stop-server" ? random.int(3000, 6000) : random.int(1000, 3000);
      const freeAt = at + durationMs + SETTLE_AFTER_MS[kind];
      // A cluster fault that would not be undone and settled within the run is not started.
      if (freeAt > runMs) kind = draw(CLIENT_FAULTS);
      if (isClusterFault(kind)) clusterFreeAt = freeAt;
      else durationMs = 0;
    }
    const count =
      kind === "silence"
        ? random.int(2, 10)
        : kind === "revive"
          ? random.int(1, 8)
          : kind === "register"
            ? random.int(1, 10)
            : kind === "unregister"
              ? random.int(1, 5)
              : kind === "malformed"
                ? random.int(2, 6)
                : 1;
    faults.push({ at, kind, durationMs, count, pick: random.int(0, 0x7fff_ffff) });
  }
  const leaves = createRandom((seed ^ 0x5eed_1eaf) >>> 0);
  const unregister = (at: number): PlannedFault => ({
    at,
    kind: "unregister",
    durationMs: 0,
    count: leaves.int(1, 3),
    pick: leaves.int(0, 0x7fff_ffff),
  });
  const withLeaves = [unregister(Math.min(1000, runMs / 2))];
  for (const f of faults) {
    if (LEADER_FAULTS.includes(f.kind)) withLeaves.push(unregister(f.at - UNREGISTER_BEFORE_LEADER_FAULT_MS));
    withLeaves.push(f);
  }
  return withLeaves;
}

/** A short fingerprint of a schedule, printed so two runs can be compared at a glance. */
export function fingerprint(faults: readonly PlannedFault[]): string {
  let h = 0x811c9dc5;
  for (const ch of JSON.stringify(faults)) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}
