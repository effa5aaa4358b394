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
import { createActor, fromCallback, SimulatedClock, type Actor, type AnyActorRef, type SnapshotFrom } from "xstate";
import type { Command } from "../../machines/commands.js";
import type { ShardMachine } from "../../machines/shard.js";
import { electionMachine } from "../../machines/election.js";
import { electionInputFor } from "../../election/election-driver.js";
import { indexScheduler } from "../../machines/scheduler-index.js";
import type { RecordLog, RecordLogLine } from "./record-log.js";

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
  /** The partition whose actors sent it, when the log has several (absent: the log has one). */
  partition?: number;
  command: Command;
}

export interface Divergence {
  /** Line of the log where replay and log disagree (the last line + 1 at the end of the log). */
  line: number;
  /** 1-based index of that entry among the log's entries (the header not counted). */
  index: number;
  t: number;
  /** The partition whose actors disagree, when the log has several. */
  partition?: number;
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
  /** The partition whose actor system it belongs to, when the log has several. */
  partition?: number;
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
  /** Partitions replayed, each through an actor system of its own (1: the log has one). */
  partitions: number;
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

/**
 * One partition's actor system in replay, as the driver builds it live: the election machine
 * with its own input (its own seeded random) on its own clock, which fires the partition's
 * own numbered timers. With one partition there is one lane and no partition is named.
 */
class Lane {
  readonly clock = new ReplayClock();
  readonly actor: Actor<typeof electionMachine>;
  /** Commands this lane produced; `matched` of them were found in the log (with --check). */
  readonly produced: TimedCommand[] = [];
  matched = 0;

  constructor(
    readonly partition: number | undefined,
    config: RecordLog["header"]["config"],
    all: TimedCommand[],
  ) {
    const field = partition === undefined ? {} : { partition };
    const machine = electionMachine.provide({
      actors: {
        outbox: fromCallback<Command>(({ receive }) =>
          receive((command) => {
            const timed = { t: this.clock.now(), ...field, command };
            this.produced.push(timed);
            all.push(timed);
          }),
        ),
      },
    });
    this.actor = createActor(machine, { clock: this.clock, input: electionInputFor(config, partition ?? 0) });
    indexScheduler(this.actor.system); // as the driver does: the same timers, a cheaper stop
  }
}

/** Feeds a record log through the machines; see the file comment. */
export function replayLog(log: RecordLog, options: ReplayOptions = {}): ReplayResult {
  const check = options.check === true;
  const { config } = log.header;
  const count = config.partitions ?? 1;
  const produced: TimedCommand[] = [];
  const recorded: TimedCommand[] = [];
  const lanes = Array.from({ length: count }, (_, p) => new Lane(count > 1 ? p : undefined, config, produced));
  const laneOf = (entry: RecordLogLine["entry"]): Lane => lanes[entry.partition ?? 0]!;
  let divergence: Divergence | null = null;
  let matched = 0;
  let fed = 0;
  const diverge = (
    at: RecordLogLine | null,
    lane: Lane,
    index: number,
    problem: string,
    expected: Command | null,
    actual: Command | null,
  ) => {
    divergence = {
      line: at?.line ?? (log.entries.at(-1)?.line ?? 1) + 1,
      index,
      t: at?.entry.t ?? lane.clock.now(),
      ...(lane.partition !== undefined ? { partition: lane.partition } : {}),
      problem,
      expected,
      actual,
    };
  };
  /**
   * Before the next input: replay may not have produced more than the log recorded, in any
   * partition (live, a partition's commands are logged right after the input that caused them).
   */
  const noExtraCommands = (at: RecordLogLine | null, index: number): boolean => {
    if (!check || produced.length <= matched) return true;
    const lane = lanes.find((l) => l.produced.length > l.matched)!;
    diverge(at, lane, index, "replay produced a command the log does not have here", null, lane.produced[lane.matched]!.command);
    return false;
  };

  /** The log's next command of the same partition after entry i, normalised (undefined: none). */
  const nextRecorded = (i: number, lane: Lane): string | undefined => {
    const next = log.entries.slice(i + 1).find((e) => e.entry.kind === "command" && laneOf(e.entry) === lane)?.entry;
    return next?.kind === "command" ? normal(next.command) : undefined;
  };

  for (const [i, at] of log.entries.entries()) {
    const { entry } = at;
    const index = i + 1;
    if (options.until !== undefined && entry.t > options.until) break;
    fed = index;
    if (entry.kind === "info") continue;
    const lane = laneOf(entry);
    if (entry.kind === "command") {
      recorded.push({ t: entry.t, ...(lane.partition !== undefined ? { partition: lane.partition } : {}), command: entry.command });
      if (!check) continue;
      const actual = lane.produced[lane.matched];
      if (actual === undefined || normal(actual.command) !== normal(entry.command)) {
        // Replay's command is the log's next one: this line is one too many, not a changed command.
        const extra = actual === undefined || normal(actual.command) === nextRecorded(i, lane);
        diverge(
          at,
          lane,
          index,
          extra ? "the log has a command replay did not produce" : "the commands differ",
          entry.command,
          extra ? null : actual.command,
        );
        break;
      }
      lane.matched += 1;
      matched += 1;
      continue;
    }
    if (!noExtraCommands(at, index)) break;
    const { actor, clock } = lane;
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
      diverge(at, lane, index, problem, null, null);
      break;
    }
  }
  if (divergence === null) noExtraCommands(null, fed + 1);

  const result: ReplayResult = { produced, recorded, divergence, entries: fed, partitions: count };
  if (options.until !== undefined) {
    const until = options.until;
    for (const { clock } of lanes) if (until > clock.now()) clock.set(until);
    result.until = {
      t: Math.max(...lanes.map((l) => l.clock.now())),
      actors: lanes.flatMap((l) => describeActors(l.actor, l.partition)),
    };
  }
  for (const { actor } of lanes) actor.stop();
  return result;
}

type ShardSnapshot = SnapshotFrom<ShardMachine>;
type AnySnapshot = { value: unknown; status: string; context: Record<string, unknown>; children: Record<string, AnyActorRef | undefined> };

/**
 * Every actor of the system: the election, its monitor, each shard with clients, each client;
 * each names `partition` when given (the log has several).
 */
export function describeActors(actor: Actor<typeof electionMachine>, partition?: number): ActorState[] {
  const snap = actor.getSnapshot();
  const c = snap.context;
  const field = partition === undefined ? {} : { partition };
  const out: ActorState[] = [
    {
      id: "election",
      kind: "election",
      ...field,
      value: snap.status === "active" ? snap.value : snap.status,
      detail: { epoch: c.epoch, highestEpoch: c.highestEpoch, leader: c.leader?.coordinatorId ?? null },
    },
  ];
  const monitor = actor.system.get("monitor");
  if (monitor === undefined) return out;
  const m = monitor.getSnapshot() as AnySnapshot;
  const shards = Object.entries(m.children).flatMap(([id, ref]) => (ref ? [[id, ref.getSnapshot() as ShardSnapshot] as const] : []));
  const clientCount = shards.reduce((n, [, s]) => n + s.context.clients.size, 0);
  out.push({ id: "monitor", kind: "monitor", ...field, value: m.value, detail: { shards: shards.length, clients: clientCount } });
  for (const [id, shard] of shards) {
    // A shard keeps its client actors in its own map (src/machines/shard.ts), and their
    // latest replies in its liveness table.
    const { clients, liveness } = shard.context;
    if (clients.size === 0) continue;
    out.push({ id, kind: "shard", ...field, value: shard.value, detail: { clients: clients.size } });
    for (const [cid, ref] of clients) {
      const client = ref.getSnapshot();
      const l = liveness.get(cid) ?? client.context;
      out.push({
        id: `${id}/${cid}`,
        kind: "client",
        ...field,
        value: client.status === "active" ? client.value : client.status,
        detail: { state: client.context.state, missedPings: l.missedPings, lastSeenMs: l.lastSeenMs, rttMs: l.rttMs },
      });
    }
  }
  const empty = shards.length - out.filter((a) => a.kind === "shard").length;
  if (empty > 0) out.push({ id: "(shards without clients)", kind: "shard", ...field, value: null, detail: { count: empty } });
  return out;
}
