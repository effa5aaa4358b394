/**
 * The coordinator's read model: what it is now (epoch, role, leader, clients, connection),
 * read from the election actors' snapshots (one per partition) and their lease fences. Reading sends no event, so
 * the machines' behaviour is untouched. The query service, the metrics, the logger and the
 * demo all read this one view.
 */
import type { ActorRefFrom } from "xstate";
import type { ElectionDriver } from "../election/election-driver.js";
import type { MonitorMachine } from "../machines/monitor.js";
import type { LeaseHolder } from "../protocol/election.js";
import type { ClientInfo } from "../protocol/query.js";

/** One partition, as this coordinator sees it. */
export interface PartitionView {
  partition: number;
  /** This coordinator's election state for the partition (follower, candidate, leader, ...). */
  role: string;
  /** The partition's leader as this coordinator knows it: itself while leading, else the one it follows; null when it knows none. */
  leader: LeaseHolder | null;
  /** The partition's epoch as this coordinator knows it: its own while leading, else the highest seen. */
  epoch: number;
  /** True while this coordinator leads the partition with a valid lease. */
  leads: boolean;
}

export interface CoordinatorView {
  /**
   * The epoch this coordinator knows: its own while leading, else the highest seen. With
   * several partitions, the highest of the partitions it leads (of all it knows, if it leads none).
   */
  readonly epoch: number;
  /**
   * The top-level election state: follower, candidate, leader, steppingDown, resigning or
   * stopped. With several partitions: leader while it leads any, else the state of the most
   * advanced of its elections.
   */
  readonly role: string;
  /**
   * The leader this coordinator knows of: itself while leading, else the one it follows;
   * null when it knows none. With several partitions, partition 0's.
   */
  readonly knownLeader: LeaseHolder | null;
  /**
   * The epoch this coordinator knows of `partition`: its own while leading it, else the
   * highest seen (0 for one it does not run); without a partition, `epoch`.
   */
  epochOf(partition?: number): number;
  /** How many partitions the cluster runs (1 by default). */
  readonly partitionCount: number;
  /** Every partition as this coordinator sees it, by partition. */
  partitions(): PartitionView[];
  /** Whether the NATS connection is up now. */
  readonly connected: boolean;
  /** True while this coordinator leads (any partition) with a valid lease. */
  leads(): boolean;
  /**
   * The clients this coordinator monitors now, in every partition it leads: their states
   * from the client actors' snapshots, their last replies from the shards' liveness tables
   * (monitor → shards → clients, as the inspector reads them). Empty unless it leads.
   */
  clients(partition?: number): ClientInfo[];
}

/** Partition `index`'s election, as the view reads it. */
export interface PartitionElection {
  index: number;
  driver: ElectionDriver;
}

/** How far along an election is, for the role of a coordinator that leads no partition. */
const ROLE_ORDER = [
  "stopped",
  "starting",
  "follower",
  "candidate",
  "steppingDown",
  "handingOver",
  "leavingLeadership",
  "resigning",
  "leader",
];

function roleOf(driver: ElectionDriver): string {
  const value = driver.actor.getSnapshot().value;
  return typeof value === "string" ? value : (Object.keys(value)[0] ?? "unknown");
}

/** The view of a coordinator running one election per partition (`elections`, by partition) on a connection that `isConnected` tells of. */
export function coordinatorView(
  elections: readonly PartitionElection[],
  coordinatorId: string,
  isConnected: () => boolean,
): CoordinatorView {
  const first = elections[0]!.driver;
  const partitionView = ({ index, driver }: PartitionElection): PartitionView => {
    const leads = driver.isLeader;
    return {
      partition: index,
      role: roleOf(driver),
      leader: leads ? { coordinatorId, epoch: driver.epoch } : driver.actor.getSnapshot().context.leader,
      epoch: driver.epoch,
      leads: leads && driver.leaseIsValid(),
    };
  };
  return {
    get epoch() {
      if (elections.length === 1) return first.epoch;
      let led = 0;
      let known = 0;
      for (const { driver } of elections) {
        if (driver.isLeader) led = Math.max(led, driver.epoch);
        known = Math.max(known, driver.epoch);
      }
      return led > 0 ? led : known;
    },
    get role() {
      let best = "unknown";
      for (const { driver } of elections) {
        const role = roleOf(driver);
        if (ROLE_ORDER.indexOf(role) > ROLE_ORDER.indexOf(best)) best = role;
      }
      return elections.length === 1 ? roleOf(first) : best;
    },
    get knownLeader() {
      return first.isLeader ? { coordinatorId, epoch: first.epoch } : first.actor.getSnapshot().context.leader;
    },
    get connected() {
      return isConnected();
    },
    epochOf(partition) {
      return partition === undefined ? this.epoch : (elections[partition]?.driver.epoch ?? 0);
    },
    partitionCount: elections.length,
    partitions: () => elections.map(partitionView),
    leads: () => elections.some(({ driver }) => driver.isLeader && driver.leaseIsValid()),
    clients: (partition) =>
      (partition === undefined ? elections : elections.slice(partition, partition + 1)).flatMap(({ driver }) =>
        monitoredClients(driver.actor.system.get("monitor") as ActorRefFrom<MonitorMachine> | undefined),
      ),
  };
}

function monitoredClients(monitor: ActorRefFrom<MonitorMachine> | undefined): ClientInfo[] {
  if (monitor === undefined) return [];
  const out: ClientInfo[] = [];
  for (const shard of monitor.getSnapshot().context.shards) {
    const { clients, liveness } = shard.getSnapshot().context;
    for (const ref of clients.values()) {
      const snap = ref.getSnapshot();
      const c = snap.context;
      if (snap.status !== "active" || (c.state !== "alive" && c.state !== "suspect")) continue;
      // The actor hears only lifecycle changes; the shard's table has the latest reply.
      const l = liveness.get(c.subject) ?? c;
      out.push({
        subject: c.subject,
        state: c.state,
        lastSeenMs: l.lastSeenMs,
        rttMs: l.rttMs,
        missedPings: l.missedPings,
        metadata: c.metadata,
      });
    }
  }
  return out;
}
