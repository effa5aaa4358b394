/**
 * Wire types of the query service: a NATS micro service (`$SRV` discovery, `nats micro
 * ls/info/stats`) that every coordinator serves and whose answers come from the leader's
 * running monitor.
 *
 * Subjects keep the Java project's style, verb first and the cluster id last
 * (`presence.register.{cluster}`, `presence.report.{cluster}`):
 *
 *   presence.query.list.{cluster}                    any coordinator; followers forward to the leader
 *   presence.query.get.{cluster}
 *   presence.query.stats.{cluster}
 *   presence.query.{list|get|stats}.{cluster}.{coordinatorId}   that coordinator itself, no forwarding
 *
 * With several partitions (`run --partitions P`, P > 1) the coordinator asked on a shared
 * subject answers for the whole cluster: it asks each partition's leader on its direct subject
 * (answering itself for the partitions it leads) and merges; a direct subject answers for the
 * partitions that coordinator leads. Such answers carry `partitionCount`, the partitions they
 * cover and those they do not (`missingPartitions`). With one partition none of these fields
 * appear and every answer is as it always was.
 *
 * Pure: no NATS import, so that the client library can use it.
 */
import type { JsonObject } from "@bufbuild/protobuf";

/** The micro service's name, as `nats micro ls` shows it. */
export const QUERY_SERVICE_NAME = "presence-coordinator";

export const QUERY_OPERATIONS = ["list", "get", "stats"] as const;
export type QueryOperation = (typeof QUERY_OPERATIONS)[number];

export const querySubjects = {
  /** Served by every coordinator in one queue group; a follower forwards the request to the leader. */
  shared: (operation: QueryOperation, clusterId: string) => `presence.query.${operation}.${clusterId}`,
  /** Served by one coordinator only; it answers for itself (`not-leader` unless it leads). */
  direct: (operation: QueryOperation, clusterId: string, coordinatorId: string) =>
    `presence.query.${operation}.${clusterId}.${coordinatorId}`,
} as const;

/** `list` returns at most this many clients per page unless asked for fewer. */
export const DEFAULT_LIST_LIMIT = 1000;
/** The largest page `list` returns; a page is also cut to fit the server's max payload. */
export const MAX_LIST_LIMIT = 10_000;

/** A client as the leader's monitor sees it now. Only live clients (alive, suspect) are monitored. */
export interface ClientInfo {
  subject: string;
  state: "alive" | "suspect";
  /** Wall-clock ms of the last activity (ping reply or registration). */
  lastSeenMs: number;
  /** Round-trip of the last ping reply, ms. */
  rttMs: number;
  missedPings: number;
  metadata: JsonObject;
}

/** `list` request body (JSON; an empty body means all clients, first page). */
export interface ListRequest {
  state?: "alive" | "suspect";
  offset?: number;
  limit?: number;
}

/**
 * Fields every data answer carries: who answered, under which epoch.
 *
 * With one partition: the leader and its epoch. With several: for `get`, the leader and epoch
 * of the client's partition; for `list` and `stats`, the coordinator that gathered the answer
 * (the one asked, which need not lead anything) and the highest epoch among the partitions the
 * answer covers (0 when it covers none). Each partition's own leader and epoch are in
 * `partitions`.
 */
export interface LeaderStamp {
  clusterId: string;
  leader: string;
  epoch: number;
}

/** Client counts by state. */
export interface ClientCounts {
  total: number;
  alive: number;
  suspect: number;
}

/** With several partitions: a partition an answer covers, with the leader that answered for it and its epoch. */
export interface PartitionStamp {
  partition: number;
  leader: string;
  epoch: number;
}

/** A partition in a `stats` answer: its leader, epoch and client counts. */
export interface PartitionStats extends PartitionStamp {
  clients: ClientCounts;
}

/**
 * What `list` and `stats` answers add with several partitions (absent with one). An answer
 * covers the partitions whose leader answered in time; the others are listed as missing,
 * so that a partition without a leader (an election under way) or with a silent leader
 * leaves a hole that says so instead of failing the whole request.
 */
export interface PartitionCoverage<P extends PartitionStamp = PartitionStamp> {
  /** How many partitions the cluster runs. */
  partitionCount: number;
  /** The partitions the answer covers, by partition. */
  partitions: P[];
  /** The partitions it does not cover, ascending; empty when the answer covers the whole cluster. */
  missingPartitions: number[];
}

export interface ListResponse extends LeaderStamp, Partial<PartitionCoverage> {
  /** Clients matching the filter, over all pages. */
  total: number;
  offset: number;
  /** Offset of the next page; null on the last one. */
  nextOffset: number | null;
  /** Sorted by subject, so that pages are stable while clients come and go. */
  clients: ClientInfo[];
}

/** `get` request body: JSON `{"subject": "..."}`, or the subject itself as plain text. */
export interface GetRequest {
  subject: string;
}

export interface GetResponse extends LeaderStamp {
  client: ClientInfo;
  /** With several partitions: the client's partition (whose leader and epoch the stamp gives). */
  partition?: number;
}

export interface StatsResponse extends LeaderStamp, Partial<PartitionCoverage<PartitionStats>> {
  /** The coordinator that answered (the leader; with several partitions, the one asked). */
  coordinatorId: string;
  /** Over the partitions the answer covers. */
  clients: ClientCounts;
  /** Since the answering coordinator process started, ms. */
  uptimeMs: number;
  startedAt: string;
  version: string;
}

/** Error codes, in the `Nats-Service-Error-Code` header; the body is a QueryErrorBody. */
export const QUERY_ERRORS = {
  badRequest: { code: 400, error: "bad-request" },
  notFound: { code: 404, error: "not-found" },
  /** Asked a coordinator directly that does not lead: the body names the leader it knows. */
  notLeader: { code: 421, error: "not-leader" },
  /** No coordinator leads now (or this one knows of none yet). */
  noLeader: { code: 503, error: "no-leader" },
} as const;
export type QueryErrorCode = (typeof QUERY_ERRORS)[keyof typeof QUERY_ERRORS]["error"];

export interface QueryErrorBody {
  error: QueryErrorCode;
  message: string;
  clusterId: string;
  /** The coordinator that answered. */
  coordinatorId: string;
  /** Its election state: follower, candidate, leader, ... */
  role: string;
  /** The leader it knows of (null: none), and that leader's epoch (0: none); of `partition`'s when given. */
  leader: string | null;
  epoch: number;
  /** With several partitions, for `get`: the partition of the subject asked for. */
  partition?: number;
}

/** A query request that cannot be read. */
export class QueryRequestError extends Error {
  override readonly name = "QueryRequestError";
}

function parseObject(data: Uint8Array): Record<string, unknown> {
  const text = new TextDecoder().decode(data).trim();
  if (text === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new QueryRequestError("request body is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new QueryRequestError("request body is not a JSON object");
  return value as Record<string, unknown>;
}

function wholeNumber(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new QueryRequestError(`${name} must be a whole number`);
  return v;
}

/** Reads a `list` request; fills in offset 0 and the default limit, caps the limit. */
export function parseListRequest(data: Uint8Array): Required<Omit<ListRequest, "state">> & Pick<ListRequest, "state"> {
  const o = parseObject(data);
  if (o.state !== undefined && o.state !== "alive" && o.state !== "suspect") {
    throw new QueryRequestError(`state must be "alive" or "suspect" (dead and left clients are no longer monitored)`);
  }
  const limit = wholeNumber("limit", o.limit, DEFAULT_LIST_LIMIT);
  if (limit === 0) throw new QueryRequestError("limit must be at least 1");
  return {
    ...(o.state !== undefined ? { state: o.state } : {}),
    offset: wholeNumber("offset", o.offset, 0),
    limit: Math.min(limit, MAX_LIST_LIMIT),
  };
}

/** Reads a `get` request: `{"subject":"..."}` or the bare subject. */
export function parseGetRequest(data: Uint8Array): GetRequest {
  const text = new TextDecoder().decode(data).trim();
  if (text === "") throw new QueryRequestError("subject is required");
  if (!text.startsWith("{")) return { subject: text };
  const o = parseObject(data);
  if (typeof o.subject !== "string" || o.subject === "") throw new QueryRequestError("subject must be a non-empty string");
  return { subject: o.subject };
}

const bySubject = (a: ClientInfo, b: ClientInfo) => (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0);

/**
 * One page of `clients` (already filtered), sorted by subject. `total` is how many there are
 * in all, when `clients` holds only the first of them (see mergeClients).
 */
export function pageOf(
  clients: ClientInfo[],
  offset: number,
  limit: number,
  total = clients.length,
): { page: ClientInfo[]; nextOffset: number | null } {
  const sorted = [...clients].sort(bySubject);
  const page = sorted.slice(offset, offset + limit);
  const end = offset + page.length;
  return { page, nextOffset: end < total && page.length > 0 ? end : null };
}

/** Counts of `clients` by state. */
export function countClients(clients: readonly ClientInfo[]): ClientCounts {
  let suspect = 0;
  for (const c of clients) if (c.state === "suspect") suspect++;
  return { total: clients.length, alive: clients.length - suspect, suspect };
}

/**
 * The coverage of answers from several coordinators: each partition once, from the answer of
 * the highest epoch for it (two may claim a partition for a moment during a handover), and
 * every partition no answer covers as missing.
 */
export function mergeCoverage<P extends PartitionStamp>(partitionCount: number, parts: readonly (readonly P[])[]): PartitionCoverage<P> {
  const best = new Map<number, P>();
  for (const list of parts) {
    for (const p of list) {
      const seen = best.get(p.partition);
      if (p.partition < partitionCount && (seen === undefined || p.epoch > seen.epoch)) best.set(p.partition, p);
    }
  }
  const missingPartitions: number[] = [];
  for (let p = 0; p < partitionCount; p++) if (!best.has(p)) missingPartitions.push(p);
  return { partitionCount, partitions: [...best.values()].sort((a, b) => a.partition - b.partition), missingPartitions };
}

/** The cluster's stats from parts that each cover some partitions: counts summed over the partitions covered. */
export function mergeStats(
  partitionCount: number,
  parts: readonly (readonly PartitionStats[])[],
): PartitionCoverage<PartitionStats> & { clients: ClientCounts; epoch: number } {
  const coverage = mergeCoverage(partitionCount, parts);
  const clients: ClientCounts = { total: 0, alive: 0, suspect: 0 };
  let epoch = 0;
  for (const p of coverage.partitions) {
    clients.total += p.clients.total;
    clients.alive += p.clients.alive;
    clients.suspect += p.clients.suspect;
    epoch = Math.max(epoch, p.epoch);
  }
  return { ...coverage, clients, epoch };
}

/**
 * The clients of several coordinators, sorted by subject, for pageOf: each part holds at
 * least its first `offset + limit` clients by subject (or all it has). `total` is the parts'
 * totals summed. A subject in two parts (a partition changing hands) counts once.
 */
export function mergeClients(parts: readonly { clients: readonly ClientInfo[]; total: number }[]): {
  clients: ClientInfo[];
  total: number;
} {
  const seen = new Set<string>();
  const all: ClientInfo[] = [];
  let total = 0;
  for (const part of parts) {
    total += part.total;
    for (const c of part.clients) {
      if (seen.has(c.subject)) {
        total--;
        continue;
      }
      seen.add(c.subject);
      all.push(c);
    }
  }
  return { clients: all.sort(bySubject), total };
}
