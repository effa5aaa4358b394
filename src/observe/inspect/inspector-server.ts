/**
 * The live inspector: a local web page that shows one or more coordinators' actor systems
 * as they run. Everything the page needs (HTML, script, styles, state charts) is served from
 * here, so it works without internet. The page talks to the daemon over one WebSocket: it
 * says what it looks at (coordinator, selected actor, client filter and page), and gets a
 * view of that every half second, built by the coordinator's `InspectionHub`.
 *
 * The server listens on loopback unless told otherwise. It has no authentication, so it
 * also refuses requests whose Host is not this server (DNS rebinding) and WebSockets opened
 * from another origin (another web page in the same browser).
 */
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isIP } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import type { InspectionHub } from "./inspection.js";
import type { ViewRequest } from "./view-types.js";
import { parseViewMessage } from "./page-message.js";
import { describeError, type Logger } from "../logger.js";

export const DEFAULT_INSPECT_PORT = 7420;
export const DEFAULT_INSPECT_HOST = "127.0.0.1";
/** How often a connected page gets a fresh view. */
export const INSPECT_REFRESH_MS = 500;

const CHART_MACHINES = ["election", "monitor", "shard", "client"] as const;

const WEB_DIR = new URL("../../../web/inspector/", import.meta.url);
const VISUALIZATIONS_DIR = new URL("../../../visualizations/", import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

export class InspectorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`inspector: ${message}`, options);
    this.name = "InspectorError";
  }
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

interface Page {
  socket: WebSocket;
  coordinatorId: string | null;
  request: ViewRequest;
}

export interface InspectorServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  logger: Logger;
}

export class InspectorServer {
  private readonly hubs = new Map<string, InspectionHub>();
  private readonly pages = new Set<Page>();
  private readonly charts = new Map<string, Promise<string>>();
  private readonly assets = new Map<string, Buffer>();
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    readonly host: string,
    readonly port: number,
    logger: Logger,
  ) {
    this.log = logger.child({ component: "inspector" });
  }

  /** Starts listening; rejects with a clear message when the port is taken or the host is wrong. */
  static async start(options: InspectorServerOptions): Promise<InspectorServer> {
    const host = options.host ?? DEFAULT_INSPECT_HOST;
    const port = options.port ?? DEFAULT_INSPECT_PORT;
    const http = createServer();
    const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const why =
          err.code === "EADDRINUSE"
            ? `port ${port} on ${host} is in use; pass another with --inspect=<port> (0 picks a free one)`
            : err.code === "EADDRNOTAVAIL" || err.code === "ENOTFOUND"
              ? `cannot listen on ${host}: no such local address (--inspect-host)`
              : `cannot listen on ${host}:${port}: ${err.message}`;
        reject(new InspectorError(why, { cause: err }));
      };
      http.once("error", onError);
      http.listen(port, host, () => {
        http.off("error", onError);
        resolve();
      });
    });
    const actual = (http.address() as AddressInfo).port;
    const server = new InspectorServer(http, wss, host, actual, options.logger);
    server.loadAssets();
    http.on("request", (req, res) => server.onRequest(req, res));
    http.on("upgrade", (req, socket, head) => {
      if (req.url !== "/ws" || !server.hostAllowed(req) || !server.originAllowed(req)) {
        socket.end("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n");
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => server.onSocket(ws));
    });
    if (!isLoopback(host)) {
      server.log.warn(
        "the inspector listens beyond loopback: anyone who can reach it sees this coordinator's state (it has no authentication)",
        {
          host,
        },
      );
    }
    return server;
  }

  get url(): string {
    const h = isIP(this.host) === 6 ? `[${this.host}]` : this.host === "0.0.0.0" ? "127.0.0.1" : this.host;
    return `http://${h}:${this.port}/`;
  }

  /** Adds a coordinator's hub, or replaces the hub of a coordinator with the same id (a restart). */
  addHub(hub: InspectionHub): void {
    this.hubs.set(hub.coordinatorId, hub);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const page of this.pages) page.socket.terminate();
    this.pages.clear();
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private loadAssets(): void {
    for (const { file } of Object.values(ASSETS)) {
      try {
        this.assets.set(file, readFileSync(new URL(file, WEB_DIR)));
      } catch (err) {
        throw new InspectorError(`the page's file ${file} is missing from the installation`, { cause: err });
      }
    }
  }

  /** Accepts only requests addressed to this server by a local name or its own address. */
  private hostAllowed(req: IncomingMessage): boolean {
    const header = req.headers.host;
    if (header === undefined) return false;
    const name = header.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    return isLoopback(name) || name === this.host;
  }

  /** A WebSocket may only be opened by the page this server served. */
  private originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return true; // not a browser
    try {
      const u = new URL(origin);
      return u.host === req.headers.host;
    } catch {
      return false;
    }
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (!this.hostAllowed(req)) {
      res.writeHead(403, { "content-type": "text/plain" }).end("forbidden: unexpected Host header\n");
      return;
    }
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const asset = ASSETS[path];
    if (asset !== undefined && req.method === "GET") {
      res
        .writeHead(200, { "content-type": asset.type, "cache-control": "no-cache", "x-content-type-options": "nosniff" })
        .end(this.assets.get(asset.file));
      return;
    }
    const chart = /^\/chart\/([a-z]+)\.svg$/.exec(path);
    if (chart && req.method === "GET" && (CHART_MACHINES as readonly string[]).includes(chart[1]!)) {
      this.chart(chart[1] as (typeof CHART_MACHINES)[number]).then(
        (svg) => res.writeHead(200, { "content-type": "image/svg+xml", "cache-control": "max-age=3600" }).end(svg),
        (err: unknown) => {
          this.log.error("could not render a chart", { machine: chart[1], error: describeError(err) });
          res.writeHead(500, { "content-type": "text/plain" }).end("could not render the chart\n");
        },
      );
      return;
    }
    if (path === "/api/coordinators" && req.method === "GET") {
      const list = [...this.hubs.values()].map((h) => h.coordinator());
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(list));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }

  /**
   * The SVG of a machine's chart: the file `npm run viz` drew into visualizations/ (the test
   * suite checks that it matches the machine). Laying a chart out takes Graphviz most of a
   * second of CPU, which must not stall a running coordinator's pings, so the daemon never
   * renders; it checks that every state of the machine is in the file and warns when not.
   */
  private chart(name: (typeof CHART_MACHINES)[number]): Promise<string> {
    let svg = this.charts.get(name);
    if (svg === undefined) {
      svg = (async () => {
        const text = await readFile(new URL(`${name}.svg`, VISUALIZATIONS_DIR), "utf8");
        const [{ MACHINES }, { allStates, chartOf }] = await Promise.all([
          import("../../charts/machines.js"),
          import("../../charts/chart.js"),
        ]);
        const missing = allStates(chartOf(MACHINES[name]))
          .map((state) => state.id)
          .filter((id) => !text.includes(`id="state:${id}"`));
        if (missing.length > 0) {
          this.log.warn(`visualizations/${name}.svg is out of date with the machine (run npm run viz)`, { missing: missing.join(",") });
        }
        return text;
      })();
      svg.catch(() => this.charts.delete(name));
      this.charts.set(name, svg);
    }
    return svg;
  }

  private onSocket(socket: WebSocket): void {
    const page: Page = { socket, coordinatorId: null, request: {} };
    this.pages.add(page);
    socket.on("message", (data) => {
      let msg: unknown;
      try {
        msg = JSON.parse(String(data));
      } catch {
        socket.send(JSON.stringify({ type: "error", message: "messages must be JSON" }));
        return;
      }
      const parsed = parseViewMessage(msg);
      if (typeof parsed === "string") {
        socket.send(JSON.stringify({ type: "error", message: parsed }));
        return;
      }
      page.coordinatorId = parsed.coordinatorId;
      page.request = parsed.request;
      this.sendView(page);
    });
    socket.on("close", () => this.pages.delete(page));
    socket.on("error", (err) => this.log.debug("inspector socket error", { error: describeError(err) }));
    this.sendView(page);
    this.timer ??= setInterval(() => this.refresh(), INSPECT_REFRESH_MS);
  }

  private refresh(): void {
    if (this.pages.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    for (const page of this.pages) {
      // A page that has not read the last views yet gets no new one (it catches up later).
      if (page.socket.bufferedAmount > 1_000_000) continue;
      this.sendView(page);
    }
  }

  private hubFor(page: Page): InspectionHub | undefined {
    if (page.coordinatorId !== null) {
      const hub = this.hubs.get(page.coordinatorId);
      if (hub !== undefined) return hub;
    }
    // By default the page shows the leader, or else the first coordinator.
    const hubs = [...this.hubs.values()];
    return hubs.find((h) => h.coordinator().role === "leader") ?? hubs[0];
  }

  private sendView(page: Page): void {
    const hub = this.hubFor(page);
    const coordinators = [...this.hubs.values()].map((h) => h.coordinator());
    if (hub === undefined) {
      page.socket.send(JSON.stringify({ type: "view", coordinators, view: null }));
      return;
    }
    try {
      const view = hub.view(page.request);
      page.request.afterSeq = view.lastSeq;
      page.socket.send(JSON.stringify({ type: "view", coordinators, view }));
    } catch (err) {
      this.log.error("could not build an inspector view", { error: describeError(err) });
    }
  }
}
