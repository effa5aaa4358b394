/**
 * The publishing side of presence reports, for the hot path: one leader sends every live
 * client a `NodeState` each state interval, so encoding is per report work (design §10).
 *
 * A report's fields fall in two groups:
 * - unchanging: `clusterId` and `coordinatorId` (per coordinator), `partition` (per encoder:
 *   one encoder serves one partition), `epoch` (per leadership), `clientSubject` and
 *   `metadata` (per client, until it registers again);
 * - changing: `type`, `seq`, `ts`, `state`, `lastSeenMs`, `rttMs`, `missedPings`.
 *
 * The unchanging fields are encoded once, by the generated encoder itself, and cached; the
 * changing ones are written around them with `BinaryWriter`, in field-number order, so the
 * result is byte for byte what `encodeReport` writes. Each field is written in exactly one
 * part (concatenated protobuf is a merge: a field in two parts would be merged, not
 * replaced), and a default value (0, "") is omitted as the generated encoder omits it.
 *
 * JSON does the same with cached text fragments, in the key order `encodeReport` writes for
 * a report built as the publisher builds it.
 *
 * The partition costs nothing per report. It is the last field in both encodings: in
 * protobuf (field 13, after the metadata's 12) it is written into each client's cached
 * metadata part, in JSON (the last key) it is the text that closes every report. At
 * partition 0 it is not written at all, as `encodeReport` leaves it out.
 *
 * Reports are encoded a batch at a time (one sweep's NodeStates), into ONE buffer: each
 * report gets a view of it. A buffer of its own per report cost more than all the rest of
 * the encoding (1.5–2 µs per report, most of it allocating the buffer and collecting it
 * again; 0.25 µs in a batch). In protobuf the batch is written size-delimited (each report
 * behind its length, the writer's `fork`/`join`) and read back with the library's reader,
 * whose `bytes()` gives each report as a view without copying.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { PresenceReportSchema } from "./gen/presence/v1/report_pb.js";
import { isPartition, MAX_PARTITIONS } from "./partition.js";
import { REPORT_TYPES, type ClientReport, type ReportEncoding } from "./presence.js";

/** A report encoder for one coordinator and partition: its cluster, id and partition are fixed, the epoch is given per report. */
export interface ReportEncoder {
  readonly encoding: ReportEncoding;
  /** Encodes `body` as published under `epoch` with `seq` at `ts`; what `encodeReport` gives for the same report. */
  encode(body: ClientReport, epoch: number, seq: number, ts: number): Uint8Array;
  /**
   * Encodes `bodies` as published under `epoch` at `ts`, the first with `firstSeq` and each
   * next one with the next seq: each is what `encode` gives, as a view of one shared buffer.
   */
  encodeAll(bodies: readonly ClientReport[], epoch: number, firstSeq: number, ts: number, keys?: ReportKeys): Uint8Array[];
  /** Drops what is cached for `subject` (it is dead or left). */
  forget(subject: string): void;
  /** Drops every cached client (leadership ended). */
  clear(): void;
  /** Clients with a cached part: for tests and metrics. */
  readonly cachedClients: number;
}

/**
 * The clients' keys (see src/machines/liveness.ts), one per report of a batch; a negative
 * number for a report without one. A key lets the encoder find the client's cached part by
 * index: at 50,000 clients, finding it by subject in a map of every client was two thirds
 * of what encoding a NodeState cost.
 */
export type ReportKeys = readonly number[];

/** What is encoded once per client: valid while the client's metadata object is the same one. */
interface ClientPart<T> {
  clientSubject: string;
  metadata: ClientReport["metadata"];
  /** The key it was last found by, or -1. */
  key: number;
  /** The client subject (field 7). */
  subject: T;
  /** The metadata (field 12), and in protobuf the encoder's partition (field 13). */
  meta: T;
}

/** Field tags as written on the wire: (field number << 3) | wire type. */
const TAG = {
  type: (1 << 3) | WireType.LengthDelimited,
  seq: (5 << 3) | WireType.Varint,
  ts: (6 << 3) | WireType.Varint,
  clientSubject: (7 << 3) | WireType.LengthDelimited,
  state: (8 << 3) | WireType.LengthDelimited,
  lastSeenMs: (9 << 3) | WireType.Varint,
  rttMs: (10 << 3) | WireType.Bit64,
  missedPings: (11 << 3) | WireType.Varint,
} as const;

const UINT32_MAX = 0xffff_ffff;
const NOTHING = new Uint8Array(0);
const TWO_28 = 2 ** 28;

/**
 * The first four bytes of a varint above 2^32: the low 28 bits, seven to a byte, each with
 * its continuation bit. Reused: `raw` copies it into the writer's buffer.
 */
const low28 = new Uint8Array(4);

/**
 * A 64-bit varint field (`int64` when `signed`, else `uint64`). Wall-clock times (`ts`,
 * `lastSeenMs`) are above 2^32, where the writer's own `int64` goes through a BigInt. A
 * varint is the value seven bits to a byte, low bits first, so a non-negative integer below
 * 2^53 is its low 28 bits (four bytes, each marked "more follows") and then the varint of
 * the rest, which is below 2^32 and written by `uint32`: the very bytes `int64` writes. The
 * rest (negative, not an integer, which then throws as `encodeReport` does, or beyond 2^53)
 * goes through `int64`/`uint64`.
 */
function varint64(w: BinaryWriter, tag: number, value: number, signed: boolean): void {
  if (value === 0) return;
  w.uint32(tag);
  if (value > 0 && value <= UINT32_MAX && Number.isInteger(value)) w.uint32(value);
  else if (value > 0 && value <= Number.MAX_SAFE_INTEGER && Number.isInteger(value)) {
    const lo = value % TWO_28;
    low28[0] = (lo & 0x7f) | 0x80;
    low28[1] = ((lo >>> 7) & 0x7f) | 0x80;
    low28[2] = ((lo >>> 14) & 0x7f) | 0x80;
    low28[3] = ((lo >>> 21) & 0x7f) | 0x80;
    w.raw(low28).uint32((value - lo) / TWO_28);
  } else if (signed) w.int64(value);
  else w.uint64(value);
}

/** Keys above this are not indexed (an array of this many entries is the most kept). */
const MAX_INDEXED_KEY = 2 ** 22;

/**
 * The clients' cached parts: by subject, and by key for a report that comes with one. A part
 * found by key counts only if it is the report's subject's and was made for the same
 * metadata object; otherwise the subject decides, and the key then points at what it found.
 */
class ClientParts<T> {
  private readonly bySubject = new Map<string, ClientPart<T>>();
  /** Packed (filled with undefined up to the highest key), so that it stays an array and not a dictionary. */
  private byKey: (ClientPart<T> | undefined)[] = [];

  constructor(private readonly make: (body: ClientReport) => Omit<ClientPart<T>, "clientSubject" | "metadata" | "key">) {}

  get size(): number {
    return this.bySubject.size;
  }

  of(body: ClientReport, key: number): ClientPart<T> {
    const indexed = key >= 0 && key <= MAX_INDEXED_KEY && Number.isInteger(key);
    if (indexed && key < this.byKey.length) {
      const hit = this.byKey[key];
      if (hit !== undefined && hit.metadata === body.metadata && hit.clientSubject === body.clientSubject) return hit;
    }
    let part = this.bySubject.get(body.clientSubject);
    if (part === undefined || part.metadata !== body.metadata) {
      if (part !== undefined) this.unindex(part);
      const made = this.make(body);
      part = { clientSubject: body.clientSubject, metadata: body.metadata, key: -1, subject: made.subject, meta: made.meta };
      this.bySubject.set(body.clientSubject, part);
    }
    if (indexed) {
      this.unindex(part);
      while (this.byKey.length <= key) this.byKey.push(undefined);
      this.byKey[key] = part;
      part.key = key;
    }
    return part;
  }

  forget(subject: string): void {
    const part = this.bySubject.get(subject);
    if (part === undefined) return;
    this.unindex(part);
    this.bySubject.delete(subject);
  }

  clear(): void {
    this.bySubject.clear();
    this.byKey = [];
  }

  private unindex(part: ClientPart<T>): void {
    if (part.key >= 0 && this.byKey[part.key] === part) this.byKey[part.key] = undefined;
    part.key = -1;
  }
}

/** A string field (type, state) encoded once per value. */
function stringFields(tag: number): (value: string) => Uint8Array {
  const bytes = new Map<string, Uint8Array>();
  return (value) => {
    let field = bytes.get(value);
    if (field === undefined) {
      field = new BinaryWriter().uint32(tag).string(value).finish();
      bytes.set(value, field);
    }
    return field;
  };
}

/**
 * Metadata encodings shared by the clients whose metadata reads the same (often none at all,
 * or a zone and a version): keyed by its JSON text, at most this many texts of at most
 * SHARED_META_MAX_CHARS each. Encoding a client's metadata took 2.1–2.9 µs, reading its
 * text 0.5 µs: at a takeover of 50,000 clients, 80 ms of the new leader's first seconds.
 */
const SHARED_META_MAX = 4096;
const SHARED_META_MAX_CHARS = 512;

function protobufEncoder(clusterId: string, coordinatorId: string, partition: number): ReportEncoder {
  const writer = new BinaryWriter();
  /** Writes the per-client parts (the report writer may be in the middle of a report). */
  const partWriter = new BinaryWriter();
  const typeField = stringFields(TAG.type);
  const stateField = stringFields(TAG.state);
  let epochPart: { epoch: number; bytes: Uint8Array } | null = null;
  const part = (fields: Parameters<typeof create<typeof PresenceReportSchema>>[1]) =>
    toBinary(PresenceReportSchema, create(PresenceReportSchema, fields));
  const sharedMeta = new Map<string, Uint8Array>();
  /**
   * The metadata field and the partition after it (fields 12 and 13, the last two: the
   * partition is the same for every client of this encoder, and left out at 0), shared with
   * every client whose metadata has the same JSON text. JSON writes -0 as 0, and Infinity and
   * NaN as null (a registration's `1e400` parses to Infinity), protobuf does not: metadata
   * holding one of them is not shared.
   */
  const metaPart = (metadata: ClientReport["metadata"]): Uint8Array => {
    let unlike = false;
    const text = JSON.stringify(metadata, (_key, value: unknown) => {
      if (typeof value === "number" && (!Number.isFinite(value) || Object.is(value, -0))) unlike = true;
      return value;
    });
    if (unlike || typeof text !== "string" || text.length > SHARED_META_MAX_CHARS) return part({ metadata, partition });
    let bytes = sharedMeta.get(text);
    if (bytes === undefined) {
      bytes = part({ metadata, partition });
      if (sharedMeta.size < SHARED_META_MAX) sharedMeta.set(text, bytes);
    }
    return bytes;
  };
  const clients = new ClientParts<Uint8Array>((body) => ({
    // A string field needs no reflection: written directly, as the generated encoder writes it ("" is left out).
    subject: body.clientSubject === "" ? NOTHING : partWriter.uint32(TAG.clientSubject).string(body.clientSubject).finish(),
    meta: metaPart(body.metadata),
  }));
  /** Writes one report's fields, in field-number order, to the writer. */
  const write = (body: ClientReport, epoch: number, seq: number, ts: number, key: number): void => {
    if (epochPart?.epoch !== epoch) {
      // Fields 2, 3 and 4: the same for every client of this leadership.
      epochPart = { epoch, bytes: part({ clusterId, coordinatorId, epoch: BigInt(epoch) }) };
    }
    const client = clients.of(body, key);
    const w = writer;
    if ((body.type as string) !== "") w.raw(typeField(body.type));
    w.raw(epochPart.bytes);
    varint64(w, TAG.seq, seq, false);
    varint64(w, TAG.ts, ts, true);
    w.raw(client.subject);
    if ((body.state as string) !== "") w.raw(stateField(body.state));
    varint64(w, TAG.lastSeenMs, body.lastSeenMs, true);
    if (!Object.is(body.rttMs, 0)) w.uint32(TAG.rttMs).double(body.rttMs);
    if (body.missedPings !== 0) w.uint32(TAG.missedPings).uint32(body.missedPings);
    w.raw(client.meta);
  };
  const encodeAll = (bodies: readonly ClientReport[], epoch: number, firstSeq: number, ts: number, keys?: ReportKeys): Uint8Array[] => {
    try {
      for (let i = 0; i < bodies.length; i++) {
        writer.fork();
        write(bodies[i]!, epoch, firstSeq + i, ts, keys?.[i] ?? -1);
        writer.join();
      }
    } catch (err) {
      writer.finish(); // a value it cannot write (as encodeReport cannot): the next batch starts clean
      throw err;
    }
    const reader = new BinaryReader(writer.finish());
    const out = new Array<Uint8Array>(bodies.length);
    for (let i = 0; i < bodies.length; i++) out[i] = reader.bytes();
    return out;
  };
  return {
    encoding: "protobuf",
    get cachedClients() {
      return clients.size;
    },
    forget: (subject) => clients.forget(subject),
    clear: () => {
      clients.clear();
      sharedMeta.clear();
    },
    encode: (body, epoch, seq, ts) => encodeAll([body], epoch, seq, ts)[0]!,
    encodeAll,
  };
}

/** A number as JSON.stringify writes it. */
const jsonNumber = (n: number): string => (Number.isFinite(n) ? `${n}` : "null");

function jsonEncoder(clusterId: string, coordinatorId: string, partition: number): ReportEncoder {
  const clients = new ClientParts<string>((body) => ({
    subject: `,"clientSubject":${JSON.stringify(body.clientSubject)},"state":`,
    // JSON.stringify leaves out a key whose value is undefined.
    meta: body.metadata === undefined ? "" : `,"metadata":${JSON.stringify(body.metadata)}`,
  }));
  const text = new TextEncoder();
  const head = `,"clusterId":${JSON.stringify(clusterId)},"coordinatorId":${JSON.stringify(coordinatorId)},"epoch":`;
  let epochPart: { epoch: number; text: string } | null = null;
  /** What closes every report: the partition is the last key, left out at 0 (as `encodeReport` writes it). */
  const close = partition === 0 ? "}" : `,"partition":${partition}}`;
  /** `{"type":"NodeState"` for each report type. */
  const opening = new Map<string, string>(REPORT_TYPES.map((t) => [t, `{"type":${JSON.stringify(t)}`]));
  /** One report's text. */
  const report = (body: ClientReport, epoch: number, seq: number, ts: number, key: number): string => {
    if (epochPart?.epoch !== epoch) epochPart = { epoch, text: `${head}${jsonNumber(epoch)},"seq":` };
    const client = clients.of(body, key);
    const open = opening.get(body.type) ?? `{"type":${JSON.stringify(body.type)}`;
    return `${open}${client.subject}${JSON.stringify(body.state)},"lastSeenMs":${jsonNumber(body.lastSeenMs)},"rttMs":${jsonNumber(body.rttMs)},"missedPings":${jsonNumber(body.missedPings)}${client.meta}${epochPart.text}${jsonNumber(seq)},"ts":${jsonNumber(ts)}${close}`;
  };
  return {
    encoding: "json",
    get cachedClients() {
      return clients.size;
    },
    forget: (subject) => clients.forget(subject),
    clear: () => clients.clear(),
    encode: (body, epoch, seq, ts) => text.encode(report(body, epoch, seq, ts, -1)),
    encodeAll(bodies, epoch, firstSeq, ts, keys) {
      const texts = new Array<string>(bodies.length);
      let most = 0;
      for (let i = 0; i < bodies.length; i++) {
        texts[i] = report(bodies[i]!, epoch, firstSeq + i, ts, keys?.[i] ?? -1);
        most += texts[i]!.length * 3; // UTF-8 takes at most 3 bytes per UTF-16 code unit
      }
      const buffer = new Uint8Array(most);
      const out = new Array<Uint8Array>(bodies.length);
      let at = 0;
      for (let i = 0; i < texts.length; i++) {
        const { written } = text.encodeInto(texts[i]!, buffer.subarray(at));
        out[i] = buffer.subarray(at, at + written);
        at += written;
      }
      return out;
    },
  };
}

/**
 * The report encoder of one coordinator (`clusterId`, `coordinatorId`) for `encoding`, for the
 * clients of one `partition` (0, the default, while the cluster runs one partition; a whole
 * number below MAX_PARTITIONS, else a RangeError).
 */
export function createReportEncoder(encoding: ReportEncoding, clusterId: string, coordinatorId: string, partition = 0): ReportEncoder {
  if (!isPartition(partition)) {
    throw new RangeError(`report encoder: partition must be a whole number from 0 to ${MAX_PARTITIONS - 1}; got ${partition}`);
  }
  return encoding === "json" ? jsonEncoder(clusterId, coordinatorId, partition) : protobufEncoder(clusterId, coordinatorId, partition);
}
