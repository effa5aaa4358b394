/**
 * The coordinator's read model: what it is now (epoch, role, leader, clients, connection),
 * read from the election actor's snapshots and the lease fence. Reading sends no event, so
 * the machines' behaviour is untouched. The query service, the metrics, the logger and the
 * demo all read this one view.
 */
import type { ActorRefFrom } from "xstate";
import type { ElectionDriver } from "../election/election-driver.js";
import type { MonitorMachine } from "../machines/monitor.js";
import type { LeaseHolder } from "../protocol/election.js";
import type { ClientInfo } from "../protocol/query.js";

export interface CoordinatorView {
  /** The epoch this coordinator knows: its own while leading, else the highest seen. */
  readonly epoch: number;
  /** The top-level election state: follower, candidate, leader, steppingDown, resigning or stopped. */
  readonly role: string;
  /** The leader this coordinator knows of: itself while leading, else the one it follows; null when it knows none. */
  readonly knownLeader: LeaseHolder | null;
  /** Whether the NATS connection is up now. */
  readonly connected: boolean;
  /** True while this coordinator leads with a valid lease. */
  leads(): boolean;
  /**
   * The clients this coordinator monitors now: their states from the client actors'
   * snapshots, their last replies from the shards' liveness tables (monitor → shards →
   * clients, as the inspector reads them). Empty unless it leads.
   */
  clients(): ClientInfo[];
}

/** The view of a coordinator running `driver` on a connection that `isConnected` tells of. */
export function coordinatorView(driver: ElectionDriver, coordinatorId: string, isConnected: () => boolean): CoordinatorView {
  const context = () => driver.actor.getSnapshot().context;
  return {
    get epoch() {
      return driver.isLeader ? context().epoch : context().highestEpoch;
    },
    get role() {
      const value = driver.actor.getSnapshot().value;
      return typeof value === "string" ? value : (Object.keys(value)[0] ?? "unknown");
    },
    get knownLeader() {
      return driver.isLeader ? { coordinatorId, epoch: context().epoch } : context().leader;
    },
    get connected() {
      return isConnected();
    },
    leads: () => driver.isLeader && driver.leaseIsValid(),
    clients: () => monitoredClients(driver.actor.system.get("monitor") as ActorRefFrom<MonitorMachine> | undefined),
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
