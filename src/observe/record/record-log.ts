/**
 * Record logs (`run --record`) read back: the header and entries of a JSON-lines file,
 * validated line by line, with errors that name the file and the line.
 */
import { readFile } from "node:fs/promises";
import { MAX_PARTITIONS } from "../../protocol/partition.js";
import { describeError } from "../logger.js";
import { RECORD_FORMAT, type RecordEntry, type RecordHeader } from "./recorder.js";

/** A record log that cannot be read: the message names the file and the line. */
export class RecordLogError extends Error {
  override readonly name = "RecordLogError";
  constructor(
    readonly file: string,
    /** 1-based line number (0: the file as a whole). */
    readonly line: number,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(line > 0 ? `${file}, line ${line}: ${problem}` : `${file}: ${problem}`, options);
  }
}

export interface RecordLogLine {
  /** 1-based line number in the file. */
  line: number;
  entry: RecordEntry;
}

export interface RecordLog {
  file: string;
  header: RecordHeader;
  entries: RecordLogLine[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

const CONFIG_NUMBERS = [
  "heartbeatIntervalMs",
  "leaderTimeoutMs",
  "electionBackoffMinMs",
  "electionBackoffMaxMs",
  "renewDeadlineMs",
  "pingIntervalMs",
  "deadTimeoutMs",
  "stateIntervalMs",
  "sweepIntervalMs",
  "shardCount",
] as const;

function checkHeader(value: unknown, fail: (problem: string) => never): RecordHeader {
  if (!isObject(value) || value.kind !== "header") fail('not a record log header (the first line must have "kind":"header")');
  const format = value.format;
  if (!Number.isInteger(format) || (format as number) < 1)
    fail(`the header's format must be a whole number from 1, not ${JSON.stringify(format)}`);
  if ((format as number) < RECORD_FORMAT) {
    fail(
      `the log has format ${String(format)}, which recorded one event per ping reply; this presence-coordinator sweeps (format ${RECORD_FORMAT}) ` +
        `and cannot replay it exactly: replay it with the presence-coordinator that wrote it` +
        `${typeof value.version === "string" ? ` (version ${value.version}, a build that writes record format ${String(format)})` : ""}`,
    );
  }
  if ((format as number) > RECORD_FORMAT) {
    fail(
      `the log has format ${String(format)}, newer than this presence-coordinator reads (format ${RECORD_FORMAT}); ` +
        `replay it with presence-coordinator ${typeof value.version === "string" ? value.version : "of the version that wrote it"} or later`,
    );
  }
  if (typeof value.version !== "string") fail("the header has no version");
  if (typeof value.coordinatorId !== "string") fail("the header has no coordinatorId");
  if (!isNumber(value.seed)) fail("the header has no numeric seed");
  if (typeof value.startedAt !== "string") fail("the header has no startedAt");
  const config = value.config;
  if (!isObject(config)) fail("the header has no config");
  for (const key of CONFIG_NUMBERS) if (!isNumber(config[key])) fail(`the header's config has no numeric ${key}`);
  const partitions = config.partitions;
  if (
    partitions !== undefined &&
    (!Number.isInteger(partitions) || (partitions as number) < 1 || (partitions as number) > MAX_PARTITIONS)
  ) {
    fail(`the header's config.partitions must be a whole number from 1 to ${MAX_PARTITIONS}, not ${JSON.stringify(partitions)}`);
  }
  return value as unknown as RecordHeader;
}

/**
 * Which partition an entry belongs to: with several partitions every entry of the machines
 * names one below the header's count (a coordinator's own `info` may name none); with one,
 * none does.
 */
function checkPartition(value: Record<string, unknown>, partitions: number, fail: (problem: string) => never): void {
  const p = value.partition;
  if (p === undefined) {
    if (partitions > 1 && value.kind !== "info") {
      fail(`${String(value.kind)} entry without a partition: the header says the coordinator ran ${partitions} partitions`);
    }
    return;
  }
  if (partitions === 1) fail(`entry of partition ${JSON.stringify(p)}, but the header's config has one partition`);
  if (!Number.isInteger(p) || (p as number) < 0 || (p as number) >= partitions) {
    fail(
      `entry with partition ${JSON.stringify(p)}: must be a whole number from 0 to ${partitions - 1} (the header's config.partitions is ${partitions})`,
    );
  }
}

function checkEntry(value: unknown, partitions: number, fail: (problem: string) => never): RecordEntry {
  if (!isObject(value)) fail("not a JSON object");
  if (!isNumber(value.t) || value.t < 0) fail(`entry without a valid time "t" (kind ${JSON.stringify(value.kind)})`);
  const hasType = (v: unknown) => isObject(v) && typeof v.type === "string";
  switch (value.kind) {
    case "start":
    case "stop":
      break;
    case "event":
      if (value.target !== "election" && value.target !== "monitor") fail(`event with unknown target ${JSON.stringify(value.target)}`);
      if (!hasType(value.event)) fail("event entry without an event type");
      break;
    case "timer":
      if (!Number.isInteger(value.n) || (value.n as number) < 1) fail("timer entry without a timer number n");
      if (!isNumber(value.ms) || value.ms < 0) fail("timer entry without its delay ms");
      break;
    case "command":
      if (!hasType(value.command)) fail("command entry without a command type");
      break;
    case "info":
      if (typeof value.what !== "string") fail('info entry without "what"');
      break;
    case "header":
      fail("a second header");
      break;
    default:
      fail(`unknown entry kind ${JSON.stringify(value.kind)}`);
  }
  checkPartition(value, partitions, fail);
  return value as unknown as RecordEntry;
}

/** Parses and validates a record log; every problem is a RecordLogError naming the line. */
export function parseRecordLog(text: string, file: string): RecordLog {
  const complete = text.endsWith("\n");
  const lines = text.split("\n");
  if (complete) lines.pop();
  if (lines.length === 0 || (lines.length === 1 && lines[0] === "")) {
    throw new RecordLogError(file, 1, "the log is empty: no header");
  }
  let header: RecordHeader | undefined;
  const entries: RecordLogLine[] = [];
  let lastT = 0;
  lines.forEach((raw, i) => {
    const line = i + 1;
    const fail = (problem: string): never => {
      throw new RecordLogError(file, line, problem);
    };
    if (raw.trim() === "") fail("empty line");
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      if (i === lines.length - 1 && !complete) {
        fail("truncated: the log ends in the middle of this line (was the recording process killed while writing, or the disk full?)");
      }
      fail(`not JSON (${describeError(err)})`);
    }
    if (i === 0) {
      header = checkHeader(value, fail);
      return;
    }
    const entry = checkEntry(value, header!.config.partitions ?? 1, fail);
    if (entry.t < lastT) fail(`time goes backwards (t=${entry.t} after t=${lastT})`);
    lastT = entry.t;
    entries.push({ line, entry });
  });
  return { file, header: header!, entries };
}

/** Reads and validates a record log file. */
export async function readRecordLog(file: string): Promise<RecordLog> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new RecordLogError(file, 0, `cannot read the record log: ${describeError(err)}`, { cause: err });
  }
  return parseRecordLog(text, file);
}
