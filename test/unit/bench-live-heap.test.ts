/** The capacity bench's live-heap reading: another process's heap after a full GC, through its inspector. */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { WebSocketServer } from "ws";
import { INSPECT_OPTION, inspectorUrlIn, liveHeapBytes, LiveHeapError, withInspector } from "../../harness/live-heap.js";

/**
 * A process with an inspector that, on a line on stdin, makes garbage (a big array it then
 * drops), retains objects, or exits; it answers each line with `done <heapUsed>`.
 */
const CHILD = `
globalThis.kept = [];
const make = (n) => { const a = []; for (let i = 0; i < n; i++) a.push({ i, s: "x" + i }); return a; };
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => {
  for (const cmd of d.split("\\n").filter(Boolean)) {
    if (cmd === "garbage") make(400000);
    if (cmd === "retain") globalThis.kept.push(make(200000));
    if (cmd === "exit") process.exit(0);
    process.stdout.write("done " + process.memoryUsage().heapUsed + "\\n");
  }
});
process.stdout.write("ready\\n");
`;

interface Child {
  proc: ChildProcess;
  url: string;
  stderr: () => string;
  /** Sends a command and waits for its `done`; returns the child's own heapUsed then. */
  ask: (cmd: string) => Promise<number>;
}

async function startChild(): Promise<Child> {
  const proc = spawn(process.execPath, ["-e", CHILD], {
    env: { ...process.env, NODE_OPTIONS: withInspector(undefined) },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let err = "";
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const answers: string[] = [];
  let wake: (() => void) | null = null;
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (c: string) => {
    answers.push(...c.split("\n").filter(Boolean));
    wake?.();
  });
  const next = async (): Promise<string> => {
    while (answers.length === 0) await new Promise<void>((r) => (wake = r));
    return answers.shift()!;
  };
  assert.is(await next(), "ready");
  const url = inspectorUrlIn(err.split("\n"));
  assert.ok(url, `no inspector URL in ${err}`);
  return {
    proc,
    url,
    stderr: () => err,
    ask: async (cmd) => {
      proc.stdin!.write(`${cmd}\n`);
      return Number((await next()).split(" ")[1]);
    },
  };
}

async function withChild(body: (c: Child) => Promise<void>): Promise<void> {
  const c = await startChild();
  try {
    await body(c);
  } finally {
    if (c.proc.exitCode === null && c.proc.signalCode === null) {
      const exited = once(c.proc, "exit");
      c.proc.kill("SIGKILL");
      await exited;
    }
  }
}

const MB = 1024 * 1024;

test("live heap - counts what a process retains after a collection, not the garbage it left", async () => {
  await withChild(async (c) => {
    const base = await liveHeapBytes(c.url);
    const usedWithGarbage = await c.ask("garbage");
    assert.ok(usedWithGarbage - base > 10 * MB, `the garbage is in the used heap (${usedWithGarbage} vs ${base})`);
    const afterGarbage = await liveHeapBytes(c.url);
    assert.ok(Math.abs(afterGarbage - base) < 2 * MB, `garbage collected: live heap ${afterGarbage} vs ${base} before`);
    await c.ask("retain");
    const afterRetain = await liveHeapBytes(c.url);
    // 200,000 objects with a short string each and the array: 10–30 MB.
    const grown = afterRetain - afterGarbage;
    assert.ok(grown > 8 * MB && grown < 40 * MB, `retained objects counted: grew ${(grown / MB).toFixed(1)} MB`);
  });
});

test("live heap - the inspector session is closed when a reading returns, so the process can exit", async () => {
  await withChild(async (c) => {
    await liveHeapBytes(c.url);
    await liveHeapBytes(c.url);
    const exited = once(c.proc, "exit");
    c.proc.stdin!.write("exit\n");
    const timedOut = new Promise((r) => setTimeout(() => r("timeout"), 5000).unref());
    assert.not.equal(await Promise.race([exited, timedOut]), "timeout", `the process did not exit: ${c.stderr()}`);
    assert.not.match(c.stderr(), "Waiting for the debugger to disconnect");
    assert.match(c.stderr(), "Debugger ending on");
  });
});

test("live heap - no inspector at the URL is a LiveHeapError that names it", async () => {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r)); // the port is free again: nobody listens
  const url = `ws://127.0.0.1:${port}/gone`;
  try {
    await liveHeapBytes(url, 2000);
    assert.unreachable("it should have failed");
  } catch (err) {
    assert.instance(err, LiveHeapError);
    assert.match((err as Error).message, `could not connect to the inspector at ${url}`);
  }
});

test("live heap - an inspector that never answers is given up after the timeout, and its session is closed", async () => {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  let asked = 0;
  const sessionClosed = new Promise<void>((resolve) =>
    server.on("connection", (socket) => {
      socket.on("message", () => (asked += 1));
      socket.on("close", () => resolve());
    }),
  );
  try {
    const url = `ws://127.0.0.1:${port}/silent`;
    try {
      await liveHeapBytes(url, 300);
      assert.unreachable("it should have timed out");
    } catch (err) {
      assert.instance(err, LiveHeapError);
      assert.match((err as Error).message, `no answer from the inspector at ${url} within 300 ms`);
    }
    assert.is(asked, 1, "collectGarbage was asked, and nothing after it");
    const late = new Promise((r) => setTimeout(() => r("open"), 3000).unref());
    assert.not.equal(await Promise.race([sessionClosed, late]), "open", "the session was left open");
  } finally {
    for (const client of server.clients) client.terminate();
    await new Promise((r) => server.close(r));
  }
});

test("live heap - the inspector's URL is read from the process's output, and added to existing node options", () => {
  const lines = [
    '{"message":"starting"}',
    "Debugger listening on ws://127.0.0.1:40351/5c1f-77",
    "For help, see: https://nodejs.org/en/docs/inspector",
  ];
  assert.is(inspectorUrlIn(lines), "ws://127.0.0.1:40351/5c1f-77");
  assert.is(inspectorUrlIn(lines.slice(0, 1)), undefined);
  assert.is(withInspector(undefined), INSPECT_OPTION);
  assert.is(withInspector("  "), INSPECT_OPTION);
  assert.is(withInspector("--max-old-space-size=4096"), `--max-old-space-size=4096 ${INSPECT_OPTION}`);
});

test.run();
