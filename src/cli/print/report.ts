/** A presence report as one line of text (the watch command). */
import type { Report } from "../../protocol/presence.js";

const time = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** One human-readable line per report. */
export function formatReport(r: Report): string {
  const meta = Object.keys(r.metadata).length > 0 ? `  ${JSON.stringify(r.metadata)}` : "";
  const seen = r.lastSeenMs > 0 ? time(r.lastSeenMs) : "-";
  return (
    `${time(r.ts)}  ${r.type.padEnd(13)} ${r.clientSubject}  ${r.state}` +
    `  lastSeen=${seen} rtt=${r.rttMs}ms missed=${r.missedPings}` +
    `  leader=${r.coordinatorId} epoch=${r.epoch} seq=${r.seq}${meta}`
  );
}
