/**
 * Wire types of the election: subjects and resource names, the heartbeat, the lease value
 * and the election report. These are what other coordinators (including the Java one) and
 * report consumers see.
 */
import { isPartition, MAX_PARTITIONS } from "./partition.js";

export const subjects = {
  heartbeat: (clusterId: string) => `coordinator.leader.heartbeat.${clusterId}`,
  electionReport: (clusterId: string) => `coordinator.report.${clusterId}`,
} as const;

export const resources = {
  leadershipBucket: (clusterId: string) => `coordinator-leadership-${clusterId}`,
  /** The lease key of a cluster with one partition (today's, and the Java original's). */
  leaseKey: "leader",
} as const;

/** The lease key of `partition` when the cluster runs `partitions` of them: `leader` for one, `leader.{p}` otherwise. */
export function leaseKeyOf(partition: number, partitions: number): string {
  return partitions === 1 ? resources.leaseKey : `${resources.leaseKey}.${partition}`;
}

/** Every lease key, as a KV filter: `leader` itself and `leader.{p}`. */
export const LEASE_KEYS = [resources.leaseKey, `${resources.leaseKey}.>`];

/** The member keys of the leadership bucket, as a KV watch filter. */
export const MEMBER_KEYS = "member.>";

/**
 * A coordinator's member key: `member.` and its id, each character that a KV key cannot hold
 * (or that would make an empty token: ".") written as `=` and two hex digits. Ids never
 * contain `=`, so the key names one id only.
 */
export function memberKey(coordinatorId: string): string {
  return `member.${coordinatorId.replace(/[^A-Za-z0-9_-]/g, (c) => `=${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}`;
}

/** A member key's value: who, how many partitions it leads, and when it wrote (ms since the Unix epoch). */
export interface MemberValue {
  coordinatorId: string;
  led: number;
  ts: number;
}

export function parseMemberValue(data: Uint8Array | string): MemberValue {
  const o = parseJsonObject("member value", data);
  if (typeof o.coordinatorId !== "string" || o.coordinatorId.length === 0) {
    throw new WireFormatError("member value: coordinatorId must be a non-empty string");
  }
  const led = Number.isSafeInteger(o.led) && (o.led as number) >= 0 ? (o.led as number) : 0;
  return { coordinatorId: o.coordinatorId, led, ts: typeof o.ts === "number" ? o.ts : 0 };
}

/** Who holds the lease, and under which epoch. Also the lease's KV value. */
export interface LeaseHolder {
  coordinatorId: string;
  epoch: number;
}

/** `coordinator.leader.heartbeat.{cluster}`: JSON `{coordinatorId, epoch, ts}`. */
export interface Heartbeat {
  coordinatorId: string;
  epoch: number;
  /** Wall-clock time of sending, ms since the Unix epoch. */
  ts: number;
  /** Present and true on the last heartbeat of a leader that steps down gracefully. */
  resigning?: boolean;
  /**
   * On a resigning heartbeat, the live coordinator the leader hands over to: it stands at
   * once, without the election backoff. Absent when the leader knows of nobody.
   */
  successor?: string;
  /** The partition this heartbeat is for; absent when the cluster runs one partition. */
  partition?: number;
}

/** A payload on a coordinator subject that does not have the expected shape. */
export class WireFormatError extends Error {
  override readonly name = "WireFormatError";
}

function parseJsonObject(what: string, data: Uint8Array | string): Record<string, unknown> {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new WireFormatError(`${what}: not JSON`, { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new WireFormatError(`${what}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function isEpoch(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0;
}

export function encodeHeartbeat(hb: Heartbeat): string {
  return JSON.stringify(hb);
}

export function parseHeartbeat(data: Uint8Array | string): Heartbeat {
  const o = parseJsonObject("heartbeat", data);
  if (typeof o.coordinatorId !== "string" || o.coordinatorId.length === 0) {
    throw new WireFormatError("heartbeat: coordinatorId must be a non-empty string");
  }
  if (!isEpoch(o.epoch)) {
    throw new WireFormatError("heartbeat: epoch must be a positive integer");
  }
  const ts = typeof o.ts === "number" ? o.ts : 0;
  const hb: Heartbeat = { coordinatorId: o.coordinatorId, epoch: o.epoch, ts };
  if (o.resigning === true) hb.resigning = true;
  if (typeof o.successor === "string" && o.successor.length > 0) hb.successor = o.successor;
  if (o.partition !== undefined) {
    if (typeof o.partition !== "number" || !isPartition(o.partition)) {
      throw new WireFormatError(`heartbeat: partition must be an integer from 0 to ${MAX_PARTITIONS - 1}`);
    }
    hb.partition = o.partition as number;
  }
  return hb;
}

export function encodeLeaseValue(holder: LeaseHolder): string {
  return JSON.stringify(holder);
}

/**
 * Reads a lease value. `revision` is the entry's revision, used as the epoch when the value
 * has none yet (the instant between the create and the write that stamps the epoch in).
 */
export function parseLeaseValue(data: Uint8Array | string, revision: number): LeaseHolder {
  const o = parseJsonObject("lease value", data);
  if (typeof o.coordinatorId !== "string" || o.coordinatorId.length === 0) {
    throw new WireFormatError("lease value: coordinatorId must be a non-empty string");
  }
  return { coordinatorId: o.coordinatorId, epoch: isEpoch(o.epoch) ? o.epoch : revision };
}

export const ELECTION_REPORT_TYPES = [
  "BecameFollower",
  "FollowingLeader",
  "BecameCandidate",
  "BecameLeader",
  "SteppedDown",
  "Stopped",
] as const;
export type ElectionReportType = (typeof ELECTION_REPORT_TYPES)[number];

/** Why a coordinator changed state; carried in election reports. */
export type ElectionReason =
  | "started"
  | "leader-timeout"
  | "leader-resigned"
  | "leader-seen"
  | "lost-election"
  | "lease-error"
  | "won-election"
  | "stepped-down"
  | "renew-deadline-missed"
  | "lease-lost"
  | "superseded"
  | "shutdown"
  /** A leader handed its partition to a named successor, to balance the partitions. */
  | "handover";

/** What the election machine says happened; the driver adds who, where and when. */
export interface ElectionReportBody {
  type: ElectionReportType;
  /**
   * The epoch of the leader this coordinator knows: its own while it leads, the followed
   * leader's otherwise, 0 when it knows of none. A coordinator that lost its lease never
   * reports its old epoch here again (it goes in `formerEpoch`).
   */
  epoch: number;
  /** The coordinator's election state after the transition. */
  state: "follower" | "candidate" | "leader" | "stopped";
  reason: ElectionReason;
  /** The leader this coordinator knows of, when it knows one. */
  leaderId?: string;
  /** On SteppedDown and Stopped of a former leader: the epoch it held. */
  formerEpoch?: number;
}

/** `coordinator.report.{cluster}`: one JSON report per election transition. */
export interface ElectionReport extends ElectionReportBody {
  clusterId: string;
  coordinatorId: string;
  /** Rises by one per report from this coordinator process (and partition). */
  seq: number;
  /** Wall-clock time, ms since the Unix epoch. */
  ts: number;
  /** The partition whose election this is; absent when the cluster runs one partition. */
  partition?: number;
}

export function encodeElectionReport(r: ElectionReport): string {
  return JSON.stringify(r);
}

export function parseElectionReport(data: Uint8Array | string): ElectionReport {
  const o = parseJsonObject("election report", data);
  if (typeof o.type !== "string" || !(ELECTION_REPORT_TYPES as readonly string[]).includes(o.type)) {
    throw new WireFormatError(`election report: unknown type ${JSON.stringify(o.type)}`);
  }
  if (typeof o.coordinatorId !== "string" || typeof o.clusterId !== "string") {
    throw new WireFormatError("election report: coordinatorId and clusterId must be strings");
  }
  if (typeof o.epoch !== "number" || typeof o.seq !== "number" || typeof o.ts !== "number") {
    throw new WireFormatError("election report: epoch, seq and ts must be numbers");
  }
  if (o.partition !== undefined && (typeof o.partition !== "number" || !isPartition(o.partition))) {
    throw new WireFormatError(`election report: partition must be an integer from 0 to ${MAX_PARTITIONS - 1}`);
  }
  return o as unknown as ElectionReport;
}
