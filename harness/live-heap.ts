/**
 * The live heap of another Node process: what its V8 heap holds right after a full garbage
 * collection, read through its inspector (the process runs with `--inspect=127.0.0.1:0`).
 * `nodejs_heap_size_used_bytes` counts garbage not yet collected too, so it overstates what
 * each client really costs.
 *
 * Each reading opens a Chrome DevTools Protocol session, asks for `HeapProfiler.collectGarbage`
 * then `Runtime.getHeapUsage`, and closes the session before it returns: no session stays
 * attached while the process is measured for CPU. The collection pauses the process for as
 * long as a full GC takes.
 */
import WebSocket from "ws";

/** Node's node_options for a process whose live heap is to be read: an inspector on a free loopback port. */
export const INSPECT_OPTION = "--inspect=127.0.0.1:0";

/** NODE_OPTIONS with the inspector added to what the environment already holds. */
export function withInspector(nodeOptions: string | undefined): string {
  return nodeOptions === undefined || nodeOptions.trim() === "" ? INSPECT_OPTION : `${nodeOptions} ${INSPECT_OPTION}`;
}

/** The inspector's URL from a process's output lines ("Debugger listening on ws://…"), or undefined before it is printed. */
export function inspectorUrlIn(lines: readonly string[]): string | undefined {
  for (const line of lines) {
    const m = /Debugger listening on (ws:\/\/\S+)/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}

/** Reading a live heap failed: the inspector did not answer, refused, or timed out. */
export class LiveHeapError extends Error {
  override readonly name = "LiveHeapError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(`live heap: ${message}`, options);
  }
}

interface CdpAnswer {
  id?: number;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

/**
 * Collects garbage in the process behind `url` and returns its V8 heap in use after that,
 * in bytes (usedSize; ArrayBuffer backing stores are outside it). The session is closed
 * before this resolves or rejects, whatever happened; past `timeoutMs` it is cut.
 */
export async function liveHeapBytes(url: string, timeoutMs = 30_000): Promise<number> {
  const ws = new WebSocket(url, { handshakeTimeout: timeoutMs });
  const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  let nextId = 0;
  const waiting = new Map<number, { resolve: (a: CdpAnswer) => void; reject: (e: Error) => void }>();
  const failAll = (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  ws.on("message", (data) => {
    let answer: CdpAnswer;
    try {
      answer = JSON.parse(data.toString()) as CdpAnswer;
    } catch (err) {
      return failAll(new LiveHeapError("the inspector sent something that is not JSON", { cause: err }));
    }
    if (answer.id === undefined) return; // a notification
    const w = waiting.get(answer.id);
    waiting.delete(answer.id);
    w?.resolve(answer);
  });
  let opened = false;
  const open = new Promise<void>((resolve, reject) => {
    ws.once("open", () => {
      opened = true;
      resolve();
    });
    ws.on("error", (err) => {
      const e = new LiveHeapError(
        opened ? `the session with the inspector at ${url} failed` : `could not connect to the inspector at ${url}`,
        { cause: err },
      );
      reject(e);
      failAll(e);
    });
  });
  open.catch(() => undefined); // awaited below; a failure after the timeout must not go unhandled
  ws.on("close", () => failAll(new LiveHeapError(`the inspector at ${url} closed the session`)));
  const call = async (method: string): Promise<Record<string, unknown>> => {
    const id = ++nextId;
    const answer = await new Promise<CdpAnswer>((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method }), (err) => {
        if (err) reject(new LiveHeapError(`could not send ${method}`, { cause: err }));
      });
    });
    if (answer.error) throw new LiveHeapError(`${method} failed: ${answer.error.message}`);
    return answer.result ?? {};
  };
  try {
    const work = (async () => {
      await open;
      await call("HeapProfiler.collectGarbage");
      const usage = await call("Runtime.getHeapUsage");
      if (typeof usage.usedSize !== "number") throw new LiveHeapError(`Runtime.getHeapUsage gave no usedSize: ${JSON.stringify(usage)}`);
      return usage.usedSize;
    })();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LiveHeapError(`no answer from the inspector at ${url} within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    if (ws.readyState === WebSocket.OPEN) {
      ws.close();
      // A peer that does not answer the close handshake is cut after a while.
      const cut = setTimeout(() => ws.terminate(), 2000);
      await closed;
      clearTimeout(cut);
    } else if (ws.readyState !== WebSocket.CLOSED) {
      ws.terminate();
      await closed;
    }
  }
}
