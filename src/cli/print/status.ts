/** The status command's text: the cluster, its leader, its clients and every coordinator seen. */
import type { ClusterStatus } from "../../observe/query/status.js";

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  const h = Math.floor(s / 3600);
  return h < 48 ? `${h}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Ranges of ascending partitions: [0, 1, 2, 5] → "0-2, 5". */
export function partitionRanges(partitions: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < partitions.length; ) {
    let j = i;
    while (j + 1 < partitions.length && partitions[j + 1] === partitions[j]! + 1) j++;
    out.push(j === i ? `${partitions[i]}` : `${partitions[i]}-${partitions[j]}`);
    i = j + 1;
  }
  return out.join(", ");
}

/** Rows of text padded to their columns' widths. */
function table(rows: readonly (readonly string[])[], indent: string): string[] {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows.map((r) => `${indent}${r.map((cell, col) => cell.padEnd(widths[col]!)).join("  ")}`.trimEnd());
}

/** The partition → leader, epoch and clients table, every partition in order; one the answers missed shows dashes. */
function partitionLines(s: ClusterStatus & { partitionCount: number }): string[] {
  const known = new Map((s.partitions ?? []).map((p) => [p.partition, p]));
  const missing = s.missingPartitions ?? [];
  const lines = [
    `partitions    ${s.partitionCount}, ${s.partitionCount - missing.length} answered${missing.length > 0 ? ` (no answer for ${partitionRanges(missing)})` : ""}`,
  ];
  const rows: string[][] = [["partition", "leader", "epoch", "clients", "alive", "suspect"]];
  for (let p = 0; p < s.partitionCount; p++) {
    const row = known.get(p);
    rows.push(
      row === undefined
        ? [`${p}`, "-", "-", "-", "-", "-"]
        : [`${p}`, row.leader, `${row.epoch}`, `${row.clients.total}`, `${row.clients.alive}`, `${row.clients.suspect}`],
    );
  }
  return [...lines, ...table(rows, "  ")];
}

/** The human-readable report. */
export function formatStatus(s: ClusterStatus): string {
  const lines = [`cluster       ${s.clusterId}`];
  const several = s.partitionCount !== undefined && s.partitionCount > 1;
  if (several) {
    lines.push(...partitionLines(s as ClusterStatus & { partitionCount: number }));
  } else {
    lines.push(
      s.leader === null
        ? "leader        none known (an election may be under way)"
        : `leader        ${s.leader} (epoch ${s.epoch}${s.leaderUptimeMs !== null ? `, up ${duration(s.leaderUptimeMs)}` : ""})`,
    );
  }
  lines.push(
    s.clients === null
      ? "clients       unknown (the leader did not answer the query service)"
      : `clients       ${s.clients.total} (alive ${s.clients.alive}, suspect ${s.clients.suspect})${several && (s.missingPartitions?.length ?? 0) > 0 ? " in the partitions that answered" : ""}`,
  );
  lines.push(`coordinators  ${s.coordinators.length} seen`);
  const width = Math.max(0, ...s.coordinators.map((c) => c.coordinatorId.length));
  for (const c of s.coordinators) {
    const follows = several
      ? // With several partitions a coordinator follows a leader per partition; what it leads is what tells.
        c.partitions !== undefined
        ? `  partitions ${partitionRanges(c.partitions)}`
        : ""
      : c.role !== "leader" && c.leader !== null
        ? `  following ${c.leader} (epoch ${c.epoch})`
        : c.role === "leader"
          ? `  epoch ${c.epoch}`
          : "";
    const via = c.serviceId === undefined ? "  (heard through heartbeats only)" : "";
    lines.push(`  ${c.coordinatorId.padEnd(width)}  ${c.role.padEnd(12)}${follows}${via}`);
  }
  if (s.lastHeartbeat) {
    lines.push(
      `heartbeat     from ${s.lastHeartbeat.coordinatorId}${s.lastHeartbeat.partition !== undefined ? ` partition ${s.lastHeartbeat.partition}` : ""} epoch ${s.lastHeartbeat.epoch}, ${(s.lastHeartbeat.ageMs / 1000).toFixed(1)} s ago`,
    );
  }
  return `${lines.join("\n")}\n`;
}
