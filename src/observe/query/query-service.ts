/**
 * The query service: a NATS micro service (`@nats-io/services`, so `nats micro ls/info/stats`
 * and `$SRV.PING.presence-coordinator` find it) that every coordinator serves.
 *
 * - `presence.query.{list|get|stats}.{cluster}`: one queue group over all coordinators. The
 *   leader answers from its running monitor; a follower forwards the request, unchanged and
 *   with the caller's reply subject, to the leader's direct subject, so the caller gets the
 *   leader's answer whichever coordinator received it. With no leader known: `no-leader` (503).
 * - `presence.query.{list|get|stats}.{cluster}.{coordinatorId}`: that coordinator answers for
 *   itself, never forwarding: data while it leads, `not-leader` (421) naming the leader it
 *   knows otherwise. `status` uses these to ask every coordinator its role.
 *
 * With several partitions (P > 1) nothing is forwarded: the coordinator asked on a shared
 * subject gathers the answer for the whole cluster. `get` asks the leader of the subject's
 * partition; `list` and `stats` ask every coordinator that leads a partition (on its direct
 * subject, at most `PEER_TIMEOUT_MS` each, all at once; the asked coordinator reads its own
 * partitions itself) and merge. A partition with no leader known, or whose leader did not
 * answer in time, is named in `missingPartitions` rather than failing the request. A direct
 * subject answers for the partitions that coordinator leads (`not-leader` if none).
 *
 * The data is read from the client actors' snapshots; nothing here sends them an event.
 */
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { ServiceErrorCodeHeader, Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import type { LeaseHolder } from "../../protocol/election.js";
import { partitionOf } from "../../protocol/partition.js";
import {
  countClients,
  MAX_LIST_LIMIT,
  mergeCoverage,
  mergeClients,
  mergeStats,
  pageOf,
  parseGetRequest,
  parseListRequest,
  QUERY_ERRORS,
  QUERY_OPERATIONS,
  QUERY_SERVICE_NAME,
  QueryRequestError,
  querySubjects,
  type ClientInfo,
  type GetResponse,
  type ListResponse,
  type PartitionStamp,
  type PartitionStats,
  type QueryErrorBody,
  type QueryOperation,
  type StatsResponse,
} from "../../protocol/query.js";
import { describeError, type Logger } from "../logger.js";
import { PACKAGE_VERSION } from "../../version.js";

/** What the service reads of its coordinator (the coordinator passes its CoordinatorView). */
export interface QuerySource {
  /** True while this coordinator leads with a valid lease. */
  leads(): boolean;
  /** Its election state (follower, candidate, leader, ...). */
  readonly role: string;
  /** The leader it knows of (itself while leading); null when none. */
  readonly knownLeader: LeaseHolder | null;
  /** The live clients of its monitors (empty unless it leads): of one partition, or of every partition it leads. */
  clients(partition?: number): ClientInfo[];
  /** How many partitions the cluster runs. */
  readonly partitionCount: number;
  /** Every partition as this coordinator sees it, by partition. */
  partitions(): readonly QueryPartition[];
}

/** A partition as the query service reads it (a PartitionView of the coordinator's view). */
export interface QueryPartition {
  partition: number;
  /** Its leader as this coordinator knows it; null when it knows none. */
  leader: LeaseHolder | null;
  epoch: number;
  /** True while this coordinator leads it with a valid lease. */
  leads: boolean;
}

export interface QueryServiceOptions {
  nc: NatsConnection;
  clusterId: string;
  coordinatorId: string;
  source: QuerySource;
  logger: Logger;
  /** Default: the version in package.json. */
  version?: string;
}

/**
 * With several partitions: how long the asked coordinator waits for each partition leader's
 * answer, ms, with that leader's partitions missing after it. Under the callers' own timeout
 * (`status --timeout` is 2000 ms by default), or they would give up before it does.
 */
const PEER_TIMEOUT_MS = 1000;

export interface QueryService {
  /** The micro service instance id (`nats micro info presence-coordinator <id>`). */
  readonly id: string;
  stop(): Promise<void>;
}

/** Room left in a message for headers and framing when a `list` page is cut to fit. */
const PAYLOAD_HEADROOM = 4096;

export async function startQueryService(options: QueryServiceOptions): Promise<QueryService> {
  const { nc, clusterId, coordinatorId, source } = options;
  const log = options.logger.child({ component: "query" });
  const startedAtMs = Date.now();
  const version = options.version ?? PACKAGE_VERSION;
  const service: Service = await new Svcm(nc).add({
    name: QUERY_SERVICE_NAME,
    version,
    description: `presence queries of cluster ${clusterId}: list, get and stats of the monitored clients`,
    metadata: { clusterId, coordinatorId },
  });
  const encoder = new TextEncoder();
  const json = (value: unknown) => encoder.encode(JSON.stringify(value));

  const fail = (
    msg: ServiceMsg,
    kind: (typeof QUERY_ERRORS)[keyof typeof QUERY_ERRORS],
    message: string,
    about?: { partition: number; leader: LeaseHolder | null },
  ) => {
    const leader = about === undefined ? source.knownLeader : about.leader;
    const body: QueryErrorBody = {
      error: kind.error,
      message,
      clusterId,
      coordinatorId,
      role: source.role,
      leader: leader?.coordinatorId ?? null,
      epoch: leader?.epoch ?? 0,
      ...(about !== undefined ? { partition: about.partition } : {}),
    };
    msg.respondError(kind.code, kind.error, json(body));
  };

  const maxBytes = () => (nc.info?.max_payload ?? 1024 * 1024) - PAYLOAD_HEADROOM;

  /** Sends the largest page that fits in one message: a page that does not is cut (halved) until it does; nextOffset says where to go on. */
  const respondPage = (msg: ServiceMsg, limit: number, body: (limit: number) => ListResponse) => {
    for (let l = limit; ; l = Math.max(1, Math.floor(l / 2))) {
      const data = json(body(l));
      if (data.byteLength <= maxBytes() || l === 1) return void msg.respond(data);
    }
  };

  /** The answering process's uptime and version, for `stats`. */
  const uptime = () => ({ uptimeMs: Date.now() - startedAtMs, startedAt: new Date(startedAtMs).toISOString(), version });

  /** The leader's answer; only called while `source.leads()`. With one partition only. */
  const answer = (operation: QueryOperation, msg: ServiceMsg) => {
    const stamp = { clusterId, leader: coordinatorId, epoch: source.knownLeader?.epoch ?? 0 };
    switch (operation) {
      case "list": {
        const request = parseListRequest(msg.data);
        const clients = source.clients().filter((c) => request.state === undefined || c.state === request.state);
        return respondPage(msg, request.limit, (limit) => {
          const { page, nextOffset } = pageOf(clients, request.offset, limit);
          return { ...stamp, total: clients.length, offset: request.offset, nextOffset, clients: page };
        });
      }
      case "get": {
        const { subject } = parseGetRequest(msg.data);
        const client = source.clients().find((c) => c.subject === subject);
        if (client === undefined) return fail(msg, QUERY_ERRORS.notFound, `no live client with subject ${JSON.stringify(subject)}`);
        const body: GetResponse = { ...stamp, client };
        return void msg.respond(json(body));
      }
      case "stats": {
        const body: StatsResponse = { ...stamp, coordinatorId, clients: countClients(source.clients()), ...uptime() };
        return void msg.respond(json(body));
      }
    }
  };

  const notLeading = (msg: ServiceMsg) => {
    const leader = source.knownLeader;
    if (leader === null || leader.coordinatorId === coordinatorId) {
      return fail(msg, QUERY_ERRORS.noLeader, `coordinator ${coordinatorId} knows of no leader of cluster ${clusterId} now; retry shortly`);
    }
    fail(msg, QUERY_ERRORS.notLeader, `coordinator ${coordinatorId} is not the leader; ask ${leader.coordinatorId}`);
  };

  // ---- several partitions ----

  /** The partitions this coordinator leads now, and their live clients by partition. */
  const ownPartitions = () => {
    const led = source.partitions().filter((p) => p.leads);
    const clients = new Map<number, ClientInfo[]>(led.map((p) => [p.partition, source.clients(p.partition)]));
    const stamps: PartitionStamp[] = led.map((p) => ({ partition: p.partition, leader: coordinatorId, epoch: p.epoch }));
    return { stamps, clients };
  };

  /** The other coordinators that lead a partition, as this one knows them. */
  const peerLeaders = (): string[] => {
    const ids = new Set<string>();
    for (const p of source.partitions()) {
      if (!p.leads && p.leader !== null && p.leader.coordinatorId !== coordinatorId) ids.add(p.leader.coordinatorId);
    }
    return [...ids].sort();
  };

  /** Asks a coordinator on its direct subject; null (logged at debug) when it did not answer in time or answered an error. */
  const askPeer = async <T>(operation: QueryOperation, peer: string, body: string | Uint8Array): Promise<T | null> => {
    let reply: Msg;
    try {
      reply = await nc.request(querySubjects.direct(operation, clusterId, peer), body, { timeout: PEER_TIMEOUT_MS });
    } catch (err) {
      log.debug("a partition leader did not answer a query", { operation, peer, error: describeError(err) });
      return null;
    }
    if (reply.headers?.get(ServiceErrorCodeHeader)) {
      log.debug("a partition leader answered a query with an error", { operation, peer, answer: reply.string() });
      return null;
    }
    return reply.json<T>();
  };

  const ownStats = (): PartitionStats[] => {
    const { stamps, clients } = ownPartitions();
    return stamps.map((s) => ({ ...s, clients: countClients(clients.get(s.partition) ?? []) }));
  };

  /** stats with several partitions: the partitions this coordinator leads (`gather`: and those of every other leader). */
  const partitionedStats = async (msg: ServiceMsg, gather: boolean) => {
    const own = ownStats();
    if (!gather && own.length === 0) return notLeading(msg);
    const peers = gather ? await Promise.all(peerLeaders().map((peer) => askPeer<StatsResponse>("stats", peer, ""))) : [];
    const merged = mergeStats(source.partitionCount, [own, ...peers.map((p) => p?.partitions ?? [])]);
    const body: StatsResponse = {
      clusterId,
      leader: coordinatorId,
      epoch: merged.epoch,
      coordinatorId,
      clients: merged.clients,
      ...uptime(),
      partitionCount: merged.partitionCount,
      partitions: merged.partitions,
      missingPartitions: merged.missingPartitions,
    };
    msg.respond(json(body));
  };

  /** A peer's first `need` clients (sorted by subject) matching `state`, over as many pages as that takes. */
  const peerClients = async (peer: string, state: "alive" | "suspect" | undefined, need: number) => {
    const clients: ClientInfo[] = [];
    let first: ListResponse | null = null;
    for (let offset: number | null = 0; offset !== null && clients.length < need; ) {
      const page: ListResponse | null = await askPeer<ListResponse>(
        "list",
        peer,
        JSON.stringify({ ...(state !== undefined ? { state } : {}), offset, limit: Math.min(MAX_LIST_LIMIT, need - clients.length) }),
      );
      if (page === null) return null;
      first ??= page;
      clients.push(...page.clients);
      offset = page.nextOffset;
    }
    return first === null ? null : { clients, total: first.total, partitions: first.partitions ?? [] };
  };

  /** list with several partitions: the clients of the partitions this coordinator leads (`gather`: and of every other leader's). */
  const partitionedList = async (msg: ServiceMsg, gather: boolean) => {
    const request = parseListRequest(msg.data);
    const own = ownPartitions();
    if (!gather && own.stamps.length === 0) return notLeading(msg);
    const ownClients = [...own.clients.values()].flat().filter((c) => request.state === undefined || c.state === request.state);
    const need = request.offset + request.limit;
    const peers = gather ? await Promise.all(peerLeaders().map((peer) => peerClients(peer, request.state, need))) : [];
    const parts = [{ clients: ownClients, total: ownClients.length }, ...peers.filter((p) => p !== null)];
    const coverage = mergeCoverage(source.partitionCount, [own.stamps, ...peers.map((p) => p?.partitions ?? [])]);
    const epoch = Math.max(0, ...coverage.partitions.map((p) => p.epoch));
    // Merged once; a page cut to fit the message only slices it again.
    const { clients, total } = mergeClients(parts);
    respondPage(msg, request.limit, (limit) => {
      const { page, nextOffset } = pageOf(clients, request.offset, limit, total);
      return { clusterId, leader: coordinatorId, epoch, total, offset: request.offset, nextOffset, clients: page, ...coverage };
    });
  };

  /** get with several partitions: this coordinator answers for a partition it leads; `gather`: asks the partition's leader otherwise. */
  const partitionedGet = async (msg: ServiceMsg, gather: boolean) => {
    const { subject } = parseGetRequest(msg.data);
    const partition = partitionOf(subject, source.partitionCount);
    const view = source.partitions()[partition];
    const leader = view?.leads ? { coordinatorId, epoch: view.epoch } : (view?.leader ?? null);
    const about = { partition, leader };
    if (view?.leads) {
      const client = source.clients(partition).find((c) => c.subject === subject);
      if (client === undefined) return fail(msg, QUERY_ERRORS.notFound, `no live client with subject ${JSON.stringify(subject)}`, about);
      const body: GetResponse = { clusterId, leader: coordinatorId, epoch: view.epoch, client, partition };
      return void msg.respond(json(body));
    }
    if (leader === null || leader.coordinatorId === coordinatorId) {
      return fail(
        msg,
        QUERY_ERRORS.noLeader,
        `coordinator ${coordinatorId} knows of no leader of partition ${partition} now; retry shortly`,
        about,
      );
    }
    if (!gather) {
      return fail(
        msg,
        QUERY_ERRORS.notLeader,
        `coordinator ${coordinatorId} does not lead partition ${partition}; ask ${leader.coordinatorId}`,
        about,
      );
    }
    try {
      const reply = await nc.request(querySubjects.direct("get", clusterId, leader.coordinatorId), msg.data, { timeout: PEER_TIMEOUT_MS });
      // The leader's answer, found or not, goes to the caller as it is.
      msg.respond(reply.data, reply.headers ? { headers: reply.headers } : {});
    } catch (err) {
      log.debug("a partition leader did not answer a query", { operation: "get", peer: leader.coordinatorId, error: describeError(err) });
      fail(
        msg,
        QUERY_ERRORS.noLeader,
        `the leader of partition ${partition} (${leader.coordinatorId}) did not answer within ${PEER_TIMEOUT_MS} ms; retry shortly`,
        about,
      );
    }
  };

  const partitioned = { list: partitionedList, get: partitionedGet, stats: partitionedStats } as const;

  const guarded =
    (what: string, handle: (msg: ServiceMsg) => void | Promise<void>) =>
    (err: Error | null, msg: ServiceMsg): void => {
      if (err) {
        log.warn("query endpoint failed", { endpoint: what, error: describeError(err) });
        return;
      }
      const failed = (e: unknown) => {
        if (e instanceof QueryRequestError) return fail(msg, QUERY_ERRORS.badRequest, e.message);
        log.warn("could not answer a query", { endpoint: what, error: describeError(e) });
      };
      try {
        const done = handle(msg);
        if (done instanceof Promise) done.catch(failed);
      } catch (e) {
        failed(e);
      }
    };

  const several = source.partitionCount > 1;
  const group = service.addGroup("presence.query");
  for (const operation of QUERY_OPERATIONS) {
    group.addEndpoint(operation, {
      subject: `${operation}.${clusterId}`,
      metadata: {
        description: several
          ? `${operation} (any coordinator; it asks each partition's leader)`
          : `${operation} (any coordinator; forwarded to the leader)`,
      },
      handler: guarded(operation, (msg) => {
        if (several) return partitioned[operation](msg, true);
        if (source.leads()) return answer(operation, msg);
        const leader = source.knownLeader;
        if (leader === null || leader.coordinatorId === coordinatorId || !msg.reply) return notLeading(msg);
        // The leader answers the caller directly: same body, same headers, the caller's reply subject.
        nc.publish(querySubjects.direct(operation, clusterId, leader.coordinatorId), msg.data, {
          reply: msg.reply,
          ...(msg.headers ? { headers: msg.headers } : {}),
        });
      }),
    });
  }
  group.addEndpoint("direct", {
    subject: `*.${clusterId}.${coordinatorId}`,
    metadata: {
      description: several
        ? `list, get or stats answered by ${coordinatorId} itself, for the partitions it leads (not-leader if none)`
        : `list, get or stats answered by ${coordinatorId} itself (not-leader unless it leads)`,
    },
    handler: guarded("direct", (msg) => {
      const operation = msg.subject.split(".")[2] as QueryOperation;
      if (!(QUERY_OPERATIONS as readonly string[]).includes(operation)) {
        return fail(msg, QUERY_ERRORS.badRequest, `unknown operation ${JSON.stringify(operation)}; use ${QUERY_OPERATIONS.join(", ")}`);
      }
      if (several) return partitioned[operation](msg, false);
      if (source.leads()) return answer(operation, msg);
      notLeading(msg);
    }),
  });
  void service.stopped.then((err) => {
    if (!err) return;
    // Closing the connection ends the service's subscriptions, which it reports as an error:
    // that is the process leaving (or a demo crash), not a fault of the service.
    if (nc.isClosed()) log.debug("the query service stopped with its connection", { error: describeError(err) });
    else log.warn("the query service stopped with an error", { error: describeError(err) });
  });
  const id = service.info().id;
  log.info("serving the query service", { service: QUERY_SERVICE_NAME, serviceId: id, subject: querySubjects.shared("stats", clusterId) });
  return {
    id,
    stop: async () => {
      if (service.isStopped) return;
      try {
        await service.stop();
      } catch (err) {
        log.debug("stopping the query service failed", { error: describeError(err) });
      }
    },
  };
}
