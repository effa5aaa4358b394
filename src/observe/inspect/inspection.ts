/**
 * The inspection hub: live inspection of one coordinator's actor system, fed by XState's
 * `inspect` stream, and the view a page asks for.
 *
 * The hub is built to stay cheap with 10,000 clients and more:
 * - actors are registered once (on `@xstate.actor`) and their snapshots are read lazily,
 *   only when a page asks for a view, never copied on every transition;
 * - events are counted and only sampled into the event log (event-log.ts), unless they
 *   concern the actor the page is looking at, whose events are all kept (a batch that names
 *   the selected client counts as its own);
 * - the client table is filtered, sorted and paged in the daemon (client-table.ts), so a
 *   page gets at most one page of rows, however many clients there are.
 * With inspection off the hub does not exist and the actors are created without `inspect`.
 *
 * Partitions. A coordinator that runs several partitions hands the same observer to every
 * partition's election driver, so the hub hears several actor systems whose actors have the
 * same ids (`election`, `monitor`, `shard-17`). It tells them apart by the root each
 * inspection event names (`rootId`, the session of the system's root, the election actor),
 * and numbers the systems in the order their roots appear: the coordinator creates the
 * partitions' drivers in partition order, so system p is partition p. With more than one
 * system, every key but a client's names its partition (`election.2`, `shard-17.2`; a client
 * is in one partition only), and the tree is coordinator → balancer → each partition's
 * election → its monitor → shards → clients. With one, keys and tree are as they always were.
 */
import type { AnyActorRef, AnyEventObject, InspectionEvent } from "xstate";
import type { ClientContext } from "../../machines/client.js";
import type { Command } from "../../machines/commands.js";
import type { ElectionContext } from "../../machines/election.js";
import type { LivenessTable } from "../../machines/liveness.js";
import type { ShardEvent } from "../../machines/shard.js";
import { countStates, pageOfClients, type RowData, rowData, shardClients, shardSummaries } from "./client-table.js";
import { describeEvent, shortType } from "./event-detail.js";
import { EventLog, type EventLogOptions, isIdle } from "./event-log.js";
import { describeStateValue, flatContext } from "./snapshot-text.js";
import type { ActorKind, ActorNode, CoordinatorView, PartitionRole, SelectedView, View, ViewRequest } from "./view-types.js";

export interface HubOptions extends Pick<EventLogOptions, "ringSize" | "routinePerSecond" | "notablePerSecond"> {
  coordinatorId: string;
  clusterId: string;
  /** Finished clients (dead, left) kept in the table (default 2000). */
  finishedKept?: number;
  now?: () => number;
}

interface Entry {
  key: string;
  /** The key the actor has in a coordinator with one partition (`InspectionHub.keyOf`). */
  base: string;
  kind: ActorKind;
  ref: AnyActorRef;
  /** Its actor system: the partition (0 with one). */
  system: number;
}

const MACHINE_KINDS = new Set<ActorKind>(["election", "monitor", "shard", "client"]);

/** With several partitions the tree lists at most this many shards per monitor, and clients per shard (the table has them all). */
const TREE_SHARDS = 16;
const TREE_CLIENTS = 8;

type ElectionSnapshot = { value?: unknown; status?: string; context?: ElectionContext };

/** A role as the header shows it: the election's top state, or why there is none. */
function roleOf(snap: ElectionSnapshot | undefined): string {
  if (snap === undefined) return "starting";
  if (snap.status !== "active") return "stopped";
  const value = snap.value;
  return (typeof value === "string" ? value : Object.keys(value as object)[0]) ?? "unknown";
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
  private readonly log: EventLog;
  private selectedKey: string | null = null;
  /** Actor systems by their root's session id, numbered as they appear (see the file comment). */
  private readonly systems = new Map<string, number>();

  constructor(options: HubOptions) {
    this.coordinatorId = options.coordinatorId;
    this.clusterId = options.clusterId;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.log = new EventLog({
      ringSize: options.ringSize,
      routinePerSecond: options.routinePerSecond,
      notablePerSecond: options.notablePerSecond,
      now: this.now,
      since: this.startedAt,
    });
    this.finishedKept = options.finishedKept ?? 2000;
  }

  /** Pass this as `inspect` to `createActor`. */
  readonly inspect = (ev: InspectionEvent): void => {
    if (ev.type === "@xstate.event") this.onEvent(ev.actorRef as AnyActorRef, ev.sourceRef as AnyActorRef | undefined, ev.event);
    else if (ev.type === "@xstate.actor") this.onActor(ev.actorRef as AnyActorRef, ev.rootId);
  };

  /** True once the hub has heard more than one actor system (a coordinator with several partitions). */
  private get partitioned(): boolean {
    return this.systems.size > 1;
  }

  /** The key of an actor of `system`: its partition named after it when there are several, except a client's. */
  private keyIn(base: string, kind: ActorKind, system: number): string {
    return this.partitioned && kind !== "client" ? `${base}.${system}` : base;
  }

  /** The system `rootId` is, numbered on first sight; the second one re-keys the first's actors. */
  private systemOf(rootId: string): number {
    let system = this.systems.get(rootId);
    if (system !== undefined) return system;
    system = this.systems.size;
    this.systems.set(rootId, system);
    if (this.systems.size === 2) {
      const entries = [...this.byKey.values()];
      this.byKey.clear();
      for (const entry of entries) {
        entry.key = this.keyIn(entry.base, entry.kind, entry.system);
        this.byKey.set(entry.key, entry);
      }
    }
    return system;
  }

  /** The stable key of an actor: its machine for singletons, `shard-N`, `client:<subject>`. */
  static keyOf(kind: ActorKind, ref: AnyActorRef): string {
    if (kind === "client") return `client:${ref.id}`;
    if (kind === "shard" || kind === "other") return ref.id;
    return kind;
  }

  private onActor(ref: AnyActorRef, rootId: string): void {
    const logicId = (ref as unknown as { logic?: { id?: unknown } }).logic?.id;
    let kind: ActorKind = "other";
    if (typeof logicId === "string" && MACHINE_KINDS.has(logicId as ActorKind)) kind = logicId as ActorKind;
    else if (ref.id === "outbox") kind = "outbox";
    const system = this.systemOf(rootId);
    const base = InspectionHub.keyOf(kind, ref);
    const entry: Entry = { key: this.keyIn(base, kind, system), base, kind, ref, system };
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
    const to = this.byRef.get(target);
    const from = source !== undefined && source !== target ? this.byRef.get(source) : undefined;
    this.log.count(event, to?.kind);
    const idle = isIdle(event.type, event);
    // What the selected actor gets, the commands it sends, and what else it sends unless idle
    // (the monitor's empty SWEEP to each of its shards would crowd out the rest).
    const selected =
      this.selectedKey !== null &&
      (to?.key === this.selectedKey ||
        (from?.key === this.selectedKey && (!idle || to?.kind === "outbox")) ||
        this.concernsSelected(event, to));
    this.log.offer(event, idle, selected, () => {
      const { detail, report } = describeEvent(event, this.selectedClient());
      // A command is shown under the machine that sent it, an event under the one that got it.
      const command = to?.kind === "outbox";
      const owner = command && from !== undefined ? from : to;
      return {
        channel: report !== undefined ? "report" : command ? "command" : "event",
        actor: owner?.key ?? target.id,
        kind: owner?.kind ?? "other",
        type: report ?? shortType(event.type),
        detail,
      };
    });
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
    this.log.clearSelected();
  }

  /** Each partition's election: its role, epoch and the leader it knows. */
  private partitionRoles(): PartitionRole[] {
    return Array.from(this.systems.values(), (p) => {
      const snap = this.byKey.get(`election.${p}`)?.ref.getSnapshot() as ElectionSnapshot | undefined;
      const c = snap?.context;
      const role = roleOf(snap);
      return {
        partition: p,
        role,
        epoch: c === undefined ? 0 : role === "leader" ? c.epoch : c.highestEpoch,
        leaderId: role === "leader" ? this.coordinatorId : (c?.leader?.coordinatorId ?? null),
      };
    });
  }

  coordinator(): CoordinatorView {
    if (this.partitioned) {
      const partitions = this.partitionRoles();
      return {
        coordinatorId: this.coordinatorId,
        clusterId: this.clusterId,
        role: partitions.some((p) => p.role === "leader") ? "leader" : (partitions[0]?.role ?? "starting"),
        epoch: 0,
        leaderId: null,
        startedAt: this.startedAt,
        partitions,
      };
    }
    const election = this.byKey.get("election");
    const snap = election?.ref.getSnapshot() as ElectionSnapshot | undefined;
    const c = snap?.context;
    const role = roleOf(snap);
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

  /** Everything a page shows, for one page's request. */
  view(request: ViewRequest = {}): View {
    this.prune();
    if (request.select !== undefined) this.select(request.select);
    const rows = this.allRows();
    const shardIndexes = new Set<number>();
    for (const entry of this.byKey.values()) {
      if (entry.kind === "shard") shardIndexes.add(Number(entry.base.slice("shard-".length)));
    }
    const expand = request.expandShard;

    const election = this.node(this.byKey.get("election"));
    const monitor = this.node(this.byKey.get("monitor"));
    const outbox = this.node(this.byKey.get("outbox"));
    let tree: ActorNode | null = null;
    if (this.partitioned) tree = this.partitionedTree();
    else if (election !== null) {
      tree = { ...election, children: [outbox, monitor].filter((n): n is ActorNode => n !== null && n.status !== "stopped") };
    }

    return {
      at: this.now(),
      coordinator: this.coordinator(),
      tree,
      shards: shardSummaries(rows, [...shardIndexes]),
      expandedShard: expand === undefined || expand === null ? null : shardClients(rows, expand),
      counts: countStates(rows),
      rates: this.log.rates(),
      events: this.log.after(request.afterSeq ?? 0),
      lastSeq: this.log.lastSeq,
      selected: this.selectedView(),
      clients: pageOfClients(rows, request.clients ?? {}),
    };
  }

  /**
   * The tree of a coordinator with several partitions: the balancer (a node of the tree only:
   * it is a plain object, not an actor), each partition's election under it, the monitor of
   * each partition it leads, that monitor's shards with clients, and their clients.
   */
  private partitionedTree(): ActorNode {
    const roles = this.partitionRoles();
    const clientsOf = new Map<Entry, AnyActorRef[]>();
    for (const { ref, parent } of this.clients.values()) {
      const shard = parent === undefined ? undefined : this.byRef.get(parent);
      if (shard === undefined) continue;
      const list = clientsOf.get(shard);
      if (list === undefined) clientsOf.set(shard, [ref]);
      else list.push(ref);
    }
    const elections: ActorNode[] = [];
    for (const { partition, role, epoch, leaderId } of roles) {
      const election = this.node(this.byKey.get(`election.${partition}`));
      if (election === null) continue;
      election.partition = partition;
      election.detail = role === "leader" ? `epoch ${epoch}` : leaderId !== null ? `${leaderId} leads, epoch ${epoch}` : "no leader known";
      const monitorEntry = this.byKey.get(`monitor.${partition}`);
      const monitor = this.node(monitorEntry);
      if (monitor !== null && monitor.status !== "stopped") {
        monitor.partition = partition;
        const shards = [...clientsOf]
          .filter(([entry]) => entry.system === partition && entry.ref.getSnapshot().status === "active")
          .sort(([a], [b]) => Number(a.base.slice("shard-".length)) - Number(b.base.slice("shard-".length)));
        const count = shards.reduce((n, [, refs]) => n + refs.length, 0);
        monitor.detail = `${count} client${count === 1 ? "" : "s"}`;
        monitor.children = shards.slice(0, TREE_SHARDS).map(([entry, refs]) => {
          const shard = this.node(entry)!;
          shard.partition = partition;
          shard.detail = `${refs.length} client${refs.length === 1 ? "" : "s"}`;
          const sorted = refs.map((ref) => ref.id).sort();
          shard.children = sorted.slice(0, TREE_CLIENTS).flatMap((subject) => {
            const node = this.node(this.byKey.get(`client:${subject}`));
            return node === null ? [] : [{ ...node, partition }];
          });
          if (sorted.length > TREE_CLIENTS) shard.more = sorted.length - TREE_CLIENTS;
          return shard;
        });
        if (shards.length > TREE_SHARDS) monitor.more = shards.length - TREE_SHARDS;
        election.children = [monitor];
      }
      elections.push(election);
    }
    const led = roles.filter((r) => r.role === "leader").length;
    return {
      key: "balancer",
      kind: "balancer",
      state: `leads ${led} of ${roles.length}`,
      status: "active",
      children: elections,
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
            events: this.log.selectedEvents(),
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
      events: this.log.selectedEvents(),
    };
  }
}
