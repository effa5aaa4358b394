/**
 * The page's client table and shard grid, built from every client's row: counts by state,
 * the clients per shard, one shard's clients, and one page of rows filtered and sorted as
 * the page asks. A page gets at most one page of rows, however many clients there are.
 */
import type { ClientContext } from "../../machines/client.js";
import { describeStateValue } from "./snapshot-text.js";
import type { ClientQuery, ClientRow, ClientRowState, ShardSummary, View } from "./view-types.js";

/** A client row before its machine state is described (that is done for the rows of one page only). */
export type RowData = Omit<ClientRow, "machineState"> & { value: unknown };

export function rowData(c: ClientContext, value: unknown, shard: number, live: boolean): RowData {
  return { subject: c.subject, state: c.state, value, lastSeenMs: c.lastSeenMs, rttMs: c.rttMs, missedPings: c.missedPings, shard, live };
}

function toClientRow({ value, ...rest }: RowData): ClientRow {
  return { ...rest, machineState: describeStateValue(value) };
}

/** Plain ordering (no locale rules: fast on 10,000 rows, and the same on every machine). */
function compare(x: string | number, y: string | number): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

/** How many clients are in each state, live and finished. */
export function countStates(rows: readonly RowData[]): Record<ClientRowState, number> & { total: number } {
  const counts = { alive: 0, suspect: 0, dead: 0, left: 0, total: rows.length };
  for (const r of rows) counts[r.state] += 1;
  return counts;
}

/** Each shard's live clients and how many of them are suspect, in the order of the shards' indexes. */
export function shardSummaries(rows: readonly RowData[], indexes: readonly number[]): ShardSummary[] {
  const shardTotals = new Map<number, ShardSummary>();
  for (const r of rows) {
    if (!r.live) continue;
    let s = shardTotals.get(r.shard);
    if (s === undefined) {
      s = { index: r.shard, clients: 0, suspect: 0 };
      shardTotals.set(r.shard, s);
    }
    s.clients += 1;
    if (r.state === "suspect") s.suspect += 1;
  }
  const shards = indexes.map((index) => shardTotals.get(index) ?? { index, clients: 0, suspect: 0 });
  return shards.sort((a, b) => a.index - b.index);
}

/** The first 100 live clients of one shard, by subject, for the actor tree. */
export function shardClients(rows: readonly RowData[], index: number): NonNullable<View["expandedShard"]> {
  const inShard = rows.filter((r) => r.live && r.shard === index).sort((a, b) => compare(a.subject, b.subject));
  return {
    index,
    clients: inShard.slice(0, 100).map((r) => ({ subject: r.subject, state: r.state })),
    more: Math.max(0, inShard.length - 100),
  };
}

/** One page of the rows that match the query's filter, in its order (100 rows unless asked, at most 500). */
export function pageOfClients(rows: readonly RowData[], q: ClientQuery): View["clients"] {
  const text = (q.text ?? "").toLowerCase();
  let filtered = rows.filter(
    (r) => (q.state === undefined || q.state === "all" || r.state === q.state) && (text === "" || r.subject.toLowerCase().includes(text)),
  );
  const sort = q.sort ?? "subject";
  const dir = q.descending === true ? -1 : 1;
  filtered = filtered.sort((a, b) => {
    const x = a[sort];
    const y = b[sort];
    const c = compare(x, y);
    return c === 0 ? compare(a.subject, b.subject) : c * dir;
  });
  const limit = Math.min(Math.max(q.limit ?? 100, 1), 500);
  const offset = Math.max(0, Math.min(q.offset ?? 0, Math.max(0, filtered.length - 1)));
  return { total: filtered.length, offset, rows: filtered.slice(offset, offset + limit).map(toClientRow) };
}
