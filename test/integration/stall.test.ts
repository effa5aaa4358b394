/**
 * A starved leader judges nobody (design §10): a leader whose event loop was stopped cannot
 * tell a silent client from a reply it has not read yet, so the time it could not observe
 * must not count against any client. These tests stop a real leader process with SIGSTOP
 * (its timers fire late and the replies wait in its socket) while simulated clients keep
 * answering on a real nats-server.
 */
import { connect } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SimulatedClients } from "../../bench/client-sim.js";
import { NatsServer } from "../../src/services/nats-server.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../helpers/coordinators.js";
import { waitForStream } from "../helpers/presence.js";
import { metricsUrl, pauseProcess, ReportTally, scrapeValue } from "../helpers/stall.js";

const STALL_WARNING = /^event loop stalled (\d+) ms; verdicts deferred$/;

/** The stall warnings a coordinator logged, with the stall each names. */
function stallWarnings(proc: CoordinatorProcess): number[] {
  return proc
    .logs()
    .filter((l) => l.level === "warn" && STALL_WARNING.test(String(l.message)))
    .map((l) => Number(l.stalledMs));
}

function dumpLogs(procs: CoordinatorProcess[]): void {
  for (const c of procs) process.stderr.write(`--- last log lines of ${c.id} ---\n${c.lines.slice(-20).join("\n")}\n`);
}

const PING_MS = 250;
const DEAD_MS = 1500;
/** Short client timings, and a lease that outlives the stall: only presence is on trial. */
const SHORT_TIMINGS = [
  "--ping-interval", String(PING_MS),
  "--dead-timeout", String(DEAD_MS),
  "--state-interval", "1000",
  "--leader-timeout", "8000",
  "--renew-deadline", "6000",
  "--heartbeat-interval", "1000",
];

test("stall - a leader stopped for twice the dead timeout reports no answering client suspect or dead, and a silent one dead after it", async () => {
  const server = await NatsServer.start();
  const cluster = `stall${process.pid}a`;
  const procs: CoordinatorProcess[] = [];
  const tally = await ReportTally.start(server.url, cluster);
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url });
  const sim = new SimulatedClients(app, cluster, "svc.stall");
  try {
    const count = 60;
    const subjects = Array.from({ length: count }, (_, n) => SimulatedClients.subject("svc.stall", n));
    const dying = subjects[0]!;
    const answering = subjects.slice(1);
    await app.flush();
    const leader = spawnCoordinator({ urls: [server.url], clusterId: cluster, id: "stall-1", args: [...SHORT_TIMINGS, "--metrics-port", "0"] });
    procs.push(leader);
    await waitForStream(app, cluster);
    await sim.register(0, count);
    const first = await observer.waitForHeartbeat("the leader's heartbeat", (h) => h.coordinatorId === "stall-1", 15_000);
    await waitFor("NodePresent for every client", () => subjects.every((s) => tally.has(s, (r) => r.type === "NodePresent")), 15_000);

    // One client stops answering before the stall: it is suspect when the leader stops.
    sim.silence([dying]);
    await waitFor("the silenced client reported suspect", () => tally.has(dying, (r) => r.type === "NodeSuspect"), 10_000);

    const stallMs = 2 * DEAD_MS;
    const pause = await pauseProcess(leader, stallMs);
    const pausedMs = pause.contAt - pause.stoppedAt;

    // Wait until every deadline a stall could have spoiled is past: every answering client
    // was reported after a dead timeout and a ping interval since the leader woke (NodeState
    // every state interval), or reported dead, which ends its reports.
    const judgedFrom = pause.contAt + DEAD_MS + PING_MS;
    await waitFor(
      "a report of every answering client stamped a dead timeout after the wake",
      () => answering.every((s) => tally.has(s, (r) => r.ts >= judgedFrom || r.type === "NodeDead")),
      20_000,
    );
    // Verdicts deferred, not lost: the silent client is dead once the leader has watched it.
    const death = await waitFor("the silent client's NodeDead", () => tally.of(dying).find((s) => s.report.type === "NodeDead"), 10_000);

    const falseSuspects = tally.describe("NodeSuspect", answering);
    const falseDeaths = tally.describe("NodeDead", answering);
    const warnings = await waitFor("the stall warning", () => (stallWarnings(leader).length > 0 ? stallWarnings(leader) : undefined), 5000);
    const url = await metricsUrl(leader);
    const stalls = await scrapeValue(url, "presence_sweep_stalls_total");
    const stalledSeconds = await scrapeValue(url, "presence_sweep_stalled_seconds_total");
    console.log(
      `stopped ${pausedMs} ms: false NodeSuspect ${falseSuspects.length}, false NodeDead ${falseDeaths.length}, ` +
        `stall warnings ${warnings.join(",")} ms, presence_sweep_stalls_total ${stalls}, stalled seconds ${stalledSeconds}, ` +
        `silent client dead ${death.report.ts - pause.contAt} ms after the wake`,
    );

    assert.equal(falseSuspects, [], "no answering client reported suspect");
    assert.equal(falseDeaths, [], "no answering client reported dead");
    assert.is(death.report.ts >= pause.contAt, true, "the silent client was not dead before the stall");
    assert.is(tally.of(dying).filter((s) => s.report.type === "NodeDead").length, 1, "exactly one NodeDead for the silent client");
    // Its deadline moved by the stall: dead within a dead timeout (plus a sweep and the
    // lateness of a busy machine) after the wake, not at once on waking.
    assert.ok(death.report.ts - pause.contAt < DEAD_MS + 1000, `dead ${death.report.ts - pause.contAt} ms after the wake`);
    // The warning names the stall the leader saw: about the pause (its sweep interval less).
    assert.ok(
      warnings.some((ms) => ms >= pausedMs - 150 && ms <= pausedMs + 1000),
      `a stall warning of about ${pausedMs} ms (saw ${warnings.join(", ")})`,
    );
    assert.ok((stalls ?? 0) >= 1, `presence_sweep_stalls_total counts the stall (${stalls})`);
    assert.ok((stalledSeconds ?? 0) >= (pausedMs - 150) / 1000, `presence_sweep_stalled_seconds_total holds it (${stalledSeconds})`);
    assert.equal(
      [...new Set(observer.heartbeats.map((h) => `${h.msg.coordinatorId} epoch ${h.msg.epoch}`))],
      [`stall-1 epoch ${first.msg.epoch}`],
      "the leader kept its lease through the stall",
    );
  } catch (err) {
    dumpLogs(procs);
    throw err;
  } finally {
    sim.stop();
    await Promise.all(procs.map((c) => c.kill()));
    await app.close();
    await tally.close();
    await observer.close();
    await server.stop();
  }
});

test.run();
