/**
 * Floods on the registration subject, against a real nats-server and a leader and a
 * follower started through the built CLI, while existing clients must stay monitored.
 * Run by `npm run flood` (bench/flood.ts: all of them, figures in
 * `bench/results/flood-<date>.json`) and by the test suite (test/integration/hardening.test.ts),
 * with the same sizes.
 *
 *   - storm: 10,000 registrations a second for 10 s, every one acknowledged by JetStream:
 *     500 clients registering again and again (a fleet re-registering after a network
 *     blip), each with a rising sequence number in its metadata. Nothing valid is lost
 *     when, for every client, the leader ends up with its last registration.
 *   - new-subjects: 10,000 registrations a second for 10 s of new subjects, past
 *     `--max-clients 3000`: the leader takes clients up to the limit and refuses the rest
 *     with reason max-clients, counted in the metric, logged a few times, not per message.
 *   - duplicates: 1,000 registrations of one subject at once: one client, its last
 *     metadata, a NodePresent per registration.
 *   - garbage: 100 MB on the registration subject: 1,600 messages of 64 KiB of random
 *     bytes and 10,000 small malformed JSON documents, with 100 valid registrations among
 *     them, which must all be monitored; and 10 messages of 256 KiB, which the stream refuses.
 *
 * In every flood the 200 clients registered before it must not be reported suspect or
 * dead, the leader must not change, and its resident memory must stay bounded.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { parseHeartbeat, subjects } from "../src/protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS, type Report } from "../src/protocol/presence.js";
import { NatsServer } from "../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "./coordinators.js";
import { Helper, rssBytes } from "./processes.js";
import { control, SimulatedClients } from "./client-sim.js";

export const FLOOD_KINDS = ["storm", "new-subjects", "duplicates", "garbage"] as const;
export type FloodKind = (typeof FLOOD_KINDS)[number];

/** Clients registered and answering before the flood starts. */
const EXISTING = 200;
const RATE_PER_S = 10_000;
const RATE_SECONDS = 10;
const STORM_CLIENTS = 500;
const MAX_CLIENTS = 3000;
const DUPLICATES = 1000;
const GARBAGE_LARGE = 1600;
const GARBAGE_LARGE_BYTES = 64 * 1024;
const GARBAGE_SMALL = 10_000;
const GARBAGE_VALID = 100;
/** Messages of 256 KiB (under the server's max_payload), over the stream's message size limit. */
const OVERSIZE = 10;
/** JetStream publishes awaiting their acknowledgement at once. */
const PUBLISH_WINDOW = 2000;

export interface FloodResult {
  kind: FloodKind;
  /** Messages published on the registration subject, and over how long. */
  messages: number;
  bytes: number;
  publishSeconds: number;
  ratePerSecond: number;
  /** From the first message until the leader had handled the last. */
  drainSeconds: number;
  /** Existing clients reported suspect or dead during or after the flood (must be none). */
  existingSuspect: string[];
  existingDead: string[];
  /** Valid, acknowledged registrations whose last state the leader does not hold (must be none). */
  lost: string[];
  /** Registrations the leader refused, by reason, from its metrics. */
  refused: Record<string, number>;
  /** Warning lines the leader logged during the flood. */
  warningLines: number;
  /** Distinct leader epochs seen (must be 1). */
  leaderEpochs: number;
  leaderRssBeforeMB: number;
  leaderRssPeakMB: number;
  /** The longest event-loop delay the leader's metrics showed during the flood. */
  leaderEventLoopDelayMaxMs: number;
  notes: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** Sum of a counter's series whose labels include `label` (e.g. reason="not-json"). */
function counter(text: string, name: string, label: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(label)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Publishes through JetStream with at most PUBLISH_WINDOW unacknowledged; resolves once all are acknowledged. */
class Publisher {
  private readonly inFlight = new Set<Promise<void>>();
  readonly failures: string[] = [];
  messages = 0;
  bytes = 0;
  private readonly js;
  constructor(nc: NatsConnection) {
    this.js = jetstream(nc, { timeout: 30_000 });
  }

  async publish(subject: string, payload: string | Uint8Array, onAck?: () => void): Promise<void> {
    while (this.inFlight.size >= PUBLISH_WINDOW) await Promise.race(this.inFlight);
    this.messages += 1;
    this.bytes += typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    const p: Promise<void> = this.js
      .publish(subject, payload)
      .then(
        () => onAck?.(),
        (err: unknown) => void this.failures.push(String(err)),
      )
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async settled(): Promise<void> {
    await Promise.all(this.inFlight);
  }
}

/**
 * The leader's /metrics text. A scrape that fails at the transport (a keep-alive socket the
 * server closed just as it was reused: likelier while this process is busy publishing a
 * flood) is tried again, twice; when it still fails, the error says whether the leader had
 * exited, and why the scrape failed.
 */
async function scrapeLeader(url: string, leader: ChildProcess): Promise<string> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await (await fetch(url)).text();
    } catch (err) {
      last = err;
      await sleep(200);
    }
  }
  const cause = last instanceof Error && last.cause instanceof Error ? `: ${last.cause.message}` : "";
  const exited =
    leader.exitCode !== null || leader.signalCode !== null
      ? `; the leader exited (${leader.exitCode ?? leader.signalCode})`
      : "; the leader is running";
  throw new Error(`cannot scrape the leader's metrics at ${url}${cause}${exited}`, { cause: last });
}

/** Calls `send(i)` for i in [0, total) at `perSecond`, in 10 ms slices; resolves when all were sent. */
async function paced(total: number, perSecond: number, send: (i: number) => Promise<void>): Promise<void> {
  const started = performance.now();
  for (let i = 0; i < total; ) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * perSecond) + 1);
    for (; i < due; i++) await send(i);
    await sleep(10);
  }
}

export async function runFlood(kind: FloodKind, log: (line: string) => void = () => undefined): Promise<FloodResult> {
  const cluster = `flood${process.pid}${kind.replace(/-/g, "")}`;
  const server = await NatsServer.start();
  const coordinators: CoordinatorProcess[] = [];
  const connections: NatsConnection[] = [];
  const helpers: Helper[] = [];
  let rssTimer: NodeJS.Timeout | undefined;
  try {
    const extra = kind === "new-subjects" ? ["--max-clients", String(MAX_CLIENTS)] : [];
    for (const id of ["fa", "fb"]) {
      coordinators.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id, args: ["--metrics-port", "0", ...extra] }));
    }
    // The clients answer from processes of their own (harness/client-sim.ts), so that this
    // one's work (publishing the flood, reading every report) never delays an answer; the
    // observer and the flood have a connection each.
    for (const prefix of ["live", "flood"])
      helpers.push(Helper.start(new URL("./client-sim.ts", import.meta.url), [server.url, cluster, prefix]));
    await Promise.all(helpers.map((h) => h.ready));
    const observer = await connect({ servers: server.url, name: "flood observer" });
    const flooder = await connect({ servers: server.url, name: "flooder" });
    connections.push(observer, flooder);

    const epochs = new Set<number>();
    const byType = new Map<string, Map<string, number>>();
    const lastPresent = new Map<string, Report>();
    observer.subscribe(subjects.heartbeat(cluster), {
      callback: (_e, m) => void epochs.add(parseHeartbeat(m.data).epoch),
    });
    // Reports are kept as they come and decoded when they are looked at: decoding 10,000
    // a second would slow down publishing the flood from this same process.
    let undecoded: { data: Uint8Array; encoding: string | undefined }[] = [];
    observer.subscribe(presenceSubjects.report(cluster), {
      callback: (_e, m) => void undecoded.push({ data: m.data, encoding: m.headers?.get(REPORT_HEADERS.encoding) }),
    });
    const digest = () => {
      const batch = undecoded;
      undecoded = [];
      for (const { data, encoding } of batch) {
        const r = decodeReport(data, encoding);
        let counts = byType.get(r.type);
        if (counts === undefined) {
          counts = new Map();
          byType.set(r.type, counts);
        }
        counts.set(r.clientSubject, (counts.get(r.clientSubject) ?? 0) + 1);
        if (r.type === "NodePresent") lastPresent.set(r.clientSubject, r);
      }
    };
    await observer.flush();
    await waitFor("a leader", () => epochs.size > 0, 20_000);
    const leader = await waitFor(
      "the leader's first report",
      () => coordinators.find((c) => c.logs().some((l) => l.message === "became leader")),
      10_000,
    );
    const metricsUrl = await waitFor(
      "the leader's metrics URL",
      () => leader.logs().find((l) => l.message === "metrics listening")?.url as string | undefined,
      10_000,
    );
    const leaderPid = leader.child.pid!;

    await control(observer, "live", { op: "register", from: 0, to: EXISTING });
    await waitFor(
      `NodePresent for the ${EXISTING} existing clients`,
      () => {
        digest();
        return (byType.get("NodePresent")?.size ?? 0) >= EXISTING;
      },
      30_000,
    );
    await sleep(2000); // a few pings each, before the flood
    const rssBefore = rssBytes(leaderPid);
    let rssPeak = rssBefore;
    let loopDelayMaxMs = 0;
    let ticks = 0;
    rssTimer = setInterval(() => {
      try {
        rssPeak = Math.max(rssPeak, rssBytes(leaderPid));
      } catch {
        // the leader exited: the checks below say so
      }
      if (++ticks % 10 === 0) {
        void fetch(metricsUrl)
          .then((r) => r.text())
          .then((text) => {
            const m = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text);
            if (m) loopDelayMaxMs = Math.max(loopDelayMaxMs, Number(m[1]) * 1000);
          })
          .catch(() => undefined);
      }
    }, 100);
    const warningsBefore = leader.logs().filter((l) => l.level === "warn").length;

    const register = presenceSubjects.register(cluster);
    const publisher = new Publisher(flooder);
    const notes: string[] = [];
    /** What the leader must end up holding: subject -> the `seq` of its last acknowledged registration. */
    const expected = new Map<string, number>();
    const started = performance.now();
    log(`${kind}: flooding`);
    switch (kind) {
      case "storm": {
        const total = RATE_PER_S * RATE_SECONDS;
        await paced(total, RATE_PER_S, (i) => {
          const subject = SimulatedClients.subject("flood", i % STORM_CLIENTS);
          // One subject's registrations are published in order; its last acknowledged one must win.
          return publisher.publish(register, JSON.stringify({ myPresenceSubject: subject, seq: i }), () => {
            if ((expected.get(subject) ?? -1) < i) expected.set(subject, i);
          });
        });
        break;
      }
      case "new-subjects": {
        const total = RATE_PER_S * RATE_SECONDS;
        await paced(total, RATE_PER_S, (i) =>
          publisher.publish(register, JSON.stringify({ myPresenceSubject: SimulatedClients.subject("flood", i), seq: i })),
        );
        break;
      }
      case "duplicates": {
        const subject = SimulatedClients.subject("flood", 0);
        for (let i = 0; i < DUPLICATES; i++) {
          await publisher.publish(register, JSON.stringify({ myPresenceSubject: subject, seq: i }), () => {
            if ((expected.get(subject) ?? -1) < i) expected.set(subject, i);
          });
        }
        break;
      }
      case "garbage": {
        const large = GARBAGE_LARGE;
        const small = GARBAGE_SMALL;
        const every = Math.floor((large + small) / GARBAGE_VALID);
        let valid = 0;
        for (let i = 0; i < large + small; i++) {
          // Bytes that are not JSON (0xff never starts a UTF-8 character), or JSON that is not a registration.
          const payload =
            i < large
              ? Buffer.concat([Buffer.from([0xff]), randomBytes(GARBAGE_LARGE_BYTES - 1)])
              : `{"myPresenceSubject": ${i % 2 === 0 ? "17" : `"svc.>${i}"`}}`;
          await publisher.publish(register, payload);
          if (i % every === 0 && valid < GARBAGE_VALID) {
            const subject = SimulatedClients.subject("flood", valid++);
            await publisher.publish(register, JSON.stringify({ myPresenceSubject: subject, seq: 0 }), () => expected.set(subject, 0));
          }
        }
        await publisher.settled();
        // Bigger than a registration may be: the stream refuses them, so no leader ever reads them.
        let refusedByStream = 0;
        for (let i = 0; i < OVERSIZE; i++) {
          await jetstream(flooder)
            .publish(register, randomBytes(256 * 1024))
            .catch(() => (refusedByStream += 1));
        }
        notes.push(`${refusedByStream} of ${OVERSIZE} messages of 256 KiB refused by the stream (max_msg_size)`);
        if (refusedByStream !== OVERSIZE) notes.push(`expected all ${OVERSIZE} oversize messages refused by the stream`);
        break;
      }
    }
    await publisher.settled();
    const publishSeconds = (performance.now() - started) / 1000;
    if (publisher.failures.length > 0) notes.push(`${publisher.failures.length} publishes not acknowledged: ${publisher.failures[0]}`);
    log(`${kind}: ${publisher.messages} messages (${mb(publisher.bytes)} MB) in ${publishSeconds.toFixed(1)} s; waiting for the leader`);

    // Drained when the leader holds what it must.
    const refusedNow = async () => {
      const text = await scrapeLeader(metricsUrl, leader.child);
      const out: Record<string, number> = {};
      for (const reason of ["max-clients", "not-json", "not-an-object", "missing-subject", "wildcard", "too-large", "store-failed"]) {
        const n = counter(text, "presence_registration_errors_total", `reason="${reason}"`);
        if (n > 0) out[reason] = n;
      }
      return out;
    };
    const missing = () => [...expected].filter(([s, seq]) => lastPresent.get(s)?.metadata.seq !== seq).map(([s]) => s);
    let refused: Record<string, number> = {};
    const drainDeadline = performance.now() + 180_000;
    for (;;) {
      digest();
      refused = await refusedNow();
      const refusedTotal = Object.values(refused).reduce((a, b) => a + b, 0);
      const done =
        kind === "new-subjects"
          ? (byType.get("NodePresent")?.size ?? 0) - EXISTING + refusedTotal >= publisher.messages
          : kind === "garbage"
            ? missing().length === 0 && refusedTotal >= GARBAGE_LARGE + GARBAGE_SMALL
            : missing().length === 0;
      if (done) break;
      if (performance.now() > drainDeadline) {
        notes.push("the leader had not handled every message 180 s after the flood began");
        break;
      }
      await sleep(250);
    }
    const drainSeconds = (performance.now() - started) / 1000;
    log(`${kind}: handled after ${drainSeconds.toFixed(1)} s; watching the clients for a dead timeout`);
    await sleep(6000); // a dead timeout and more: a client neglected during the flood would be reported dead by now
    clearInterval(rssTimer);
    rssTimer = undefined;
    refused = await refusedNow();
    digest();

    const live = (s: string) => s.startsWith("live.");
    const reported = (type: string) => [...(byType.get(type)?.keys() ?? [])];
    if (kind === "new-subjects") {
      const accepted = reported("NodePresent").filter((s) => !live(s)).length;
      notes.push(`${accepted} new subjects accepted, ${refused["max-clients"] ?? 0} refused past --max-clients ${MAX_CLIENTS}`);
      if (accepted !== MAX_CLIENTS - EXISTING) notes.push(`expected exactly ${MAX_CLIENTS - EXISTING} accepted`);
    }
    if (kind === "duplicates") {
      notes.push(
        `${byType.get("NodePresent")?.get(SimulatedClients.subject("flood", 0)) ?? 0} NodePresent reports for the duplicated subject`,
      );
    }
    const result: FloodResult = {
      kind,
      messages: publisher.messages,
      bytes: publisher.bytes,
      publishSeconds: Math.round(publishSeconds * 10) / 10,
      ratePerSecond: Math.round(publisher.messages / publishSeconds),
      drainSeconds: Math.round(drainSeconds * 10) / 10,
      existingSuspect: reported("NodeSuspect").filter(live),
      existingDead: reported("NodeDead").filter(live),
      lost: missing(),
      refused,
      warningLines: leader.logs().filter((l) => l.level === "warn").length - warningsBefore,
      leaderEpochs: epochs.size,
      leaderRssBeforeMB: mb(rssBefore),
      leaderRssPeakMB: mb(rssPeak),
      leaderEventLoopDelayMaxMs: Math.round(loopDelayMaxMs),
      notes,
    };
    // Flood clients that were accepted and answer are never reported dead either.
    const floodDead = reported("NodeDead").filter((s) => !live(s));
    if (floodDead.length > 0) notes.push(`${floodDead.length} flood clients reported dead, e.g. ${floodDead[0]}`);
    return result;
  } finally {
    if (rssTimer) clearInterval(rssTimer);
    await Promise.all(connections.map((c) => c.close().catch(() => undefined)));
    await Promise.all(coordinators.map((c) => c.kill()));
    await Promise.all(helpers.map((h) => h.stop()));
    await server.stop();
  }
}

/** The verdict on one flood: the problems found (none: it held). */
export function floodProblems(r: FloodResult): string[] {
  const problems: string[] = [];
  if (r.existingDead.length > 0) problems.push(`${r.existingDead.length} existing clients reported dead`);
  if (r.existingSuspect.length > 0) problems.push(`${r.existingSuspect.length} existing clients reported suspect`);
  if (r.lost.length > 0) problems.push(`${r.lost.length} valid registrations lost, e.g. ${r.lost[0]}`);
  if (r.leaderEpochs !== 1) problems.push(`${r.leaderEpochs} leader epochs`);
  if (r.leaderRssPeakMB - r.leaderRssBeforeMB > 200)
    problems.push(`leader memory grew by ${Math.round(r.leaderRssPeakMB - r.leaderRssBeforeMB)} MB`);
  if (r.warningLines > 50) problems.push(`${r.warningLines} warning lines`);
  for (const n of r.notes) if (/expected|not handled|dead|not acknowledged/.test(n)) problems.push(n);
  return problems;
}
