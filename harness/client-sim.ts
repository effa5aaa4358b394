/**
 * Simulated presence clients, cheap enough to stand in for 50,000 real ones: one wildcard
 * subscription answers the pings of every subject under a prefix, unless the subject has
 * been silenced. Used in-process (`SimulatedClients`) by the chaos run, and as a separate
 * process (`node --import tsx harness/client-sim.ts <url> <cluster> <prefix>`) by the
 * benchmark, so that its CPU is not counted as the coordinator's.
 *
 * The process is steered over NATS: requests on `bench.sim.<prefix>` with a JSON body
 * `{op, ...}` (see `SimControl`), answered with JSON.
 */
import { connect, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { presenceSubjects } from "../src/protocol/presence.js";

export interface PingStats {
  /** Pings answered since the last reset. */
  answered: number;
  /** Pings received for silenced subjects (not answered). */
  ignored: number;
  /** Intervals between two pings of one subject, in ms (a sample: at most `sampleLimit`). */
  intervals: number[];
  /** ms since the last reset. */
  elapsedMs: number;
  /** CPU this process spent since the last reset, in ms (user + system). */
  cpuMs: number;
}

export class SimulatedClients {
  private readonly silenced = new Set<string>();
  /** Subjects unregistered: a client that has left answers nothing, until it registers again. */
  private readonly gone = new Set<string>();
  /** Subjects that must never be pinged (refused registrations), and the pings that came anyway. */
  private readonly traps = new Set<string>();
  private readonly trapSubs: Subscription[] = [];
  private readonly trappedPings: { at: number; subject: string }[] = [];
  private readonly lastPing = new Map<string, number>();
  private readonly sub: Subscription;
  private answered = 0;
  private ignored = 0;
  private intervals: number[] = [];
  private since = performance.now();
  private cpuSince = process.cpuUsage();
  /** Intervals kept per reset: enough for good percentiles without growing with N. */
  private readonly sampleLimit = 200_000;

  constructor(
    readonly nc: NatsConnection,
    readonly clusterId: string,
    /** Every simulated subject is `<prefix>.<n>`. */
    readonly prefix: string,
  ) {
    this.sub = nc.subscribe(`${prefix}.>`, { callback: (_e, m) => this.onPing(m) });
  }

  static subject(prefix: string, n: number): string {
    return `${prefix}.${n}`;
  }

  private onPing(m: Msg): void {
    const now = performance.now();
    const subject = m.subject;
    const last = this.lastPing.get(subject);
    if (last !== undefined && this.intervals.length < this.sampleLimit) this.intervals.push(now - last);
    this.lastPing.set(subject, now);
    if (this.traps.has(subject)) {
      this.trappedPings.push({ at: now, subject });
      return;
    }
    if (this.silenced.has(subject) || this.gone.has(subject)) {
      this.ignored += 1;
      return;
    }
    this.answered += 1;
    if (m.reply) m.respond();
  }

  /** Publishes registrations for `<prefix>.<from>` .. `<prefix>.<to - 1>`, flushing every `batch`. */
  async register(from: number, to: number, batch = 2000, metadata: Record<string, unknown> = {}): Promise<void> {
    const subject = presenceSubjects.register(this.clusterId);
    for (let n = from; n < to; n++) {
      this.gone.delete(SimulatedClients.subject(this.prefix, n));
      this.nc.publish(subject, JSON.stringify({ myPresenceSubject: SimulatedClients.subject(this.prefix, n), ...metadata }));
      if ((n - from + 1) % batch === 0) await this.nc.flush();
    }
    await this.nc.flush();
  }

  /** Publishes unregistrations; from then on these clients answer no ping until they register again. */
  async unregister(subjects: string[]): Promise<void> {
    const subject = presenceSubjects.unregister(this.clusterId);
    this.leave(subjects);
    for (const s of subjects) this.nc.publish(subject, JSON.stringify({ myPresenceSubject: s }));
    await this.nc.flush();
  }

  /** These clients have left (unregistered by other means): they answer no ping until `rejoin`. */
  leave(subjects: string[]): void {
    for (const s of subjects) this.gone.add(s);
  }

  /** These clients answer again (they are about to register again). */
  rejoin(subjects: string[]): void {
    for (const s of subjects) this.gone.delete(s);
  }

  /**
   * Watches subjects that must never be pinged (those of refused registrations): a ping on
   * one is counted, never answered. Subjects under the prefix arrive on the wildcard
   * subscription; others get a subscription of their own.
   */
  trap(subjects: string[]): void {
    for (const s of subjects) {
      if (this.traps.has(s)) continue;
      this.traps.add(s);
      if (!s.startsWith(`${this.prefix}.`)) {
        this.trapSubs.push(
          this.nc.subscribe(s, { callback: (_e, m) => void this.trappedPings.push({ at: performance.now(), subject: m.subject }) }),
        );
      }
    }
  }

  /** Pings that arrived on trapped subjects (performance.now of this process). */
  trapped(): readonly { at: number; subject: string }[] {
    return this.trappedPings;
  }

  /** Publishes raw bytes on the registration subject (malformed registrations). */
  async publishRaw(payload: string | Uint8Array): Promise<void> {
    this.nc.publish(presenceSubjects.register(this.clusterId), payload);
    await this.nc.flush();
  }

  silence(subjects: string[]): void {
    for (const s of subjects) this.silenced.add(s);
  }

  revive(subjects: string[]): void {
    for (const s of subjects) this.silenced.delete(s);
  }

  isSilenced(subject: string): boolean {
    return this.silenced.has(subject);
  }

  /** Time of the last ping of a subject (performance.now of this process), if any. */
  lastPingAt(subject: string): number | undefined {
    return this.lastPing.get(subject);
  }

  stats(reset = false): PingStats {
    const cpu = process.cpuUsage(this.cpuSince);
    const stats: PingStats = {
      answered: this.answered,
      ignored: this.ignored,
      intervals: this.intervals,
      elapsedMs: performance.now() - this.since,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
    if (reset) {
      this.answered = 0;
      this.ignored = 0;
      this.intervals = [];
      this.since = performance.now();
      this.cpuSince = process.cpuUsage();
    }
    return stats;
  }

  stop(): void {
    this.sub.unsubscribe();
    for (const sub of this.trapSubs) sub.unsubscribe();
  }
}

/** What the simulator process accepts on `bench.sim.<prefix>`. */
export type SimControl =
  | { op: "register"; from: number; to: number }
  | { op: "silence" | "revive"; from: number; to: number }
  | { op: "stats"; reset?: boolean }
  | { op: "quit" };

/** The answer to `silence`: when (ms since the Unix epoch) each silenced client last answered, null if never. */
export interface SilenceAnswer {
  ok: true;
  at: number;
  lastReplyAt: (number | null)[];
}

export const controlSubject = (prefix: string) => `bench.sim.${prefix}`;

/** Sends one control request to a simulator process and returns its JSON answer. */
export async function control<T = unknown>(nc: NatsConnection, prefix: string, op: SimControl, timeoutMs = 60_000): Promise<T> {
  const reply = await nc.request(controlSubject(prefix), JSON.stringify(op), { timeout: timeoutMs });
  return JSON.parse(reply.string()) as T;
}

/** Percentiles of a sample (sorted copy), rounded to 0.1 ms. */
export function percentiles(sample: number[], qs: number[]): number[] {
  if (sample.length === 0) return qs.map(() => Number.NaN);
  const sorted = Float64Array.from(sample).sort();
  return qs.map((q) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 10) / 10);
}

async function main(): Promise<void> {
  const [url, clusterId, prefix] = process.argv.slice(2);
  if (url === undefined || clusterId === undefined || prefix === undefined) {
    process.stderr.write("usage: client-sim.ts <nats-url> <cluster-id> <subject-prefix>\n");
    process.exit(2);
  }
  const nc = await connect({ servers: url, name: `client-sim ${prefix}`, maxReconnectAttempts: -1 });
  const sim = new SimulatedClients(nc, clusterId, prefix);
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => SimulatedClients.subject(prefix, from + i));
  nc.subscribe(controlSubject(prefix), {
    callback: (_e, m) => {
      const op = JSON.parse(m.string()) as SimControl;
      const answer = (body: unknown) => m.respond(JSON.stringify(body));
      switch (op.op) {
        case "register":
          void sim.register(op.from, op.to).then(() => answer({ ok: true }));
          return;
        case "silence": {
          const subjects = range(op.from, op.to);
          const lastReplyAt = subjects.map((s) => {
            const at = sim.lastPingAt(s);
            return at === undefined || sim.isSilenced(s) ? null : performance.timeOrigin + at;
          });
          sim.silence(subjects);
          answer({ ok: true, at: Date.now(), lastReplyAt } satisfies SilenceAnswer);
          return;
        }
        case "revive":
          sim.revive(range(op.from, op.to));
          answer({ ok: true });
          return;
        case "stats": {
          const s = sim.stats(op.reset === true);
          const [p50, p99] = percentiles(s.intervals, [0.5, 0.99]);
          answer({
            answered: s.answered,
            ignored: s.ignored,
            elapsedMs: s.elapsedMs,
            cpuMs: s.cpuMs,
            intervalP50Ms: p50,
            intervalP99Ms: p99,
            intervals: s.intervals.length,
          });
          return;
        }
        case "quit":
          answer({ ok: true });
          void nc.drain().then(() => process.exit(0));
          return;
      }
    },
  });
  await nc.flush();
  process.stdout.write("ready\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`client-sim: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
