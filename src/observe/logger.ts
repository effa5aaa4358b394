/**
 * Structured logging through winston. Every line of a coordinator carries its
 * `coordinatorId` and the `epoch` it knows at that moment; components log through child
 * loggers (`{ component: "election" }`).
 */
import { inspect } from "node:util";
import winston from "winston";
import type { LogFormat } from "../config/config.js";
import { redactUrlsIn } from "../nats/url.js";

export type Logger = winston.Logger;

export interface LoggerOptions {
  format: LogFormat;
  verbose: boolean;
  /** Fields added to every line, e.g. `{ coordinatorId }`. */
  fields?: Record<string, string | number>;
  /**
   * Read on every line: the epoch this coordinator knows now; of the line's partition when it
   * has one (with several partitions, each has its own epoch).
   */
  epoch?: (partition?: number) => number;
  /** Lowest level printed when not verbose (default "info"). */
  level?: string;
  /** Where lines go (default: stderr, so stdout stays free for a command's output). */
  stream?: NodeJS.WritableStream;
}

const LEVEL_COLOURS: Record<string, string> = {
  error: "\x1b[31m",
  warn: "\x1b[33m",
  info: "\x1b[36m",
  debug: "\x1b[90m",
};

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s="]/.test(v) ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "object" && v !== null) return inspect(v, { breakLength: Infinity, depth: 3 });
  return String(v);
}

/** One line a record: `time level [coordinator epoch] component: message key=value ...`. */
function prettyFormat(colour: boolean): winston.Logform.Format {
  return winston.format.printf((info) => {
    const { level, message, timestamp, coordinatorId, epoch, component, ...rest } = info;
    const lvl = String(level);
    const tag = colour ? `${LEVEL_COLOURS[lvl] ?? ""}${lvl.padEnd(5)}\x1b[0m` : lvl.padEnd(5);
    const who = coordinatorId !== undefined ? `[${String(coordinatorId)} epoch=${String(epoch ?? 0)}] ` : "";
    const where = component !== undefined ? `${String(component)}: ` : "";
    const extras = Object.entries(rest)
      .filter(([k]) => typeof k === "string" && k !== "splat")
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    return `${String(timestamp)} ${tag} ${who}${where}${String(message)}${extras ? ` ${extras}` : ""}`;
  });
}

/**
 * The password or token of any URL in the message or in a field (a string, or a list of
 * strings) is redacted: a line never shows `nats://user:secret@host`, whoever logged it.
 */
const redactUrls = winston.format((info) => {
  for (const key of Object.keys(info)) {
    const v: unknown = info[key];
    if (typeof v === "string") info[key] = redactUrlsIn(v);
    else if (Array.isArray(v) && v.every((e) => typeof e === "string")) info[key] = v.map((e: string) => redactUrlsIn(e));
  }
  return info;
});

export function createLogger(options: LoggerOptions): Logger {
  const addEpoch = winston.format((info) => {
    if (options.epoch) info.epoch = options.epoch(typeof info.partition === "number" ? info.partition : undefined);
    return info;
  });
  const stream = options.stream ?? process.stderr;
  const colour = options.format === "pretty" && "isTTY" in stream && stream.isTTY === true;
  return winston.createLogger({
    level: options.verbose ? "debug" : (options.level ?? "info"),
    defaultMeta: options.fields ?? {},
    format: winston.format.combine(
      addEpoch(),
      winston.format.errors({ stack: false }),
      redactUrls(),
      winston.format.timestamp(),
      options.format === "json" ? winston.format.json() : prettyFormat(colour),
    ),
    transports: [new winston.transports.Stream({ stream })],
  });
}

/** The message of an error and of its causes, for a log line or a CLI error. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (e instanceof Error) {
      // Client libraries often repeat the cause's text in the wrapper's message.
      if (!parts.some((p) => p.includes(e instanceof Error ? e.message : ""))) {
        const shorter = parts.findIndex((p) => e instanceof Error && e.message.includes(p));
        if (shorter >= 0) parts.splice(shorter, 1, e.message);
        else parts.push(e.message);
      }
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join(": ");
}

/**
 * Warnings that a flood could repeat thousands of times a second (refused registrations,
 * forged input): in each window, the first of each kind is logged in full and the rest
 * only counted; when the window ends, one line sums up what was not logged.
 *
 * The window ends on a timer, or, given a clock (`now`, in ms), at the first warning at
 * least `windowMs` after the window began on that clock (or at `flush`): a component that
 * runs on an injected clock is throttled on the same clock as the rest of its behaviour.
 */
export class WarningThrottle {
  private readonly logged = new Set<string>();
  private readonly unlogged = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  /** When the window began on the given clock; null: no window open (or no clock given). */
  private windowStart: number | null = null;

  constructor(
    private readonly log: Logger,
    /** The summary line's message. */
    private readonly summary: string,
    private readonly windowMs = 10_000,
    /** The level of every line it writes. */
    private readonly level: "warn" | "info" = "warn",
    /** A clock to measure the window on, instead of a timer. */
    private readonly now?: () => number,
  ) {}

  warn(kind: string, message: string, fields: Record<string, unknown>): void {
    if (this.now !== undefined) {
      const now = this.now();
      if (this.windowStart !== null && now - this.windowStart >= this.windowMs) this.flush();
      if (this.windowStart === null) this.windowStart = now;
    } else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.windowMs);
      this.timer.unref();
    }
    if (!this.logged.has(kind)) {
      this.logged.add(kind);
      this.log.log(this.level, message, fields);
      return;
    }
    this.unlogged.set(kind, (this.unlogged.get(kind) ?? 0) + 1);
  }

  /** Ends the window now: logs the summary of what was only counted, if anything was. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.windowStart = null;
    this.logged.clear();
    if (this.unlogged.size === 0) return;
    const counts = Object.fromEntries(this.unlogged);
    const total = [...this.unlogged.values()].reduce((a, b) => a + b, 0);
    this.unlogged.clear();
    this.log.log(this.level, this.summary, { count: total, byKind: counts, windowMs: this.windowMs });
  }
}
