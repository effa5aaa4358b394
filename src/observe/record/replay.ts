/**
 * Replaying a record log (`presence-coordinator replay <file>`): the recorded inputs go
 * through the same election machine (with its monitor, shards and client actors), built
 * from the header's config and seed exactly as the driver builds it, on a simulated clock
 * set to each entry's recorded time. What comes out (commands and reports) can be printed,
 * or compared one for one with what the live run recorded (`--check`).
 *
 * Timers. The live run's clock numbered every timer the actor system set and logged each
 * firing (see src/observe/record/recorder.ts). The ReplayClock numbers the timers set in replay
 * the same way and fires none by itself: timer n fires only when the log says it fired,
 * at the recorded time, in the recorded order relative to the events. Machines are
 * deterministic, so the n-th timer set in replay is the n-th timer set live; a timer the
 * log fires that replay never set, already fired or cancelled, or set with another delay,
 * is a divergence, reported with the line of the log.
 */
import { readFile } from "node:fs/promises";
import { createActor, fromCallback, SimulatedClock, type Actor, type AnyActorRef, type SnapshotFrom } from "xstate";
import type { Command } from "../../machines/commands.js";
import type { ShardMachine } from "../../machines/shard.js";
import { electionMachine } from "../../machines/election.js";
import type { ClientReport } from "../../protocol/presence.js";
import { electionInputFor } from "../../election/election-driver.js";
import { describeError } from "../logger.js";
import { indexScheduler } from "../../machines/scheduler-index.js";
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
  return value as unknown as RecordHeader;
}

function checkEntry(value: unknown, fail: (problem: string) => never): RecordEntry {
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
    const entry = checkEntry(value, fail);
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

/**
 * A SimulatedClock that never fires a timer by itself: `fire(n)` runs the n-th timer set,
 * where the log says it fired. Time moves with `set()`, as on any SimulatedClock (nothing
 * is flushed, since no timer is kept in SimulatedClock's own table).
 */
export class ReplayClock extends SimulatedClock {
  private count = 0;
  private readonly pending = new Map<number, { fn: () => void; ms: number; setAt: number }>();
  private readonly done = new Map<number, "fired" | "cancelled">();

  override setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    const n = ++this.count;
    this.pending.set(n, { fn: fn as () => void, ms: timeout, setAt: this.now() });
    return n;
  }

  override clearTimeout(id: number): void {
    if (this.pending.delete(id)) this.done.set(id, "cancelled");
  }

  /** Runs timer n (recorded with delay `ms`); returns what is wrong instead, if replay disagrees. */
  fire(n: number, ms: number): string | null {
    const timer = this.pending.get(n);
    if (timer === undefined) {
      const fate = this.done.get(n);
      if (fate !== undefined) return `the log fires timer ${n}, which replay had already ${fate}`;
      return `the log fires timer ${n}, but replay has set only ${this.count} timers`;
    }
    if (timer.ms !== ms) return `the log fires timer ${n} set for ${ms} ms, but replay set it for ${timer.ms} ms`;
    this.pending.delete(n);
    this.done.set(n, "fired");
    timer.fn();
    return null;
  }

  /** Timers set and not yet fired or cancelled. */
  pendingTimers(): { n: number; ms: number; dueAt: number }[] {
    return [...this.pending].map(([n, t]) => ({ n, ms: t.ms, dueAt: t.setAt + t.ms }));
  }
}

/** A command the machines sent, at its (simulated or recorded) time. */
export interface TimedCommand {
  t: number;
  command: Command;
}

export interface Divergence {
  /** Line of the log where replay and log disagree (the last line + 1 at the end of the log). */
  line: number;
  /** 1-based index of that entry among the log's entries (the header not counted). */
  index: number;
  t: number;
  problem: string;
  /** The recorded command (null: the log has none there). */
  expected: Command | null;
  /** The command replay produced (null: replay produced none there). */
  actual: Command | null;
}

export interface ActorState {
  /** Path in the actor tree: election, monitor, shard-17, shard-17/svc.a. */
  id: string;
  kind: "election" | "monitor" | "shard" | "client";
  value: unknown;
  /** A short summary of the actor's context (epoch, client count, client state). */
  detail: Record<string, unknown>;
}

export interface ReplayResult {
  /** Every command replay produced, in order. */
  produced: TimedCommand[];
  /** Every command the log holds (up to `until`), in order. */
  recorded: TimedCommand[];
  /** The first disagreement; null when replay matched the log (or was not checked). */
  divergence: Divergence | null;
  /** Entries fed (up to `until`). */
  entries: number;
  /** Where replay stopped, and every actor's state there, when `until` was given. */
  until?: { t: number; actors: ActorState[] };
}

export interface ReplayOptions {
  /** Compare each produced command with the recorded one and stop at the first difference. */
  check?: boolean;
  /** Stop at this time (ms, on the log's clock) and describe every actor there. */
  until?: number;
}

/** Reports are these commands. */
export const isReport = (c: Command): boolean => c.type === "report.publish" || c.type === "report.presence" || c.type === "reports.state";

/** JSON-normalised, so that a produced command compares with one read back from the log. */
const normal = (c: Command): string => JSON.stringify(c);

/** Feeds a record log through the machines; see the file comment. */
export function replayLog(log: RecordLog, options: ReplayOptions = {}): ReplayResult {
  const check = options.check === true;
  const clock = new ReplayClock();
  const produced: TimedCommand[] = [];
  const recorded: TimedCommand[] = [];
  const machine = electionMachine.provide({
    actors: {
      outbox: fromCallback<Command>(({ receive }) => receive((command) => produced.push({ t: clock.now(), command }))),
    },
  });
  const actor = createActor(machine, { clock, input: electionInputFor(log.header.config) });
  indexScheduler(actor.system); // as the driver does: the same timers, a cheaper stop
  let divergence: Divergence | null = null;
  let matched = 0;
  let fed = 0;
  const diverge = (at: RecordLogLine | null, index: number, problem: string, expected: Command | null, actual: Command | null) => {
    divergence = {
      line: at?.line ?? (log.entries.at(-1)?.line ?? 1) + 1,
      index,
      t: at?.entry.t ?? clock.now(),
      problem,
      expected,
      actual,
    };
  };
  /** Before the next input: replay may not have produced more than the log recorded. */
  const noExtraCommands = (at: RecordLogLine | null, index: number): boolean => {
    if (!check || produced.length <= matched) return true;
    diverge(at, index, "replay produced a command the log does not have here", null, produced[matched]!.command);
    return false;
  };

  /** The log's next command after entry i, normalised (undefined: none). */
  const nextRecorded = (i: number): string | undefined => {
    const next = log.entries.slice(i + 1).find((e) => e.entry.kind === "command")?.entry;
    return next?.kind === "command" ? normal(next.command) : undefined;
  };

  for (const [i, at] of log.entries.entries()) {
    const { entry } = at;
    const index = i + 1;
    if (options.until !== undefined && entry.t > options.until) break;
    fed = index;
    if (entry.kind === "command") {
      recorded.push({ t: entry.t, command: entry.command });
      if (!check) continue;
      const actual = produced[matched];
      if (actual === undefined || normal(actual.command) !== normal(entry.command)) {
        // Replay's command is the log's next one: this line is one too many, not a changed command.
        const extra = actual === undefined || normal(actual.command) === nextRecorded(i);
        diverge(
          at,
          index,
          extra ? "the log has a command replay did not produce" : "the commands differ",
          entry.command,
          extra ? null : actual.command,
        );
        break;
      }
      matched += 1;
      continue;
    }
    if (entry.kind === "info") continue;
    if (!noExtraCommands(at, index)) break;
    clock.set(entry.t);
    let problem: string | null = null;
    switch (entry.kind) {
      case "start":
        actor.start();
        break;
      case "stop":
        actor.stop();
        break;
      case "event":
        if (entry.target === "election") {
          if (actor.getSnapshot().status !== "active")
            problem = `the log delivers ${entry.event.type} to the election actor, which is not running in replay`;
          else actor.send(entry.event);
        } else {
          const monitor = actor.system.get("monitor");
          if (monitor === undefined) problem = `the log delivers ${entry.event.type} to the monitor, which is not running in replay`;
          else monitor.send(entry.event);
        }
        break;
      case "timer":
        problem = clock.fire(entry.n, entry.ms);
        break;
    }
    if (problem !== null) {
      diverge(at, index, problem, null, null);
      break;
    }
  }
  if (divergence === null) noExtraCommands(null, fed + 1);

  const result: ReplayResult = { produced, recorded, divergence, entries: fed };
  if (options.until !== undefined) {
    if (options.until > clock.now()) clock.set(options.until);
    result.until = { t: clock.now(), actors: describeActors(actor) };
  }
  actor.stop();
  return result;
}

type ShardSnapshot = SnapshotFrom<ShardMachine>;
type AnySnapshot = { value: unknown; status: string; context: Record<string, unknown>; children: Record<string, AnyActorRef | undefined> };

/** Every actor of the system: the election, its monitor, each shard with clients, each client. */
export function describeActors(actor: Actor<typeof electionMachine>): ActorState[] {
  const snap = actor.getSnapshot();
  const c = snap.context;
  const out: ActorState[] = [
    {
      id: "election",
      kind: "election",
      value: snap.status === "active" ? snap.value : snap.status,
      detail: { epoch: c.epoch, highestEpoch: c.highestEpoch, leader: c.leader?.coordinatorId ?? null },
    },
  ];
  const monitor = actor.system.get("monitor");
  if (monitor === undefined) return out;
  const m = monitor.getSnapshot() as AnySnapshot;
  const shards = Object.entries(m.children).flatMap(([id, ref]) => (ref ? [[id, ref.getSnapshot() as ShardSnapshot] as const] : []));
  const clientCount = shards.reduce((n, [, s]) => n + s.context.clients.size, 0);
  out.push({ id: "monitor", kind: "monitor", value: m.value, detail: { shards: shards.length, clients: clientCount } });
  for (const [id, shard] of shards) {
    // A shard keeps its client actors in its own map (src/machines/shard.ts), and their
    // latest replies in its liveness table.
    const { clients, liveness } = shard.context;
    if (clients.size === 0) continue;
    out.push({ id, kind: "shard", value: shard.value, detail: { clients: clients.size } });
    for (const [cid, ref] of clients) {
      const client = ref.getSnapshot();
      const l = liveness.get(cid) ?? client.context;
      out.push({
        id: `${id}/${cid}`,
        kind: "client",
        value: client.status === "active" ? client.value : client.status,
        detail: { state: client.context.state, missedPings: l.missedPings, lastSeenMs: l.lastSeenMs, rttMs: l.rttMs },
      });
    }
  }
  const empty = shards.length - out.filter((a) => a.kind === "shard").length;
  if (empty > 0) out.push({ id: "(shards without clients)", kind: "shard", value: null, detail: { count: empty } });
  return out;
}

function fields(o: Record<string, unknown>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(" ");
}

function presenceLine(command: string, { type, clientSubject, metadata, ...rest }: ClientReport): string {
  const meta = Object.keys(metadata).length > 0 ? ` ${JSON.stringify(metadata)}` : "";
  return `${command} ${type} ${clientSubject} ${fields(rest)}${meta}`;
}

/**
 * One line per command: `  1234.567 ms  report.presence NodeDead demo.client-3 state=dead ...`;
 * a batch of NodeState reports is one line per report, the time on the first.
 */
export function formatCommand({ t, command }: TimedCommand): string {
  const time = `${t.toFixed(3).padStart(11)} ms`;
  switch (command.type) {
    case "report.presence":
      return `${time}  ${presenceLine("report.presence", command.report)}`;
    case "report.publish": {
      const { type, ...rest } = command.report;
      return `${time}  report.publish ${type} ${fields(rest)}`;
    }
    case "clients.ping":
      return `${time}  clients.ping ${command.subjects.join(" ")}`;
    case "reports.state":
      return command.reports.map((r, i) => `${i === 0 ? time : " ".repeat(time.length)}  ${presenceLine("reports.state", r)}`).join("\n");
    default: {
      const { type, ...rest } = command;
      const text = fields(rest);
      return `${time}  ${type}${text ? ` ${text}` : ""}`;
    }
  }
}

export function formatDivergence(d: Divergence, file: string): string {
  const show = (c: Command | null) => (c === null ? "(nothing)" : JSON.stringify(c));
  return [
    `replay differs from ${file} at entry ${d.index} (line ${d.line}, t=${d.t.toFixed(3)} ms): ${d.problem}`,
    `  expected: ${show(d.expected)}`,
    `  actual:   ${show(d.actual)}`,
  ].join("\n");
}

export function formatActors(until: NonNullable<ReplayResult["until"]>): string {
  const lines = [`actors at ${until.t.toFixed(3)} ms:`];
  for (const a of until.actors) {
    const depth = a.kind === "election" ? 1 : a.kind === "monitor" ? 2 : a.kind === "shard" ? 3 : 4;
    const name = a.kind === "client" ? a.id.slice(a.id.indexOf("/") + 1) : a.id;
    const value = a.value === null ? "" : ` ${typeof a.value === "string" ? a.value : JSON.stringify(a.value)}`;
    lines.push(`${"  ".repeat(depth)}${name}${value}  ${fields(a.detail)}`);
  }
  return lines.join("\n");
}

export interface RunReplayOptions {
  file: string;
  json: boolean;
  check: boolean;
  until?: number;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** The replay command; resolves to the exit code (0 ok, 1 replay differs from the log). Throws RecordLogError. */
export async function runReplay(options: RunReplayOptions): Promise<number> {
  const log = await readRecordLog(options.file);
  const result = replayLog(log, { check: options.check, ...(options.until !== undefined ? { until: options.until } : {}) });
  const { out } = options;
  if (options.check) {
    if (result.divergence !== null) {
      if (options.json) out.write(`${JSON.stringify({ kind: "divergence", ...result.divergence })}\n`);
      else options.err.write(`${formatDivergence(result.divergence, options.file)}\n`);
      return 1;
    }
    const reports = result.produced.filter((c) => isReport(c.command)).length;
    const summary = {
      kind: "check",
      file: options.file,
      entries: result.entries,
      commands: result.produced.length,
      reports,
      matches: true,
    };
    out.write(
      options.json
        ? `${JSON.stringify(summary)}\n`
        : `${options.file}: ${result.entries} entries replayed; all ${result.produced.length} commands (${reports} reports) match the log\n`,
    );
  } else if (options.json) {
    for (const c of result.produced) out.write(`${JSON.stringify(c)}\n`);
  } else {
    // replies.collect says nothing but "a sweep interval passed" and comes 20 times a second:
    // the text leaves it out and says so first (--json has every command).
    const collects = result.produced.filter((c) => c.command.type === "replies.collect").length;
    if (collects > 0) {
      options.err.write(
        `(${collects} replies.collect commands, one per sweep interval of ${log.header.config.sweepIntervalMs} ms, are not shown; --json shows every command)\n`,
      );
    }
    for (const c of result.produced) if (c.command.type !== "replies.collect") out.write(`${formatCommand(c)}\n`);
  }
  if (result.until) {
    out.write(options.json ? `${JSON.stringify({ kind: "actors", ...result.until })}\n` : `${formatActors(result.until)}\n`);
  }
  if (!options.check && result.divergence !== null) {
    options.err.write(`${formatDivergence(result.divergence, options.file)}\n`);
    return 1;
  }
  return 0;
}
