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
 * The data is read from the client actors' snapshots; nothing here sends them an event.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import type { LeaseHolder } from "../../protocol/election.js";
import {
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
  /** The live clients of its monitor (empty unless it leads). */
  clients(): ClientInfo[];
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

  const fail = (msg: ServiceMsg, kind: (typeof QUERY_ERRORS)[keyof typeof QUERY_ERRORS], message: string) => {
    const leader = source.knownLeader;
    const body: QueryErrorBody = {
      error: kind.error,
      message,
      clusterId,
      coordinatorId,
      role: source.role,
      leader: leader?.coordinatorId ?? null,
      epoch: leader?.epoch ?? 0,
    };
    msg.respondError(kind.code, kind.error, json(body));
  };

  /** The leader's answer; only called while `source.leads()`. */
  const answer = (operation: QueryOperation, msg: ServiceMsg) => {
    const stamp = { clusterId, leader: coordinatorId, epoch: source.knownLeader?.epoch ?? 0 };
    try {
      switch (operation) {
        case "list": {
          const request = parseListRequest(msg.data);
          const clients = source.clients().filter((c) => request.state === undefined || c.state === request.state);
          const maxBytes = (nc.info?.max_payload ?? 1024 * 1024) - PAYLOAD_HEADROOM;
          // A page that does not fit in one message is cut (halved) until it does; nextOffset says where to go on.
          for (let limit = request.limit; ; limit = Math.max(1, Math.floor(limit / 2))) {
            const { page, nextOffset } = pageOf(clients, request.offset, limit);
            const body: ListResponse = { ...stamp, total: clients.length, offset: request.offset, nextOffset, clients: page };
            const data = json(body);
            if (data.byteLength <= maxBytes || limit === 1) return void msg.respond(data);
          }
        }
        case "get": {
          const { subject } = parseGetRequest(msg.data);
          const client = source.clients().find((c) => c.subject === subject);
          if (client === undefined) return fail(msg, QUERY_ERRORS.notFound, `no live client with subject ${JSON.stringify(subject)}`);
          const body: GetResponse = { ...stamp, client };
          return void msg.respond(json(body));
        }
        case "stats": {
          const clients = source.clients();
          const suspect = clients.filter((c) => c.state === "suspect").length;
          const body: StatsResponse = {
            ...stamp,
            coordinatorId,
            clients: { total: clients.length, alive: clients.length - suspect, suspect },
            uptimeMs: Date.now() - startedAtMs,
            startedAt: new Date(startedAtMs).toISOString(),
            version,
          };
          return void msg.respond(json(body));
        }
      }
    } catch (err) {
      if (err instanceof QueryRequestError) return fail(msg, QUERY_ERRORS.badRequest, err.message);
      throw err;
    }
  };

  const notLeading = (msg: ServiceMsg) => {
    const leader = source.knownLeader;
    if (leader === null || leader.coordinatorId === coordinatorId) {
      return fail(msg, QUERY_ERRORS.noLeader, `coordinator ${coordinatorId} knows of no leader of cluster ${clusterId} now; retry shortly`);
    }
    fail(msg, QUERY_ERRORS.notLeader, `coordinator ${coordinatorId} is not the leader; ask ${leader.coordinatorId}`);
  };

  const guarded = (what: string, handle: (msg: ServiceMsg) => void) => (err: Error | null, msg: ServiceMsg) => {
    if (err) {
      log.warn("query endpoint failed", { endpoint: what, error: describeError(err) });
      return;
    }
    try {
      handle(msg);
    } catch (e) {
      log.warn("could not answer a query", { endpoint: what, error: describeError(e) });
    }
  };

  const group = service.addGroup("presence.query");
  for (const operation of QUERY_OPERATIONS) {
    group.addEndpoint(operation, {
      subject: `${operation}.${clusterId}`,
      metadata: { description: `${operation} (any coordinator; forwarded to the leader)` },
      handler: guarded(operation, (msg) => {
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
    metadata: { description: `list, get or stats answered by ${coordinatorId} itself (not-leader unless it leads)` },
    handler: guarded("direct", (msg) => {
      const operation = msg.subject.split(".")[2] as QueryOperation;
      if (!(QUERY_OPERATIONS as readonly string[]).includes(operation)) {
        return fail(msg, QUERY_ERRORS.badRequest, `unknown operation ${JSON.stringify(operation)}; use ${QUERY_OPERATIONS.join(", ")}`);
      }
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
