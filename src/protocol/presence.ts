/**
 * Wire types of presence monitoring: the registration subjects and JetStream resources,
 * the registration JSON and its validation, and the presence report with its two
 * encodings (Protocol Buffers by default, JSON on request).
 */
import { create, fromBinary, fromJson, toBinary, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { PresenceReportSchema, type PresenceReport } from "./gen/presence/v1/report_pb.js";
import { isPartition, MAX_PARTITIONS } from "./partition.js";

export const presenceSubjects = {
  register: (clusterId: string) => `presence.register.${clusterId}`,
  unregister: (clusterId: string) => `presence.unregister.${clusterId}`,
  report: (clusterId: string) => `presence.report.${clusterId}`,
} as const;

export const presenceResources = {
  /** WorkQueue stream of registration and unregistration messages. */
  registrationStream: (clusterId: string) => `presence-registrations-${clusterId}`,
  /** KV bucket with one entry per registered client. */
  registrationBucket: (clusterId: string) => `presence-registrations-${clusterId}`,
  /** The one durable consumer on the stream; only the leader pulls it. */
  registrationConsumer: "presence-coordinator",
} as const;

/** Longest presence subject accepted. */
export const MAX_SUBJECT_LENGTH = 256;
/** Largest registration payload accepted, in bytes. */
export const MAX_REGISTRATION_BYTES = 64 * 1024;

/** A client's registration: its presence subject and the extra fields it sent. */
export interface Registration {
  subject: string;
  metadata: JsonObject;
}

export type RegistrationRefusal =
  | "too-large"
  | "not-json"
  | "not-an-object"
  | "missing-subject"
  | "empty-subject"
  | "too-long"
  | "whitespace"
  | "wildcard"
  | "empty-token"
  | "reserved-prefix"
  | "coordinator-subject";

/**
 * The namespaces of the coordinators' own subjects (registration, reports, queries,
 * heartbeats, election reports, for every cluster). A client pinged under them would be
 * pinging a coordinator: a ping on `presence.register.x` is a registration message, one on
 * `presence.query.list.x` is answered by the query service, so a dead client would look
 * alive forever.
 */
export const COORDINATOR_SUBJECT_PREFIXES = ["presence.", "coordinator."] as const;

/** A registration the coordinator refuses; `reason` is a stable code, the message says why. */
export class RegistrationError extends Error {
  override readonly name = "RegistrationError";
  constructor(
    readonly reason: RegistrationRefusal,
    message: string,
  ) {
    super(`registration refused (${reason}): ${message}`);
  }
}

/** Checks that `subject` is a plain subject a client can be pinged on; throws RegistrationError. */
export function validatePresenceSubject(subject: string): void {
  if (subject.length === 0) throw new RegistrationError("empty-subject", "myPresenceSubject is empty");
  if (subject.length > MAX_SUBJECT_LENGTH) {
    throw new RegistrationError("too-long", `subject is ${subject.length} characters, more than ${MAX_SUBJECT_LENGTH}`);
  }
  if (/\s/.test(subject)) throw new RegistrationError("whitespace", `subject ${JSON.stringify(subject)} contains white space`);
  if (/[*>]/.test(subject)) throw new RegistrationError("wildcard", `subject ${JSON.stringify(subject)} contains a wildcard`);
  if (subject.split(".").some((t) => t.length === 0)) {
    throw new RegistrationError("empty-token", `subject ${JSON.stringify(subject)} has an empty token`);
  }
  if (subject.startsWith("$") || subject.startsWith("_INBOX.")) {
    throw new RegistrationError("reserved-prefix", `subject ${JSON.stringify(subject)} is under a reserved prefix ($ or _INBOX.)`);
  }
  const prefix = COORDINATOR_SUBJECT_PREFIXES.find((p) => subject.startsWith(p));
  if (prefix !== undefined) {
    throw new RegistrationError(
      "coordinator-subject",
      `subject ${JSON.stringify(subject)} is under ${prefix}, where the coordinators' own subjects are`,
    );
  }
}

/** Parses and validates a registration (or unregistration) message. */
export function parseRegistration(data: Uint8Array): Registration {
  if (data.byteLength > MAX_REGISTRATION_BYTES) {
    throw new RegistrationError("too-large", `payload is ${data.byteLength} bytes, more than ${MAX_REGISTRATION_BYTES}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch {
    throw new RegistrationError("not-json", "payload is not UTF-8 JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RegistrationError("not-an-object", "payload is not a JSON object");
  }
  const { myPresenceSubject, ...metadata } = value as Record<string, JsonValue>;
  if (typeof myPresenceSubject !== "string") {
    throw new RegistrationError("missing-subject", "myPresenceSubject is missing or not a string");
  }
  validatePresenceSubject(myPresenceSubject);
  return { subject: myPresenceSubject, metadata: metadata as JsonObject };
}

export const REPORT_TYPES = ["NodePresent", "NodeSuspect", "NodeRecovered", "NodeDead", "NodeLeft", "NodeState"] as const;
export type ReportType = (typeof REPORT_TYPES)[number];

export const CLIENT_STATES = ["alive", "suspect", "dead", "left"] as const;
export type ClientState = (typeof CLIENT_STATES)[number];

/** What a client actor says happened; the publisher adds cluster, leader, epoch, seq and time. */
export interface ClientReport {
  type: ReportType;
  clientSubject: string;
  state: ClientState;
  lastSeenMs: number;
  rttMs: number;
  missedPings: number;
  metadata: JsonObject;
}

/** A whole presence report as published. */
export interface Report extends ClientReport {
  clusterId: string;
  coordinatorId: string;
  epoch: number;
  seq: number;
  ts: number;
  /**
   * The client's partition, `partitionOf(clientSubject, P)`: 0 to MAX_PARTITIONS - 1. Absent
   * means 0, and 0 is never on the wire (protobuf leaves a zero out, the JSON leaves the key
   * out), so a report of partition 0 is exactly a report from before the field. A decoded
   * report has it only when it is not 0.
   */
  partition?: number;
}

/** How presence reports are encoded on the wire (the `Presence-Encoding` header says which). */
export type ReportEncoding = "protobuf" | "json";
export const REPORT_ENCODINGS: readonly ReportEncoding[] = ["protobuf", "json"];

/** Header names on every report. */
export const REPORT_HEADERS = {
  encoding: "Presence-Encoding",
  schema: "Presence-Schema",
} as const;
export const REPORT_SCHEMA = `${PresenceReportSchema.typeName}`;

export class ReportDecodeError extends Error {
  override readonly name = "ReportDecodeError";
}

/**
 * Encodes a whole report with the generated encoder: the reference encoding. The publisher
 * uses `createReportEncoder` (report-encoder.ts), which writes the same bytes per client
 * without encoding the unchanging fields every time.
 *
 * JSON is the report's keys in the report object's order, except `partition`: left out when
 * it is 0, and otherwise the last key, wherever the object holds it. Throws a RangeError for a
 * partition that is not one (decodeReport would refuse it).
 */
export function encodeReport(report: Report, encoding: ReportEncoding): Uint8Array {
  const partition = report.partition ?? 0;
  if (!isPartition(partition)) {
    throw new RangeError(`report: partition must be a whole number from 0 to ${MAX_PARTITIONS - 1}; got ${partition}`);
  }
  if (encoding === "json") {
    if (partition === 0 && report.partition === undefined) return new TextEncoder().encode(JSON.stringify(report));
    const { partition: _, ...fields } = report;
    const text = JSON.stringify(fields);
    return new TextEncoder().encode(partition === 0 ? text : `${text.slice(0, -1)},"partition":${partition}}`);
  }
  return toBinary(
    PresenceReportSchema,
    create(PresenceReportSchema, {
      ...report,
      epoch: BigInt(report.epoch),
      seq: BigInt(report.seq),
      ts: BigInt(report.ts),
      lastSeenMs: BigInt(report.lastSeenMs),
    }),
  );
}

function fromMessage(m: PresenceReport): Report {
  if (!(REPORT_TYPES as readonly string[]).includes(m.type)) {
    throw new ReportDecodeError(`report: unknown type ${JSON.stringify(m.type)}`);
  }
  if (!(CLIENT_STATES as readonly string[]).includes(m.state)) {
    throw new ReportDecodeError(`report: unknown client state ${JSON.stringify(m.state)}`);
  }
  return {
    type: m.type as ReportType,
    clusterId: m.clusterId,
    coordinatorId: m.coordinatorId,
    epoch: Number(m.epoch),
    seq: Number(m.seq),
    ts: Number(m.ts),
    clientSubject: m.clientSubject,
    state: m.state as ClientState,
    lastSeenMs: Number(m.lastSeenMs),
    rttMs: m.rttMs,
    missedPings: m.missedPings,
    metadata: m.metadata ?? {},
    ...(m.partition === 0 ? {} : { partition: checkedPartition(m.partition) }),
  };
}

function checkedPartition(partition: number): number {
  if (!isPartition(partition)) {
    throw new ReportDecodeError(`report: partition ${partition} is out of range: a cluster has at most ${MAX_PARTITIONS} partitions`);
  }
  return partition;
}

/** Decodes a report in either encoding; `encoding` comes from the Presence-Encoding header. */
export function decodeReport(data: Uint8Array, encoding: string | undefined): Report {
  try {
    if (encoding === "json") {
      return fromMessage(fromJson(PresenceReportSchema, JSON.parse(new TextDecoder().decode(data)) as JsonValue));
    }
    if (encoding === undefined || encoding === "" || encoding === "protobuf") {
      return fromMessage(fromBinary(PresenceReportSchema, data));
    }
  } catch (err) {
    if (err instanceof ReportDecodeError) throw err;
    throw new ReportDecodeError(`report: cannot decode ${encoding ?? "protobuf"}: ${(err as Error).message}`, { cause: err });
  }
  throw new ReportDecodeError(`report: unknown encoding ${JSON.stringify(encoding)}`);
}
