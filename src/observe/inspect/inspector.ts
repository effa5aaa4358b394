/**
 * Turns inspection on for the coordinators of this process: the local inspector page
 * (`--inspect`), forwarding to the Stately inspector (`--inspect-stately`), or both. Each
 * coordinator gets one `inspect` observer to pass to its actor system.
 */
import type { InspectionEvent, MachineContext } from "xstate";
import { LivenessTable } from "../../machines/liveness.js";
import { InspectionHub } from "./inspection.js";
import { InspectorServer } from "./inspector-server.js";
import { describeError, type Logger } from "../logger.js";

export interface InspectSettings {
  /** The local page: where to listen (port 0: any free port); absent: no local page. */
  local?: { host: string; port: number };
  /** Forward the stream to the Stately inspector (needs internet). */
  stately: boolean;
}

type Inspect = (event: InspectionEvent) => void;

/**
 * Context fields that hold actor references (a monitor's shards, a shard's clients) or a
 * shard's liveness table (typed arrays, one slot per client) are summarised before they leave
 * the process, and the election's random source is left out.
 */
export function sanitizeContext(context: MachineContext): MachineContext {
  const out: MachineContext = {};
  for (const [key, value] of Object.entries(context)) {
    if (key === "random") continue;
    if (key === "clients" && value instanceof Map) out[key] = `${value.size} client actors`;
    else if (key === "shards" && Array.isArray(value)) out[key] = `${value.length} shard actors`;
    else if (value instanceof LivenessTable) out[key] = `${value.size} clients in the liveness table`;
    else out[key] = value;
  }
  return out;
}

async function statelyForwarder(log: Logger): Promise<Inspect> {
  const { createSkyInspector } = await import("@statelyai/inspect");
  let reported = false;
  const sky = createSkyInspector({
    sanitizeContext,
    onerror: (err: Error) => {
      // Without internet this fails on every retry: say it once.
      if (reported) return;
      reported = true;
      log.warn("cannot reach the Stately inspector (it needs internet); the local inspector is unaffected", {
        error: describeError(err),
      });
    },
  });
  log.info("forwarding the inspection stream to the Stately inspector; its live URL is printed on stdout once connected");
  return (event) => sky.inspect.next?.(event);
}

export class Inspection {
  private constructor(
    readonly server: InspectorServer | null,
    private readonly stately: Inspect | null,
  ) {}

  static async start(settings: InspectSettings, logger: Logger): Promise<Inspection> {
    const log = logger.child({ component: "inspector" });
    const server = settings.local ? await InspectorServer.start({ ...settings.local, logger }) : null;
    let stately: Inspect | null = null;
    if (settings.stately) {
      try {
        stately = await statelyForwarder(log);
      } catch (err) {
        await server?.stop();
        throw err;
      }
    }
    if (server !== null) log.info("inspector page listening", { url: server.url });
    return new Inspection(server, stately);
  }

  /** The observer for one coordinator's actor system (a restarted coordinator replaces its old one). */
  observerFor(coordinatorId: string, clusterId: string): Inspect {
    const hub = this.server !== null ? new InspectionHub({ coordinatorId, clusterId }) : null;
    if (hub !== null) this.server?.addHub(hub);
    const stately = this.stately;
    if (hub !== null && stately !== null) {
      return (event) => {
        hub.inspect(event);
        stately(event);
      };
    }
    if (hub !== null) return hub.inspect;
    if (stately !== null) return stately;
    return () => undefined;
  }

  get url(): string | null {
    return this.server?.url ?? null;
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}
