/**
 * The one message a page sends over its WebSocket, checked field by field before it reaches
 * a hub: what the page looks at (coordinator, selected actor, open shard, client filter and
 * page, last event seen). Any other field, and any value of the wrong type or out of bounds,
 * is left out.
 */
import type { ViewRequest } from "./view-types.js";

/** Validates a page's message: `{type:"view", coordinator?, select?, expandShard?, clients?, afterSeq?}`. */
export function parseViewMessage(msg: unknown): { coordinatorId: string | null; request: ViewRequest } | string {
  if (msg === null || typeof msg !== "object" || (msg as { type?: unknown }).type !== "view") return 'expected {"type":"view", ...}';
  const m = msg as Record<string, unknown>;
  const request: ViewRequest = {};
  const str = (v: unknown, max = 512) => (typeof v === "string" && v.length <= max ? v : undefined);
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  const select = str(m.select);
  if (select !== undefined) request.select = select;
  const expand = num(m.expandShard);
  request.expandShard = expand === undefined ? null : expand;
  const after = num(m.afterSeq);
  if (after !== undefined) request.afterSeq = after;
  const c = m.clients;
  if (c !== undefined && c !== null && typeof c === "object") {
    const q = c as Record<string, unknown>;
    const states = ["all", "alive", "suspect", "dead", "left"] as const;
    const sorts = ["subject", "state", "lastSeenMs", "rttMs", "missedPings", "shard"] as const;
    request.clients = {};
    const text = str(q.text, 256);
    if (text !== undefined) request.clients.text = text;
    if (states.includes(q.state as (typeof states)[number])) request.clients.state = q.state as (typeof states)[number];
    if (sorts.includes(q.sort as (typeof sorts)[number])) request.clients.sort = q.sort as (typeof sorts)[number];
    if (typeof q.descending === "boolean") request.clients.descending = q.descending;
    const offset = num(q.offset);
    if (offset !== undefined) request.clients.offset = offset;
    const limit = num(q.limit);
    if (limit !== undefined) request.clients.limit = limit;
  }
  return { coordinatorId: str(m.coordinator, 256) ?? null, request };
}
