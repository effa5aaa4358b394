/** A presence report as one line of text (the watch command). */
import type { Report } from "../../protocol/presence.js";

const time = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/**
 * One human-readable line per report. A report of a partition other than 0 shows it as
 * `[p3]` before its leader: epochs and seqs count within a partition.
 */
export function formatReport(r: Report): string {
  const meta = Object.keys(r.metadata).length > 0 ? `  ${JSON.stringify(r.metadata)}` : "";
  const seen = r.lastSeenMs > 0 ? time(r.lastSeenMs) : "-";
  return (
    `${time(r.ts)}  ${r.type.padEnd(13)} ${r.clientSubject}  ${r.state}` +
    `  lastSeen=${seen} rtt=${r.rttMs}ms missed=${r.missedPings}` +
    `  ${partitionTag(r.partition)}leader=${r.coordinatorId} epoch=${r.epoch} seq=${r.seq}${meta}`
  );
}

/** `[p3] ` for partition 3; nothing for partition 0 (or none), so a one-partition cluster's lines are unchanged. */
function partitionTag(partition: number | undefined): string {
  return partition === undefined || partition === 0 ? "" : `[p${partition}] `;
}
