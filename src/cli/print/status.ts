/** The status command's text: the cluster, its leader, its clients and every coordinator seen. */
import type { ClusterStatus } from "../../observe/query/status.js";

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  const h = Math.floor(s / 3600);
  return h < 48 ? `${h}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** The human-readable report. */
export function formatStatus(s: ClusterStatus): string {
  const lines = [`cluster       ${s.clusterId}`];
  lines.push(
    s.leader === null
      ? "leader        none known (an election may be under way)"
      : `leader        ${s.leader} (epoch ${s.epoch}${s.leaderUptimeMs !== null ? `, up ${duration(s.leaderUptimeMs)}` : ""})`,
  );
  lines.push(
    s.clients === null
      ? "clients       unknown (the leader did not answer the query service)"
      : `clients       ${s.clients.total} (alive ${s.clients.alive}, suspect ${s.clients.suspect})`,
  );
  lines.push(`coordinators  ${s.coordinators.length} seen`);
  const width = Math.max(0, ...s.coordinators.map((c) => c.coordinatorId.length));
  for (const c of s.coordinators) {
    const follows =
      c.role !== "leader" && c.leader !== null
        ? `  following ${c.leader} (epoch ${c.epoch})`
        : c.role === "leader"
          ? `  epoch ${c.epoch}`
          : "";
    const via = c.serviceId === undefined ? "  (heard through heartbeats only)" : "";
    lines.push(`  ${c.coordinatorId.padEnd(width)}  ${c.role.padEnd(12)}${follows}${via}`);
  }
  if (s.lastHeartbeat) {
    lines.push(
      `heartbeat     from ${s.lastHeartbeat.coordinatorId} epoch ${s.lastHeartbeat.epoch}, ${(s.lastHeartbeat.ageMs / 1000).toFixed(1)} s ago`,
    );
  }
  return `${lines.join("\n")}\n`;
}
