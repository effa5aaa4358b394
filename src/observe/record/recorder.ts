/**
 * Recording a coordinator's run (`run --record <file>`): a JSON-lines log of everything that
 * entered the actor system and everything that went out, so that `replay` can feed the
 * same inputs through the same machines and get the very same commands and reports.
 *
 * The log (format 2), one JSON object per line:
 *
 *   {"kind":"header","format":2,"version":"0.2.0","config":{...},"seed":42,"coordinatorId":"c1","startedAt":"2026-..."}
 *   {"kind":"start","t":3.125}                                  the election actor was started
 *   {"kind":"event","t":12.345,"target":"election","event":{"type":"HEARTBEAT",...}}
 *   {"kind":"event","t":20.5,"target":"monitor","event":{"type":"SWEEP","replies":[...],...}}
 *   {"kind":"timer","t":2003.9,"n":4,"ms":2000}                  the 4th timer the machines set fired
 *   {"kind":"command","t":2003.9,"command":{"type":"report.publish",...}}
 *   {"kind":"info","t":2500.1,"what":"ping-failed","subject":"svc.a","error":"TIMEOUT"}
 *   {"kind":"stop","t":9000.2}                                  the election actor was stopped
 *
 * `t` is milliseconds on the monotonic clock (performance.now) since the recording started,
 * with sub-millisecond precision. `event` entries are the only inputs of the machines;
 * `info` entries (ping failures, connection changes) are what the edge saw but did not turn
 * into events, kept for whoever investigates an incident.
 *
 * Format 2 (sweeps): ping replies are in the monitor's SWEEP events, one per sweep interval,
 * in answer to its replies.collect command. Format 1 had one PONG event per reply, which the
 * sweeping machines cannot replay; replay refuses it and names the version that wrote it.
 *
 * Why timers are recorded: XState's real clock fires `after` timers a little late
 * (setTimeout jitter), so an incoming event and a timer due at the same moment can run in
 * one order live and in the other on a clock that fires timers exactly when due. The
 * recording clock therefore numbers every `setTimeout` call the actor system makes, in
 * order, and logs each firing; replay fires timer n exactly where the log says (see
 * src/observe/record/replay.ts). Machines are deterministic, so the n-th timer set in replay is
 * the n-th timer set live.
 */
import { open, type FileHandle } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import type { CoordinatorConfig } from "../../config/config.js";
import { redactNatsUrl } from "../../nats/url.js";
import type { Command } from "../../machines/commands.js";
import type { ElectionEvent } from "../../machines/election.js";
import type { MonitorEvent } from "../../machines/monitor.js";
import { describeError } from "../logger.js";

/** The log format this build writes and the newest it reads. */
export const RECORD_FORMAT = 2;

export interface RecordHeader {
  kind: "header";
  format: number;
  /** Version of presence-coordinator that wrote the log. */
  version: string;
  config: CoordinatorConfig;
  /** Seed of the random source (also in config.seed; here so that nobody has to look for it). */
  seed: number;
  coordinatorId: string;
  /** Wall-clock start of the recording (ISO 8601); `t` counts from here. */
  startedAt: string;
}

/**
 * An entry of the log. When the coordinator runs several partitions (`config.partitions` > 1),
 * every entry of a partition's actors names it (`"partition":p`): each partition's election,
 * monitor and clock form an actor system of their own, recorded and replayed as such, with
 * timers numbered per partition. Only the coordinator's own `info` entries name none.
 */
export type RecordEntry = RecordEntryBody & { partition?: number };

type RecordEntryBody =
  /** The election actor was started. */
  | { kind: "start"; t: number }
  /** An event delivered to the election actor. */
  | { kind: "event"; t: number; target: "election"; event: ElectionEvent }
  /** An event delivered to the monitor (it is only recorded when a monitor ran to take it). */
  | { kind: "event"; t: number; target: "monitor"; event: MonitorEvent }
  /** The n-th timer set by the actor system (counting from 1) fired; `ms` is the delay it was set with. */
  | { kind: "timer"; t: number; n: number; ms: number }
  /** A command a machine sent to the outbox (reports are the report.publish and report.presence commands). */
  | { kind: "command"; t: number; command: Command }
  /** Something the edge saw that is not an event of the machines. */
  | { kind: "info"; t: number; what: "ping-failed"; subject: string; error: string }
  | { kind: "info"; t: number; what: "connection"; status: string; server?: string }
  /** The election actor was stopped (after resigning, or at once). */
  | { kind: "stop"; t: number };

type WithoutTime<T> = T extends unknown ? Omit<T, "t"> & { partition?: number } : never;
/** An entry as the recording side hands it over; the recorder stamps the time. */
export type RecordInput = WithoutTime<RecordEntryBody>;

/** Where the driver, the edge and the recording clock report what happened. */
export interface Recorder {
  record(entry: RecordInput): void;
}

/**
 * The recorder of one partition's election and edge, when the cluster runs several: each
 * entry says its partition (`"partition":p`), since every partition's actors run, and are
 * replayed, as a system of their own.
 */
export function partitionRecorder(recorder: Recorder, partition: number): Recorder {
  return { record: (entry) => recorder.record({ ...entry, partition }) };
}

/** XState's clock interface (`ActorOptions["clock"]`). */
export interface MachineClock {
  setTimeout(fn: () => void, timeout: number): unknown;
  clearTimeout(id: unknown): void;
}

/** XState's default clock: the runtime's timers. */
export const realClock: MachineClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
};

/**
 * Wraps the actor system's clock: numbers each setTimeout call (1, 2, ...) and records
 * `{kind:"timer", n, ms}` right before the timer's callback runs, so that everything the
 * callback causes is logged after it.
 */
export function recordingClock(inner: MachineClock, recorder: Recorder): MachineClock {
  let count = 0;
  const live = new Map<number, unknown>();
  return {
    setTimeout(fn, ms) {
      const n = ++count;
      live.set(
        n,
        inner.setTimeout(() => {
          live.delete(n);
          recorder.record({ kind: "timer", n, ms });
          fn();
        }, ms),
      );
      return n;
    },
    clearTimeout(id) {
      const n = id as number;
      if (!live.has(n)) return;
      inner.clearTimeout(live.get(n));
      live.delete(n);
    },
  };
}

/** The record log could not be opened or its header not written: the coordinator does not start. */
export class RecordOpenError extends Error {
  override readonly name = "RecordOpenError";
}

/** Where the log's bytes go: a file, or a fake in tests. */
export interface LineSink {
  /** Writes all of `data` (resolves once it is written). */
  write(data: string): Promise<void>;
  close(): Promise<void>;
}

export interface RecordWriterOptions {
  /** Called once, on the first write error; recording stops after it (monitoring goes on). */
  onError: (err: unknown) => void;
  /** Buffered lines are written at least this often (default 100 ms). */
  flushIntervalMs?: number;
  /** A write starts at once when this many characters are buffered (default 64 KiB). */
  flushAtChars?: number;
  /**
   * When the disk falls this far behind (characters waiting, default 32 MiB), recording
   * stops as on a write error, rather than the log eating the coordinator's memory.
   */
  maxBufferedChars?: number;
}

/**
 * Buffers log lines and writes them in batches, one write in flight at a time, so that
 * recording never blocks the event loop on the disk. Each batch is whole lines written by
 * one call, so a process killed mid-run leaves a log that ends on a line boundary. On the first write
 * error (a full disk) it reports once, drops what it holds and records nothing more.
 */
export class RecordWriter {
  private buffer: string[] = [];
  private bufferedChars = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private writing = false;
  private failed = false;
  private closed = false;
  private flushSoon = false;
  private readonly timer: NodeJS.Timeout;
  private readonly flushAtChars: number;
  private readonly maxBufferedChars: number;

  constructor(
    private readonly sink: LineSink,
    private readonly options: RecordWriterOptions,
  ) {
    this.flushAtChars = options.flushAtChars ?? 64 * 1024;
    this.maxBufferedChars = options.maxBufferedChars ?? 32 * 1024 * 1024;
    this.timer = setInterval(() => this.flush(), options.flushIntervalMs ?? 100);
    this.timer.unref();
  }

  /** False once a write failed or the writer was closed. */
  get active(): boolean {
    return !this.failed && !this.closed;
  }

  writeLine(line: string): void {
    if (!this.active) return;
    this.buffer.push(line);
    this.bufferedChars += line.length + 1;
    if (this.bufferedChars > this.maxBufferedChars) {
      this.fail(new Error(`the disk is too slow: ${this.bufferedChars} characters of the log are waiting to be written`));
      return;
    }
    // Not right away: a batch never splits the work of one task (an event and the commands
    // it caused), so that a process killed between two writes leaves a log that replays.
    if (this.bufferedChars >= this.flushAtChars && !this.flushSoon) {
      this.flushSoon = true;
      setImmediate(() => {
        this.flushSoon = false;
        this.flush();
      });
    }
  }

  /** Starts writing what is buffered, unless a write is in flight (it picks the rest up). */
  private flush(): void {
    if (this.writing || this.failed || this.buffer.length === 0) return;
    const data = `${this.buffer.join("\n")}\n`;
    this.buffer = [];
    this.bufferedChars = 0;
    this.writing = true;
    this.inFlight = this.sink.write(data).then(
      () => {
        this.writing = false;
        if (this.bufferedChars >= this.flushAtChars || this.closed) this.flush();
      },
      (err: unknown) => {
        this.writing = false;
        this.fail(err);
      },
    );
  }

  private fail(err: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.buffer = [];
    this.bufferedChars = 0;
    this.options.onError(err);
  }

  /** Writes everything buffered, then closes the sink. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    // Wait for the write in flight; it starts the next batch itself when closed is set.
    while (this.writing || (!this.failed && this.buffer.length > 0)) {
      if (!this.writing) this.flush();
      await this.inFlight;
    }
    try {
      await this.sink.close();
    } catch (err) {
      this.fail(err);
    }
  }
}

function fileSink(handle: FileHandle): LineSink {
  return {
    write: (data) => handle.appendFile(data, "utf8"),
    close: () => handle.close(),
  };
}

/** A Recorder that writes the log through a RecordWriter, stamping each entry with `t`. */
export class LogRecorder implements Recorder {
  private readonly t0: number;

  constructor(
    private readonly writer: RecordWriter,
    /** Monotonic ms (default performance.now); `t` is measured from its value now. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.t0 = now();
  }

  record(entry: RecordInput): void {
    if (!this.writer.active) return;
    const t = Math.round((this.now() - this.t0) * 1000) / 1000;
    // `t` first, after `kind`, so that the log reads well.
    const { kind, ...rest } = entry;
    this.writer.writeLine(JSON.stringify({ kind, t, ...rest }));
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}

export interface OpenRecordOptions {
  path: string;
  version: string;
  config: CoordinatorConfig;
  /** Told once about a write error after the start; recording stops, the coordinator goes on. */
  onError: (message: string, err: unknown) => void;
  flushIntervalMs?: number;
}

/**
 * Opens (truncates) the log file and writes its header before the coordinator connects, so
 * that an unwritable path or a full disk stops the start with a message naming the file.
 */
export async function openRecordLog(options: OpenRecordOptions): Promise<LogRecorder> {
  const { path, config } = options;
  let handle: FileHandle;
  try {
    handle = await open(path, "w");
  } catch (err) {
    throw new RecordOpenError(`cannot open the record log ${path}: ${describeError(err)}`, { cause: err });
  }
  const header: RecordHeader = {
    kind: "header",
    format: RECORD_FORMAT,
    version: options.version,
    // The URLs as shown, whatever the caller passed: a record log holds no credentials.
    config: { ...config, natsUrls: config.natsUrls.map(redactNatsUrl) },
    seed: config.seed,
    coordinatorId: config.coordinatorId,
    startedAt: new Date().toISOString(),
  };
  try {
    await handle.appendFile(`${JSON.stringify(header)}\n`, "utf8");
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw new RecordOpenError(`cannot write the record log ${path}: ${describeError(err)}`, { cause: err });
  }
  const writer = new RecordWriter(fileSink(handle), {
    onError: (err) => options.onError(`recording stopped: cannot write the record log ${path}`, err),
    ...(options.flushIntervalMs !== undefined ? { flushIntervalMs: options.flushIntervalMs } : {}),
  });
  return new LogRecorder(writer);
}
