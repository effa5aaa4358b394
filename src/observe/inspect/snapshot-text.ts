/**
 * An actor's snapshot as the page shows it: its state value as a dotted path and its context
 * as flat fields (actor maps, liveness tables and long values summarised), with numbers and
 * text cut to what a person reads.
 */
import type { ClientContext } from "../../machines/client.js";
import type { ElectionContext } from "../../machines/election.js";
import { LivenessTable } from "../../machines/liveness.js";
import type { ActorKind } from "./view-types.js";

/** A dotted path of a state value; parallel regions are joined with ` | `. */
export function describeStateValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || typeof value !== "object") return "";
  const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
    const rest = describeStateValue(v);
    return rest === "" ? k : `${k}.${rest}`;
  });
  return parts.length === 1 ? parts[0]! : parts.join(" | ");
}

/** Numbers as a person reads them: at most two decimals. */
export function round(n: number): number {
  return Number.isInteger(n) ? n : Math.round(n * 100) / 100;
}

/** Text cut to `max` characters, with an ellipsis. */
export function clip(text: string, max = 140): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** An actor's context as flat fields; the election's and a client's are picked field by field. */
export function flatContext(kind: ActorKind, context: unknown): Record<string, string | number | boolean | null> {
  if (context === null || typeof context !== "object") return {};
  const c = context as Record<string, unknown>;
  if (kind === "election") {
    const e = c as unknown as ElectionContext;
    return {
      coordinatorId: e.coordinatorId,
      epoch: e.epoch,
      highestEpoch: e.highestEpoch,
      leader: e.leader ? `${e.leader.coordinatorId} (epoch ${e.leader.epoch})` : null,
      revision: e.revision,
      backoffMs: e.backoffMs,
      leaseValidForMs: round(e.leaseValidForMs),
      stopRequested: e.stopRequested,
    };
  }
  if (kind === "client") {
    const cl = c as unknown as ClientContext;
    return {
      subject: cl.subject,
      state: cl.state,
      lastSeen: new Date(cl.lastSeenMs).toISOString(),
      rttMs: cl.rttMs,
      missedPings: cl.missedPings,
      revision: cl.revision,
      metadata: JSON.stringify(cl.metadata),
    };
  }
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === "number") out[k] = round(v);
    else if (typeof v === "string" || typeof v === "boolean" || v === null) out[k] = v;
    else if (Array.isArray(v)) out[k] = `${v.length} items`;
    else if (k === "clients" && v instanceof Map) out[k] = `${v.size} actors`;
    else if (k === "liveness" && v instanceof LivenessTable) out[k] = `${v.size} clients`;
    else if (k === "settings" || k === "timings") out[k] = clip(JSON.stringify(v), 200);
  }
  return out;
}
