/**
 * Helpers of the presence integration tests: waiting for a coordinator's registration
 * stream, recording every presence report of a cluster with its arrival time, and a client
 * written against the plain NATS client.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type ConnectionOptions, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decodeReport, REPORT_HEADERS, type Report } from "../src/protocol/presence.js";

/** Waits until a coordinator has created the cluster's registration stream (registrations before it are lost). */
export async function waitForStream(nc: NatsConnection, cluster: string, timeoutMs = 10_000): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      await jsm.streams.info(`presence-registrations-${cluster}`);
      return;
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Records every presence report of `cluster` with its arrival time, on a connection of its own that reconnects. */
export async function reportRecorder(url: string, cluster: string, options: Partial<ConnectionOptions> = {}) {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100, ...options });
  const seen: { at: number; report: Report; encoding: string | undefined }[] = [];
  nc.subscribe(`presence.report.${cluster}`, {
    callback: (_e, m) => {
      const encoding = m.headers?.get(REPORT_HEADERS.encoding);
      seen.push({ at: performance.now(), report: decodeReport(m.data, encoding), encoding });
    },
  });
  await nc.flush();
  return {
    nc,
    seen,
    of: (subject: string) => seen.filter((s) => s.report.clientSubject === subject),
    types: (subject: string, since = 0) =>
      seen.filter((s) => s.report.clientSubject === subject && s.at >= since).map((s) => s.report.type),
  };
}

/** Polls the asynchronous `check` every 50 ms until it returns a value other than undefined/false. */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A presence client as an application would write it with the plain NATS client. */
export class RawClient {
  private sub: Subscription | null = null;
  constructor(
    readonly nc: NatsConnection,
    readonly cluster: string,
    readonly subject: string,
  ) {}
  answer(): void {
    this.sub = this.nc.subscribe(this.subject, {
      callback: (_e, m) => {
        m.respond("pong");
      },
    });
  }
  register(extra: Record<string, unknown> = {}): void {
    this.nc.publish(`presence.register.${this.cluster}`, JSON.stringify({ myPresenceSubject: this.subject, ...extra }));
  }
  unregister(): void {
    this.nc.publish(`presence.unregister.${this.cluster}`, JSON.stringify({ myPresenceSubject: this.subject }));
  }
  silence(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }
}
