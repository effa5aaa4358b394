/**
 * Live inspection of one coordinator's actor system, fed by XState's `inspect` stream.
 *
 * The hub is built to stay cheap with 10,000 clients and more:
 * - actors are registered once (on `@xstate.actor`) and their snapshots are read lazily,
 *   only when a page asks for a view, never copied on every transition;
 * - events go into a fixed-size ring. Routine chatter (sweeps, their batches of pings,
 *   replies and NodeState, timers) is counted per type and only sampled into the ring,
 *   within a budget per interval, and a sweep with nothing in it is only counted, unless
 *   it concerns the actor the page is looking at, whose events are all kept (a batch that
 *   names the selected client counts as its own);
 * - pings and replies travel in batches, so they are also counted one per client, as the
 *   `ping` and `reply` rates;
 * - the client table is filtered, sorted and paged here, so a page gets at most one page of
 *   rows, however many clients there are.
 * With inspection off the hub does not exist and the actors are created without `inspect`.
 */
import type { AnyActorRef, AnyEventObject, InspectionEvent } from "xstate";
import type { Command } from "../../machines/commands.js";
import type { ClientContext } from "../../machines/client.js";
import { LivenessTable } from "../../machines/liveness.js";
import type { ElectionContext } from "../../machines/election.js";
import type { MonitorEvent } from "../../machines/monitor.js";
import type { ShardEvent } from "../../machines/shard.js";

/** The machines of the hierarchy, by their machine id, plus the outbox. */
export type ActorKind = "election" | "monitor" | "shard" | "client" | "outbox" | "other";

export type ClientRowState = "alive" | "suspect" | "dead" | "left";

export interface ClientRow {
  subject: string;
  state: ClientRowState;
  /** Where the client's actor is in its machine, e.g. `suspect`. */
  machineState: string;
  lastSeenMs: number;
  rttMs: number;
  missedPings: number;
  shard: number;
  /** False once its actor has finished (dead or left): the row is kept for a while. */
  live: boolean;
}

export interface ClientQuery {
  /** Substring of the subject, case-insensitive. */
  text?: string;
  state?: ClientRowState | "all";
  sort?: "subject" | "state" | "lastSeenMs" | "rttMs" | "missedPings" | "shard";
  descending?: boolean;
  offset?: number;
  limit?: number;
}

export interface EventEntry {
  seq: number;
  /** Wall-clock ms. */
  at: number;
  /**
   * What it is: an event that entered a machine, a command a machine sent to the outbox
   * (to be carried out at the edge), or a report (a command that publishes one).
   */
  channel: "event" | "command" | "report";
  /** Key of the actor it concerns (see `InspectionHub.keyOf`): the receiver of an event, the sender of a command. */
  actor: string;
  kind: ActorKind;
  /** The event type, the command type, or for a report the report's type (`NodeDead`, `BecameLeader`). */
  type: string;
  detail: string;
}

export interface ActorNode {
  key: string;
  kind: ActorKind;
  /** The state value as a dotted path (parallel regions joined with ` | `). */
  state: string;
  status: string;
  children?: ActorNode[];
}

export interface ShardSummary {
  index: number;
  clients: number;
  suspect: number;
}

export interface ViewRequest {
  /** Key of the actor whose chart and events the page shows. */
  select?: string;
  /** A shard whose clients the tree lists. */
  expandShard?: number | null;
  clients?: ClientQuery;
  /** The last event seq the page has; only newer ones are sent. */
  afterSeq?: number;
}

export interface SelectedView {
  key: string;
  kind: ActorKind;
  /** The machine of the actor (for its chart), when it is one of ours. */
  machine: "election" | "monitor" | "shard" | "client" | null;
  status: string;
  state: string;
  /** The state value as XState reports it, for highlighting the chart. */
  value: unknown;
  context: Record<string, string | number | boolean | null>;
  events: EventEntry[];
}

export interface CoordinatorView {
  coordinatorId: string;
  clusterId: string;
  role: string;
  epoch: number;
  leaderId: string | null;
  startedAt: number;
}

export interface View {
  at: number;
  coordinator: CoordinatorView;
  tree: ActorNode | null;
  shards: ShardSummary[];
  expandedShard: { index: number; clients: { subject: string; state: ClientRowState }[]; more: number } | null;
  counts: Record<ClientRowState, number> & { total: number };
  rates: { eventsPerSecond: number; sampled: boolean; byType: { type: string; perSecond: number }[] };
  events: EventEntry[];
  lastSeq: number;
  selected: SelectedView | null;
  clients: { total: number; offset: number; rows: ClientRow[] };
}

export interface HubOptions {
  coordinatorId: string;
  clusterId: string;
  /** Size of the ring of recent events (default 400). */
  ringSize?: number;
  /** Routine events sampled into the ring per second (default 4). */
  routinePerSecond?: number;
  /** Other events kept in the ring per second before they are only counted (default 200). */
  notablePerSecond?: number;
  /** Finished clients (dead, left) kept in the table (default 2000). */
  finishedKept?: number;
  now?: () => number;
}

interface Entry {
  key: string;
  kind: ActorKind;
  ref: AnyActorRef;
}

const MACHINE_KINDS = new Set<ActorKind>(["election", "monitor", "shard", "client"]);

/**
 * The sweep's clock ticking with nothing to tell: the timer, the ask for replies, and a SWEEP
 * without replies or stall (every shard gets one every sweep interval, clients or not).
 * Counted, and kept only for the actor the page looks at.
 */
function isIdle(type: string, event: AnyEventObject): boolean {
  if (type === "SWEEP") {
    const sweep = event as Extract<MonitorEvent, { type: "SWEEP" }>;
    return sweep.replies.length === 0 && sweep.stalledMs <= 0;
  }
  return type === "replies.collect" || type.startsWith("xstate.after.sweepInterval.");
}

/** Event types that happen all the time for every client: counted, and only sampled. A stalled SWEEP is not routine. */
function isRoutine(type: string, event: AnyEventObject): boolean {
  if (type === "SWEEP") return (event as Extract<MonitorEvent, { type: "SWEEP" }>).stalledMs <= 0;
  if (type === "clients.ping" || type === "reports.state" || type === "HEARTBEAT") return true;
  if (type === "report.presence") return (event as Extract<Command, { type: "report.presence" }>).report.type === "NodeState";
  if (type.startsWith("xstate.after.")) {
    const delay = type.slice("xstate.after.".length).split(".")[0];
    return delay === "sweepInterval" || delay === "heartbeatInterval";
  }
  return false;
}

/** `xstate.after.sweepInterval.monitor.sweeping.waiting` → `after sweepInterval`. */
function shortType(type: string): string {
  if (type.startsWith("xstate.after.")) return `after ${type.slice("xstate.after.".length).split(".")[0]}`;
  return type;
}

/** A dotted path of a state value; parallel regions are joined with ` | `. */
export function describeStateValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === null || typeof value !== "object") return "";
  const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
    const rest = describeStateValue(v);
    return rest === "" ? k : `${k}.${rest}`;
  });
  return parts.length === 1 ? parts[0]! : parts.join(" | ");
}

/** Numbers as a person reads them: at most two decimals. */
function round(n: number): number {
  return Number.isInteger(n) ? n : Math.round(n * 100) / 100;
}

function clip(text: string, max = 140): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `n` subjects, the first few of them, and `about` among them wherever it is. */
function someSubjects(subjects: readonly string[], about: string | null): string {
  const shown = subjects.slice(0, 3);
  if (about !== null && subjects.includes(about) && !shown.includes(about)) shown.push(about);
  const more = subjects.length - shown.length;
  return `${shown.join(" ")}${more > 0 ? ` +${more} more` : ""}`;
}

const presenceDetail = (r: Extract<Command, { type: "report.presence" }>["report"]): string =>
  `${r.clientSubject} state=${r.state} missed=${r.missedPings} rtt=${round(r.rttMs)}ms`;

/**
 * A short line for an event or command: what a person wants to read in the event list. A
 * batch (a sweep's replies, pings, NodeState reports) names `about`, the selected client,
 * when it is in the batch.
 */
function describeEvent(event: AnyEventObject, about: string | null): { detail: string; report?: string } {
  const e = event as unknown as Command | MonitorEvent | ShardEvent;
  switch (e.type) {
    case "SWEEP": {
      const stall = e.stalledMs > 0 ? ` stalled ${round(e.stalledMs)}ms (verdicts deferred)` : "";
      const mine = about === null ? undefined : e.replies.find((r) => r.subject === about);
      const reply = mine === undefined ? "" : `: ${mine.subject} replied rtt=${round(mine.rttMs)}ms`;
      return { detail: `${e.replies.length} ${e.replies.length === 1 ? "reply" : "replies"}${reply}${stall}` };
    }
    case "clients.ping":
      return { detail: `${e.subjects.length}: ${someSubjects(e.subjects, about)}` };
    case "reports.state": {
      const mine = about === null ? undefined : e.reports.find((r) => r.clientSubject === about);
      if (mine !== undefined) {
        const batch = e.reports.length > 1 ? ` (1 of ${e.reports.length})` : "";
        return { detail: `${presenceDetail(mine)}${batch}`, report: "NodeState" };
      }
      return {
        detail: `${e.reports.length}: ${someSubjects(
          e.reports.map((r) => r.clientSubject),
          null,
        )}`,
        report: "NodeState",
      };
    }
    case "report.presence": {
      return { detail: presenceDetail(e.report), report: e.report.type };
    }
    case "report.publish": {
      const r = e.report;
      const leader = r.leaderId !== undefined ? ` leader=${r.leaderId}` : "";
      return { detail: `epoch=${r.epoch} reason=${r.reason}${leader}`, report: r.type };
    }
    case "REGISTRATIONS_LOADED":
    case "REGISTRATIONS_CHUNK":
      return { detail: `${e.records.length} registrations` };
    case "REGISTER":
      return { detail: `${e.records.length} registration(s)` };
    case "REGISTERED":
      return { detail: e.record.registration.subject };
    default: {
      const { type: _type, ...rest } = e as AnyEventObject;
      const keys = Object.keys(rest);
      if (keys.length === 0) return { detail: "" };
      let text: string;
      try {
        text = keys
          .slice(0, 6)
          .map((k) => {
            const v = (rest as Record<string, unknown>)[k];
            const shown = typeof v === "number" ? round(v) : typeof v === "object" && v !== null ? JSON.stringify(v) : v;
            return `${k}=${String(shown)}`;
          })
          .join(" ");
      } catch {
        text = "(unprintable)";
      }
      return { detail: clip(text) };
    }
  }
}

function flatContext(kind: ActorKind, context: unknown): Record<string, string | number | boolean | null> {
  if (context === null || typeof context !== "object") return {};
  const c = context as Record<string, unknown>;
  if (kind === "election") {
    const e = c as unknown as ElectionContext;
    return {
      coordinatorId: e.coordinatorId,
      epoch: e.epoch,
      highestEpoch: e.highestEpoch,
      leader: e.leader ? `${e.leader.coordinatorId} (epoch ${e.leader.epoch})` : null,
      revision: e.revision,
      backoffMs: e.backoffMs,
      leaseValidForMs: round(e.leaseValidForMs),
      stopRequested: e.stopRequested,
    };
  }
  if (kind === "client") {
    const cl = c as unknown as ClientContext;
    return {
      subject: cl.subject,
      state: cl.state,
      lastSeen: new Date(cl.lastSeenMs).toISOString(),
      rttMs: cl.rttMs,
      missedPings: cl.missedPings,
      revision: cl.revision,
      metadata: JSON.stringify(cl.metadata),
    };
  }
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === "number") out[k] = round(v);
    else if (typeof v === "string" || typeof v === "boolean" || v === null) out[k] = v;
    else if (Array.isArray(v)) out[k] = `${v.length} items`;
    else if (k === "clients" && v instanceof Map) out[k] = `${v.size} actors`;
    else if (k === "liveness" && v instanceof LivenessTable) out[k] = `${v.size} clients`;
    else if (k === "settings" || k === "timings") out[k] = clip(JSON.stringify(v), 200);
  }
  return out;
}

/** A client row before its machine state is described (that is done for the rows of one page only). */
type RowData = Omit<ClientRow, "machineState"> & { value: unknown };

function rowData(c: ClientContext, value: unknown, shard: number, live: boolean): RowData {
  return { subject: c.subject, state: c.state, value, lastSeenMs: c.lastSeenMs, rttMs: c.rttMs, missedPings: c.missedPings, shard, live };
}

function toClientRow({ value, ...rest }: RowData): ClientRow {
  return { ...rest, machineState: describeStateValue(value) };
}

/** Plain ordering (no locale rules: fast on 10,000 rows, and the same on every machine). */
function compare(x: string | number, y: string | number): number {
  return x < y ? -1 : x > y ? 1 : 0;
}

export class InspectionHub {
  readonly coordinatorId: string;
  readonly clusterId: string;
  readonly startedAt: number;
  private readonly now: () => number;
  private readonly byKey = new Map<string, Entry>();
  private readonly byRef = new WeakMap<object, Entry>();
  /** Live client actors by subject, with their shard's index. */
  private readonly clients = new Map<string, { ref: AnyActorRef; shard: number; parent: AnyActorRef | undefined }>();
  private readonly finished = new Map<string, RowData>();
  private readonly finishedKept: number;
  private readonly ring: (EventEntry | undefined)[];
  private ringHead = 0;
  private seq = 0;
  private readonly selectedRing: EventEntry[] = [];
  private selectedKey: string | null = null;
  private readonly routineBudget: number;
  private readonly notableBudget: number;
  private routineLeft: number;
  private notableLeft: number;
  private budgetSince: number;
  private counts = new Map<string, number>();
  /** Pings and replies, one per client (they travel in batches, which `counts` counts). */
  private pings = 0;
  private replies = 0;
  private countsSince: number;
  private lastRates: View["rates"] = { eventsPerSecond: 0, sampled: false, byType: [] };
  private droppedSinceRates = 0;

  constructor(options: HubOptions) {
    this.coordinatorId = options.coordinatorId;
    this.clusterId = options.clusterId;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.ring = new Array<EventEntry | undefined>(options.ringSize ?? 400);
    this.routineBudget = options.routinePerSecond ?? 4;
    this.notableBudget = options.notablePerSecond ?? 200;
    this.routineLeft = this.routineBudget;
    this.notableLeft = this.notableBudget;
    this.budgetSince = this.startedAt;
    this.countsSince = this.startedAt;
    this.finishedKept = options.finishedKept ?? 2000;
  }

  /** Pass this as `inspect` to `createActor`. */
  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type === "@xstate.event") this.onEvent(ev.actorRef as AnyActorRef, ev.sourceRef as AnyActorRef | undefined, ev.event);
    else if (ev.type === "@xstate.actor") this.onActor(ev.actorRef as AnyActorRef);
  };

  /** The stable key of an actor: its machine for singletons, `shard-N`, `client:<subject>`. */
  static keyOf(kind: ActorKind, ref: AnyActorRef): string {
    if (kind === "client") return `client:${ref.id}`;
    if (kind === "shard" || kind === "other") return ref.id;
    return kind;
  }

  private onActor(ref: AnyActorRef): void {
    const logicId = (ref as unknown as { logic?: { id?: unknown } }).logic?.id;
    let kind: ActorKind = "other";
    if (typeof logicId === "string" && MACHINE_KINDS.has(logicId as ActorKind)) kind = logicId as ActorKind;
    else if (ref.id === "outbox") kind = "outbox";
    const entry: Entry = { key: InspectionHub.keyOf(kind, ref), kind, ref };
    this.byKey.set(entry.key, entry);
    this.byRef.set(ref, entry);
    if (kind === "client") {
      const parent = (ref as unknown as { _parent?: AnyActorRef })._parent;
      const shard = /^shard-(\d+)$/.exec(parent?.id ?? "");
      this.clients.set(ref.id, { ref, shard: shard ? Number(shard[1]) : -1, parent });
      this.finished.delete(ref.id);
    }
  }

  private onEvent(target: AnyActorRef, source: AnyActorRef | undefined, event: AnyEventObject): void {
    const type = event.type;
    this.counts.set(type, (this.counts.get(type) ?? 0) + 1);
    const to = this.byRef.get(target);
    const from = source !== undefined && source !== target ? this.byRef.get(source) : undefined;
    // The monitor's SWEEP holds every reply; each shard's SWEEP holds a part of them.
    if (type === "SWEEP" && to?.kind === "monitor") this.replies += (event as Extract<MonitorEvent, { type: "SWEEP" }>).replies.length;
    else if (type === "clients.ping") this.pings += (event as Extract<Command, { type: "clients.ping" }>).subjects.length;
    const idle = isIdle(type, event);
    // What the selected actor gets, the commands it sends, and what else it sends unless idle
    // (the monitor's empty SWEEP to each of its shards would crowd out the rest).
    const selected =
      this.selectedKey !== null &&
      (to?.key === this.selectedKey ||
        (from?.key === this.selectedKey && (!idle || to?.kind === "outbox")) ||
        this.concernsSelected(event, to));
    const now = this.now();
    if (now - this.budgetSince >= 1000) {
      this.budgetSince = now;
      this.routineLeft = this.routineBudget;
      this.notableLeft = this.notableBudget;
    }
    let keep = selected;
    if (!keep && !idle) {
      if (isRoutine(type, event)) {
        keep = this.routineLeft > 0;
        if (keep) this.routineLeft -= 1;
      } else {
        keep = this.notableLeft > 0;
        if (keep) this.notableLeft -= 1;
      }
    }
    if (!keep) {
      this.droppedSinceRates += 1;
      return;
    }
    const { detail, report } = describeEvent(event, this.selectedClient());
    // A command is shown under the machine that sent it, an event under the one that got it.
    const command = to?.kind === "outbox";
    const owner = command && from !== undefined ? from : to;
    const entry: EventEntry = {
      seq: ++this.seq,
      at: now,
      channel: report !== undefined ? "report" : command ? "command" : "event",
      actor: owner?.key ?? target.id,
      kind: owner?.kind ?? "other",
      type: report ?? shortType(type),
      detail,
    };
    this.ring[this.ringHead] = entry;
    this.ringHead = (this.ringHead + 1) % this.ring.length;
    if (selected) {
      this.selectedRing.push(entry);
      if (this.selectedRing.length > 100) this.selectedRing.shift();
    }
  }

  /** The subject of the selected client, if a client is selected. */
  private selectedClient(): string | null {
    const key = this.selectedKey;
    return key?.startsWith("client:") ? key.slice("client:".length) : null;
  }

  /**
   * Commands sent to the outbox on behalf of the selected client (pings, reports, in batches
   * or alone) belong to it too, and so does its shard's SWEEP that carries its reply.
   */
  private concernsSelected(event: AnyEventObject, to: Entry | undefined): boolean {
    const subject = this.selectedClient();
    if (subject === null) return false;
    const e = event as Command | ShardEvent;
    if (e.type === "SWEEP") return to?.kind === "shard" && e.replies.some((r) => r.subject === subject);
    if (e.type === "registration.remove") return e.subject === subject;
    if (e.type === "clients.ping") return e.subjects.includes(subject);
    if (e.type === "report.presence") return e.report.clientSubject === subject;
    if (e.type === "reports.state") return e.reports.some((r) => r.clientSubject === subject);
    return false;
  }

  /** Which actor the page looks at: its events are all kept, not sampled. */
  select(key: string | null): void {
    if (key === this.selectedKey) return;
    this.selectedKey = key;
    this.selectedRing.length = 0;
  }

  coordinator(): CoordinatorView {
    const election = this.byKey.get("election");
    const snap = election?.ref.getSnapshot() as { value?: unknown; status?: string; context?: ElectionContext } | undefined;
    const c = snap?.context;
    const value = snap?.value;
    const role =
      snap === undefined
        ? "starting"
        : snap.status !== "active"
          ? "stopped"
          : ((typeof value === "string" ? value : Object.keys(value as object)[0]) ?? "unknown");
    return {
      coordinatorId: this.coordinatorId,
      clusterId: this.clusterId,
      role,
      epoch: c === undefined ? 0 : role === "leader" ? c.epoch : c.highestEpoch,
      leaderId: c?.leader?.coordinatorId ?? null,
      startedAt: this.startedAt,
    };
  }

  /** Moves clients whose actors have finished into the table of finished clients. */
  private prune(): void {
    for (const [subject, { ref, shard }] of this.clients) {
      const snap = ref.getSnapshot() as { status: string; context: ClientContext; value: unknown };
      if (snap.status === "active") continue;
      this.clients.delete(subject);
      const entry = this.byKey.get(`client:${subject}`);
      if (entry?.ref === ref) this.byKey.delete(entry.key);
      const state = snap.context.state;
      // A client stopped with the monitor (leadership ended) is not monitored here any more.
      if (state !== "dead" && state !== "left") continue;
      this.finished.set(subject, rowData(snap.context, snap.value, shard, false));
      if (this.finished.size > this.finishedKept) {
        const oldest = this.finished.keys().next().value;
        if (oldest !== undefined) this.finished.delete(oldest);
      }
    }
    for (const [key, entry] of this.byKey) {
      if (entry.kind !== "client" && entry.kind !== "election" && entry.ref.getSnapshot().status === "stopped") this.byKey.delete(key);
    }
  }

  /**
   * A live client's context with its latest liveness: the actor hears only lifecycle changes,
   * so its last reply, rtt and missed pings are read from its shard's liveness table.
   */
  private freshContext(context: ClientContext, parent: AnyActorRef | undefined): ClientContext {
    const table = (parent?.getSnapshot() as { context?: { liveness?: LivenessTable } } | undefined)?.context?.liveness;
    const liveness = table?.get(context.subject);
    if (liveness === undefined) return context;
    return { ...context, lastSeenMs: liveness.lastSeenMs, rttMs: liveness.rttMs, missedPings: liveness.missedPings };
  }

  /** Every client, live and finished; the machine state is described later, for one page only. */
  private allRows(): RowData[] {
    const rows: RowData[] = [];
    for (const { ref, shard, parent } of this.clients.values()) {
      const snap = ref.getSnapshot() as { context: ClientContext; value: unknown };
      rows.push(rowData(this.freshContext(snap.context, parent), snap.value, shard, true));
    }
    for (const row of this.finished.values()) rows.push(row);
    return rows;
  }

  private node(entry: Entry | undefined): ActorNode | null {
    if (entry === undefined) return null;
    const snap = entry.ref.getSnapshot() as { status: string; value?: unknown };
    return { key: entry.key, kind: entry.kind, state: describeStateValue(snap.value), status: snap.status };
  }

  private rates(): View["rates"] {
    const now = this.now();
    const elapsed = now - this.countsSince;
    if (elapsed < 1000) return this.lastRates;
    let total = 0;
    const byType = [...this.counts.entries()].map(([type, n]) => {
      total += n;
      return { type: shortType(type), perSecond: (n * 1000) / elapsed };
    });
    const merged = new Map<string, number>();
    for (const t of byType) merged.set(t.type, (merged.get(t.type) ?? 0) + t.perSecond);
    if (this.pings > 0) merged.set("ping", (this.pings * 1000) / elapsed);
    if (this.replies > 0) merged.set("reply", (this.replies * 1000) / elapsed);
    this.lastRates = {
      eventsPerSecond: (total * 1000) / elapsed,
      sampled: this.droppedSinceRates > 0,
      byType: [...merged.entries()]
        .map(([type, perSecond]) => ({ type, perSecond: Math.round(perSecond * 10) / 10 }))
        .sort((a, b) => b.perSecond - a.perSecond)
        .slice(0, 12),
    };
    this.counts = new Map();
    this.pings = 0;
    this.replies = 0;
    this.countsSince = now;
    this.droppedSinceRates = 0;
    return this.lastRates;
  }

  /** Everything a page shows, for one page's request. */
  view(request: ViewRequest = {}): View {
    this.prune();
    if (request.select !== undefined) this.select(request.select);
    const rows = this.allRows();
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0, total: rows.length };
    for (const r of rows) counts[r.state] += 1;

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
    const shards: ShardSummary[] = [];
    for (const [key, entry] of this.byKey) {
      if (entry.kind !== "shard") continue;
      const index = Number(key.slice("shard-".length));
      shards.push(shardTotals.get(index) ?? { index, clients: 0, suspect: 0 });
    }
    shards.sort((a, b) => a.index - b.index);

    let expandedShard: View["expandedShard"] = null;
    if (request.expandShard !== undefined && request.expandShard !== null) {
      const inShard = rows.filter((r) => r.live && r.shard === request.expandShard).sort((a, b) => compare(a.subject, b.subject));
      expandedShard = {
        index: request.expandShard,
        clients: inShard.slice(0, 100).map((r) => ({ subject: r.subject, state: r.state })),
        more: Math.max(0, inShard.length - 100),
      };
    }

    const election = this.node(this.byKey.get("election"));
    const monitor = this.node(this.byKey.get("monitor"));
    const outbox = this.node(this.byKey.get("outbox"));
    let tree: ActorNode | null = null;
    if (election !== null) {
      tree = { ...election, children: [outbox, monitor].filter((n): n is ActorNode => n !== null && n.status !== "stopped") };
    }

    const q = request.clients ?? {};
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

    const after = request.afterSeq ?? 0;
    const events: EventEntry[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const e = this.ring[(this.ringHead + i) % this.ring.length];
      if (e !== undefined && e.seq > after) events.push(e);
    }

    return {
      at: this.now(),
      coordinator: this.coordinator(),
      tree,
      shards,
      expandedShard,
      counts,
      rates: this.rates(),
      events,
      lastSeq: this.seq,
      selected: this.selectedView(),
      clients: { total: filtered.length, offset, rows: filtered.slice(offset, offset + limit).map(toClientRow) },
    };
  }

  private selectedView(): SelectedView | null {
    const key = this.selectedKey;
    if (key === null) return null;
    const entry = this.byKey.get(key);
    if (entry === undefined) {
      if (key.startsWith("client:")) {
        const row = this.finished.get(key.slice("client:".length));
        if (row !== undefined) {
          return {
            key,
            kind: "client",
            machine: "client",
            status: "done",
            state: describeStateValue(row.value),
            value: row.value,
            context: {
              subject: row.subject,
              state: row.state,
              lastSeen: new Date(row.lastSeenMs).toISOString(),
              rttMs: row.rttMs,
              missedPings: row.missedPings,
            },
            events: [...this.selectedRing],
          };
        }
      }
      return null;
    }
    const snap = entry.ref.getSnapshot() as { status: string; value?: unknown; context?: unknown };
    const client = entry.kind === "client" ? this.clients.get(entry.ref.id) : undefined;
    const context = client !== undefined ? this.freshContext(snap.context as ClientContext, client.parent) : snap.context;
    return {
      key,
      kind: entry.kind,
      machine: MACHINE_KINDS.has(entry.kind) ? (entry.kind as SelectedView["machine"]) : null,
      status: snap.status,
      state: describeStateValue(snap.value),
      value: snap.value ?? null,
      context: flatContext(entry.kind, context),
      events: [...this.selectedRing],
    };
  }
}
