/**
 * Integration test helpers: coordinator processes started through the built CLI, and an
 * observer that records what they publish, with the time each message arrived. Every
 * process started here is killed when the test process exits, whatever happens.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  parseElectionReport,
  parseHeartbeat,
  WireFormatError,
  subjects,
  type ElectionReport,
  type Heartbeat,
} from "../src/protocol/election.js";

export const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

/** Polls `check` every 25 ms until it returns a value other than undefined/false. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export class CoordinatorProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;

  constructor(
    readonly id: string,
    readonly child: ChildProcess,
  ) {
    live.add(child);
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line.trim()) this.lines.push(line);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) =>
      child.once("exit", (code) => {
        live.delete(child);
        this.exitCode = code;
        resolve(code);
      }),
    );
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** The JSON log records this process wrote. */
  logs(): Record<string, unknown>[] {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  /** Stops it (SIGKILL unless it already exited); safe to call twice. */
  async kill(): Promise<void> {
    if (this.running) {
      this.child.kill("SIGCONT");
      this.child.kill("SIGKILL");
    }
    await this.exited;
  }
}

export interface SpawnOptions {
  urls: string[];
  clusterId: string;
  id: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/** Starts the built CLI with `args` (and extra environment) as a long-running process. */
export function spawnCli(id: string, args: string[], env: NodeJS.ProcessEnv = {}): CoordinatorProcess {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` before the integration tests`);
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  return new CoordinatorProcess(id, child);
}

/** Starts `presence-coordinator run` from dist/ with JSON logs. */
export function spawnCoordinator(options: SpawnOptions): CoordinatorProcess {
  return spawnCli(
    options.id,
    [
      "run",
      "--nats-url",
      options.urls.join(","),
      "--cluster-id",
      options.clusterId,
      "--coordinator-id",
      options.id,
      "--log-format",
      "json",
      ...(options.args ?? []),
    ],
    options.env,
  );
}

/** Runs the CLI to completion with the given arguments. */
export async function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  live.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  // Past the timeout, SIGTERM first: `dev` then stops the nats-server it started (in a
  // process group of its own, which a SIGKILL of the CLI would leave running).
  let killTimer: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    child.kill("SIGTERM");
    killTimer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  }, options.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  clearTimeout(killTimer);
  live.delete(child);
  return { code, stdout, stderr, ms: performance.now() - started };
}

export interface Seen<T> {
  at: number;
  msg: T;
}

/** Records every heartbeat and election report of a cluster, from its own connection. */
export class Observer {
  readonly heartbeats: Seen<Heartbeat>[] = [];
  readonly reports: Seen<ElectionReport>[] = [];

  private constructor(readonly nc: NatsConnection) {}

  static async start(urls: string[], clusterId: string): Promise<Observer> {
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const o = new Observer(nc);
    nc.subscribe(subjects.heartbeat(clusterId), {
      callback: (_err, m) => {
        let msg: Heartbeat;
        try {
          msg = parseHeartbeat(m.data);
        } catch (err) {
          if (err instanceof WireFormatError) return; // garbage a test published on purpose
          throw err;
        }
        o.heartbeats.push({ at: performance.now(), msg });
      },
    });
    nc.subscribe(subjects.electionReport(clusterId), {
      callback: (_err, m) => {
        o.reports.push({ at: performance.now(), msg: parseElectionReport(m.data) });
      },
    });
    await nc.flush();
    return o;
  }

  /** The leader as the latest non-resigning heartbeat names it. */
  currentLeader(): Heartbeat | undefined {
    for (let i = this.heartbeats.length - 1; i >= 0; i--) {
      const hb = this.heartbeats[i]!.msg;
      if (!hb.resigning) return hb;
    }
    return undefined;
  }

  /** Waits for a heartbeat (seen after `since`) that satisfies `match`. */
  waitForHeartbeat(what: string, match: (hb: Heartbeat) => boolean, timeoutMs: number, since = 0) {
    return waitFor(what, () => this.heartbeats.find((s) => s.at >= since && match(s.msg)), timeoutMs);
  }

  waitForReport(what: string, match: (r: ElectionReport) => boolean, timeoutMs: number, since = 0) {
    return waitFor(what, () => this.reports.find((s) => s.at >= since && match(s.msg)), timeoutMs);
  }

  heartbeatsSince(since: number): Heartbeat[] {
    return this.heartbeats.filter((s) => s.at >= since).map((s) => s.msg);
  }

  reportsSince(since: number): ElectionReport[] {
    return this.reports.filter((s) => s.at >= since).map((s) => s.msg);
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}
