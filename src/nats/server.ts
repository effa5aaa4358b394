/**
 * Starts real `nats-server` processes on 127.0.0.1 with free ports and temporary stores:
 * one JetStream server (the `dev` command's embedded server, and most tests), or a 3-node
 * JetStream cluster. Every process started here is stopped by `stop()`, and killed when
 * this process exits, whatever happens.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

/** Where Debian's `nats-server` package installs the binary. */
export const DEBIAN_NATS_SERVER = "/usr/sbin/nats-server";

export class NatsServerError extends Error {
  override readonly name = "NatsServerError";
}

/** Finds the binary: `NATS_SERVER_BIN`, then PATH, then Debian's install location. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.NATS_SERVER_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new NatsServerError(`NATS_SERVER_BIN is set to ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, "nats-server"))) return join(dir, "nats-server");
  }
  if (existsSync(DEBIAN_NATS_SERVER)) return DEBIAN_NATS_SERVER;
  throw new NatsServerError(
    "nats-server was not found (looked at NATS_SERVER_BIN, PATH and /usr/sbin). Install it with `sudo apt-get install -y nats-server`, or set NATS_SERVER_BIN to its path.",
  );
}

/** A free TCP port on 127.0.0.1, as the kernel hands it out. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new NatsServerError("could not get a free port"));
      });
    });
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
}

export interface NatsServerOptions {
  /** Server name (default: "nats-<port>"). */
  name?: string;
  port?: number;
  /** JetStream store directory (default: a new temporary directory, removed by stop()). */
  storeDir?: string;
  /** Cluster membership: this server's route port, the cluster name, and all route URLs. */
  cluster?: { name: string; port: number; routes: string[] };
  /** How long to wait for the server to be ready (default 15 s). */
  readyTimeoutMs?: number;
  /**
   * A nats-server configuration file (`-c`), e.g. with `authorization` or `tls` blocks. The
   * address, port, name, JetStream and store given above still apply: flags win over the file.
   */
  configFile?: string;
  /** The URL scheme of `url` (default "nats"; "tls" for a server whose config requires TLS). */
  scheme?: "nats" | "tls";
  /**
   * Runs the server in a process group of its own, so that a Ctrl-C in the terminal reaches
   * only this process, which can then stop its clients before the server (default false).
   * It is still killed when this process exits.
   */
  ownProcessGroup?: boolean;
}

export class NatsServer {
  private child: ChildProcess | null = null;
  private output: string[] = [];

  private constructor(
    readonly bin: string,
    readonly name: string,
    readonly port: number,
    readonly storeDir: string,
    private readonly ownsStore: boolean,
    private readonly options: NatsServerOptions,
  ) {}

  get url(): string {
    return `${this.options.scheme ?? "nats"}://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The server's recent log lines, for error messages. */
  recentOutput(lines = 30): string {
    return this.output.slice(-lines).join("\n");
  }

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const bin = findNatsServer();
    const port = options.port ?? (await freePort());
    const ownsStore = options.storeDir === undefined;
    const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "presence-nats-")));
    const server = new NatsServer(bin, options.name ?? `nats-${port}`, port, storeDir, ownsStore, options);
    try {
      await server.launch();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Starts the process again after stop({ keepStore: true }) or a kill, on the same port and store. */
  async launch(): Promise<void> {
    if (this.running) return;
    const args = ["-a", "127.0.0.1", "-p", String(this.port), "-n", this.name, "-js", "-sd", this.storeDir];
    if (this.options.configFile !== undefined) args.unshift("-c", this.options.configFile);
    const { cluster } = this.options;
    if (cluster) {
      args.push("--cluster_name", cluster.name, "--cluster", `nats://127.0.0.1:${cluster.port}`, "--routes", cluster.routes.join(","));
    }
    const child = spawn(this.bin, args, { stdio: ["ignore", "pipe", "pipe"], detached: this.options.ownProcessGroup === true });
    this.child = child;
    track(child);
    const remember = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) this.output.push(line);
      if (this.output.length > 500) this.output.splice(0, this.output.length - 500);
    };
    child.stdout?.on("data", remember);
    child.stderr?.on("data", remember);
    await new Promise<void>((resolve, reject) => {
      const timeoutMs = this.options.readyTimeoutMs ?? 15_000;
      const timer = setTimeout(() => {
        cleanup();
        reject(new NatsServerError(`nats-server ${this.name} was not ready after ${timeoutMs} ms:\n${this.recentOutput()}`));
      }, timeoutMs);
      const onData = () => {
        if (this.output.some((l) => l.includes("Server is ready"))) {
          cleanup();
          resolve();
        }
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new NatsServerError(`nats-server ${this.name} exited with code ${code} while starting:\n${this.recentOutput()}`));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(new NatsServerError(`could not run ${this.bin}: ${err.message}`, { cause: err }));
      };
      const cleanup = () => {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        child.stderr?.off("data", onData);
        child.off("exit", onExit);
        child.off("error", onError);
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", onExit);
      child.once("error", onError);
      onData();
    });
  }

  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes a temporary store. */
  async stop(options: { keepStore?: boolean; signal?: NodeJS.Signals } = {}): Promise<void> {
    const child = this.child;
    if (child && this.running) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill(options.signal ?? "SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (this.ownsStore && !options.keepStore) {
      await rm(this.storeDir, { recursive: true, force: true });
    }
  }
}

/** A 3-node (or n-node) JetStream cluster on loopback. */
export class NatsCluster {
  private constructor(readonly servers: NatsServer[]) {}

  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  static async start(size = 3, name = "presence-test"): Promise<NatsCluster> {
    const clientPorts: number[] = [];
    const routePorts: number[] = [];
    for (let i = 0; i < size; i++) {
      clientPorts.push(await freePort());
      routePorts.push(await freePort());
    }
    const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
    const servers: NatsServer[] = [];
    try {
      const started = await Promise.allSettled(
        clientPorts.map((port, i) => NatsServer.start({ name: `${name}-${i + 1}`, port, cluster: { name, port: routePorts[i]!, routes } })),
      );
      for (const s of started) if (s.status === "fulfilled") servers.push(s.value);
      const failed = started.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const cluster = new NatsCluster(servers);
      await cluster.waitForJetStream();
      return cluster;
    } catch (err) {
      await Promise.all(servers.map((s) => s.stop()));
      throw err;
    }
  }

  /** Waits until the cluster has a JetStream meta leader and answers JetStream requests. */
  async waitForJetStream(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const nc = await connect({ servers: this.urls.filter((_, i) => this.servers[i]!.running) });
    try {
      let lastError: unknown;
      while (Date.now() < deadline) {
        try {
          const jsm = await jetstreamManager(nc, { timeout: 2000 });
          await jsm.getAccountInfo();
          return;
        } catch (err) {
          lastError = err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      throw new NatsServerError(`JetStream cluster not ready after ${timeoutMs} ms: ${String(lastError)}`, {
        cause: lastError,
      });
    } finally {
      await nc.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
