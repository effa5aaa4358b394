/**
 * The coordinator's NATS connection: several seed URLs, endless reconnects, a bounded first
 * connect with a clear error, status changes logged, and the server checks made at startup
 * (JetStream present; the KV compare-and-swap caveat of old 2.9 servers).
 */
import { readFileSync } from "node:fs";
import {
  AuthorizationError,
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  UserAuthenticationExpiredError,
  type ConnectionOptions,
  type NatsConnection,
} from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import semver from "semver";
import { authMethod, type NatsSecurity } from "../config/security.js";
import { redactNatsUrl, withoutCredentials } from "./url.js";
import { describeError, type Logger } from "../observe/logger.js";

/** The coordinator could not get a usable NATS connection. */
export class NatsConnectError extends Error {
  override readonly name = "NatsConnectError";
}

export interface ConnectOptions {
  /** Seed URLs; any userinfo in them is dropped (credentials come from `security`). */
  urls: string[];
  name: string;
  connectTimeoutMs: number;
  logger: Logger;
  /** Told of every change of the connection's status (disconnect, reconnect, ...), e.g. for `run --record`. */
  onStatus?: (status: string, server?: string) => void;
  /** Authentication and TLS (`--creds`, `--user`, `--tls-ca`, ...); validated beforehand with validateSecurity(). */
  security?: NatsSecurity;
}

/**
 * The connection options for `security`: the authenticator and the TLS files. Creds and
 * seed files are read again on every (re)connect, so a rotated file is picked up without
 * a restart. Used by every command that connects.
 */
export function securityOptions(security: NatsSecurity = {}): Partial<ConnectionOptions> {
  const out: Partial<ConnectionOptions> = {};
  if (security.credsFile !== undefined) {
    const file = security.credsFile;
    out.authenticator = credsAuthenticator(() => readFileSync(file));
  } else if (security.nkeyFile !== undefined) {
    const file = security.nkeyFile;
    out.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(readFileSync(file, "utf8").trim()));
  } else if (security.user !== undefined) {
    out.user = security.user;
    if (security.password !== undefined) out.pass = security.password;
  } else if (security.token !== undefined) {
    out.token = security.token;
  }
  if (security.tlsCa !== undefined || security.tlsCert !== undefined) {
    out.tls = {
      ...(security.tlsCa !== undefined ? { caFile: security.tlsCa } : {}),
      ...(security.tlsCert !== undefined ? { certFile: security.tlsCert } : {}),
      ...(security.tlsKey !== undefined ? { keyFile: security.tlsKey } : {}),
    };
  }
  return out;
}

/**
 * The servers and the security options of a connection, for every command that connects.
 * The URLs lose their userinfo: the credentials are in `security`, and the client keeps the
 * URLs it is given as they are (`getServers()` shows them).
 */
export function connectionOptions(urls: readonly string[], security: NatsSecurity = {}): Partial<ConnectionOptions> {
  return { servers: withoutCredentials(urls), ...securityOptions(security) };
}

/**
 * The one-line error for a first connection that failed, with a hint at the flag to check
 * when the server refused the credentials or the TLS handshake failed. Holds no secret.
 */
export function connectFailure(urls: string[], err: unknown, security: NatsSecurity = {}): NatsConnectError {
  const method = authMethod(security);
  let detail = describeError(err);
  if (err instanceof AuthorizationError || err instanceof UserAuthenticationExpiredError || /authorization violation/i.test(detail)) {
    detail = method
      ? `authorization violation (the server refused the credentials: check ${method})`
      : "authorization violation (the server requires authentication: pass --user/--password, --token, --creds or --nkey)";
  } else if (/certificate|self[- ]signed|SSL|TLS/i.test(detail)) {
    detail = `TLS failed: ${detail} (check --tls-ca${security.tlsCert !== undefined ? ", --tls-cert and --tls-key" : ""})`;
  }
  return new NatsConnectError(`cannot connect to NATS at ${urls.map(redactNatsUrl).join(", ")}: ${detail}`, { cause: err });
}

/**
 * Connects to the first reachable seed and keeps reconnecting (to any seed or gossiped
 * server) for as long as the process runs. Fails with a NatsConnectError within about
 * `connectTimeoutMs` when no seed answers.
 */
export async function connectNats(options: ConnectOptions): Promise<NatsLink> {
  const { urls, logger } = options;
  let nc: NatsConnection;
  try {
    nc = await connect({
      name: options.name,
      timeout: options.connectTimeoutMs,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      // A half-open connection is noticed after about 3 unanswered pings.
      pingInterval: 2000,
      maxPingOut: 3,
      // Otherwise every request (a ping per client every interval) builds an Error with a
      // stack trace up front, for the case it times out: about a tenth of a leader's CPU.
      noAsyncTraces: true,
      ...connectionOptions(urls, options.security),
    });
  } catch (err) {
    throw connectFailure(urls, err, options.security);
  }
  logger.info("connected to NATS", { server: nc.getServer(), serverVersion: nc.info?.version ?? "unknown" });
  const link: NatsLink = { nc, connected: true, losses: 0 };
  void watchStatus(link, logger, options.onStatus);
  return link;
}

/** A NATS connection and whether it is connected right now (false while reconnecting). */
export interface NatsLink {
  readonly nc: NatsConnection;
  connected: boolean;
  /** Times the connection was lost (each disconnect): what was in flight then may never have arrived. */
  losses: number;
}

async function watchStatus(link: NatsLink, logger: Logger, onStatus?: ConnectOptions["onStatus"]): Promise<void> {
  for await (const s of link.nc.status()) {
    onStatus?.(s.type, "server" in s && typeof s.server === "string" ? s.server : undefined);
    switch (s.type) {
      case "disconnect":
        link.connected = false;
        link.losses += 1;
        logger.warn("disconnected from NATS; reconnecting", { server: s.server });
        break;
      case "reconnect":
        link.connected = true;
        logger.info("reconnected to NATS", { server: s.server });
        break;
      case "close":
        link.connected = false;
        logger.debug("NATS connection closed");
        break;
      case "error":
        logger.warn("NATS server reported an error", { error: describeError(s.error) });
        break;
      case "ldm":
        logger.info("NATS server entered lame duck mode; will move to another server", { server: s.server });
        break;
      case "staleConnection":
        logger.warn("NATS connection is stale; reconnecting");
        break;
      case "slowConsumer":
        logger.warn("slow consumer on a NATS subscription", { subject: s.sub.getSubject(), pending: s.pending });
        break;
      default:
        logger.debug("NATS status", { status: s.type });
    }
  }
}

/**
 * Confirms the server has JetStream, and warns when its version has the KV
 * compare-and-swap race on replicated buckets (nats-server issue 4320, fixed in 2.9.21).
 */
export async function checkServer(nc: NatsConnection, kvReplicas: number, logger: Logger): Promise<void> {
  try {
    await (await jetstreamManager(nc)).getAccountInfo();
  } catch (err) {
    throw new NatsConnectError(
      `JetStream is not available on the NATS server (${describeError(err)}); start nats-server with -js, or enable JetStream for this account`,
      { cause: err },
    );
  }
  const version = nc.info?.version ?? "";
  const parsed = semver.coerce(version);
  if (parsed !== null && semver.lt(parsed, "2.9.21")) {
    const message =
      "this nats-server is older than 2.9.21: KV compare-and-swap is not safe on replicated buckets there (nats-server issue 4320)";
    if (kvReplicas > 1) {
      logger.warn(`${message}; upgrade the servers before relying on --kv-replicas ${kvReplicas}`, { serverVersion: version });
    } else {
      logger.info(`${message}; this coordinator's buckets have one replica, which is not affected`, { serverVersion: version });
    }
  }
}
