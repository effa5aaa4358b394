/**
 * Helper processes of the tests and benchmarks, and what /proc says of a process. A helper
 * is killed when this process exits, however it exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const CLK_TCK = 100; // Linux's USER_HZ; /proc/<pid>/stat counts CPU in these ticks

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may hold spaces: the fields after it start past the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident memory of a process in bytes, from /proc. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** A helper process of the benchmark (tsx), killed when this process exits. */
export class Helper {
  private static readonly live = new Set<ChildProcess>();
  static {
    process.once("exit", () => {
      for (const c of Helper.live) c.kill("SIGKILL");
    });
  }
  readonly ready: Promise<void>;
  constructor(readonly child: ChildProcess) {
    Helper.live.add(child);
    child.once("exit", () => Helper.live.delete(child));
    let err = "";
    child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    this.ready = new Promise((resolve, reject) => {
      child.stdout?.on("data", (c: Buffer) => {
        if (c.toString().includes("ready")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`helper exited with ${String(code)} before it was ready: ${err}`)));
    });
  }
  /** Starts `script` (a TypeScript file, through tsx) with `args`; it says "ready" on stdout when it is. */
  static start(script: URL, args: string[]): Helper {
    const path = fileURLToPath(script);
    return new Helper(spawn(process.execPath, ["--import", "tsx", path, ...args], { stdio: ["ignore", "pipe", "pipe"] }));
  }
  get pid(): number {
    return this.child.pid!;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}
