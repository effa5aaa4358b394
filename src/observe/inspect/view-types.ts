/**
 * What the inspector page receives and asks for: the view of one coordinator's actor
 * system (actor tree, shards, client rows, events, the selected actor) and the page's request.
 */

/**
 * The machines of the hierarchy, by their machine id, plus the outbox. `balancer` is a node
 * of the tree only (with several partitions): the balancer is not an actor, and has no events.
 */
export type ActorKind = "election" | "monitor" | "shard" | "client" | "outbox" | "balancer" | "other";

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
  /** The partition whose actor system it is in, when the coordinator runs several. */
  partition?: number;
  /** A short summary for the tree (`epoch 7`, `3 clients`), with several partitions. */
  detail?: string;
  children?: ActorNode[];
  /** Children left out of `children` to keep the tree short (the client table has them all). */
  more?: number;
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

/** One partition's election, as this coordinator sees it. */
export interface PartitionRole {
  partition: number;
  role: string;
  epoch: number;
  leaderId: string | null;
}

export interface CoordinatorView {
  coordinatorId: string;
  clusterId: string;
  /** With several partitions: `leader` while it leads any of them, else partition 0's role. */
  role: string;
  /** With several partitions: 0 (each partition has its own, in `partitions`). */
  epoch: number;
  /** With several partitions: null (each partition has its own, in `partitions`). */
  leaderId: string | null;
  startedAt: number;
  /** Every partition's election, when the coordinator runs several (absent: it runs one). */
  partitions?: PartitionRole[];
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
