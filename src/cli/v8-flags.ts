/**
 * V8 settings of the daemon, applied when the command line is loaded, before it allocates
 * anything of note (src/cli.ts imports this first).
 *
 * Allocation-site pretenuring is off. V8 allocates objects straight into the old generation
 * at an allocation site whose objects mostly survived their first scavenges. A leader meets
 * that condition while it spawns its client actors; afterwards the same sites allocate what
 * every ping, reply and report needs for a moment, 60,000+ times a second at 50,000
 * clients. With pretenuring on, about 19 MB/s of it (40 % of all the monitoring allocated)
 * went straight into the old generation, which only a full collection over the leader's
 * 200 MB heap frees again. Off, it dies young:
 * - in-process, the monitoring of 50,000 clients took 0.21 cores instead of 0.33, and
 *   promoted nothing in the steady state;
 * - a leader of 50,000 clients took 0.59–0.60 cores instead of 0.64–0.77, with 3.7–3.9 KB of
 *   heap in use per client instead of 12.3–12.8 KB (`npm run bench`, runs in turn).
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--no-allocation-site-pretenuring");
