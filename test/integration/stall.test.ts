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
import { Helper } from "../../harness/processes.js";
import { control, SimulatedClients } from "../../harness/client-sim.js";
import {
  DEFAULT_DEAD_TIMEOUT_MS,
  DEFAULT_LEADER_TIMEOUT_MS,
  DEFAULT_PING_INTERVAL_MS,
  defaultRenewDeadline,
} from "../../src/config/config.js";
import { createRandom } from "../../src/machines/random.js";
import { NatsServer } from "../../src/nats/server.js";
import { Observer, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import { waitForStream } from "../../harness/presence.js";
import { metricsUrl, pauseProcess, ReportTally, scrapeValue, type Pause } from "../../harness/stall.js";

const STALL_WARNING = /^event loop stalled (\d+) ms; verdicts deferred$/;
/** A stall past the stall credit: warned about as well, but not deferred. */
const UNCREDITED_STALL_WARNING = /^event loop stalled (\d+) ms; stall credit used up/;
const STALL_SUMMARY = "more event-loop stalls deferred verdicts";

/** The stall warnings (stalls deferred) a coordinator logged, with the stall each names. */
function stallWarnings(proc: CoordinatorProcess): number[] {
  return proc
    .logs()
    .filter((l) => l.level === "warn" && STALL_WARNING.test(String(l.message)))
    .map((l) => Number(l.stalledMs));
}

/** Every long stall a coordinator warned about: in a line of its own or in a summary's count. */
function stallsWarned(proc: CoordinatorProcess): number {
  let n = 0;
  for (const l of proc.logs()) {
    if (l.level !== "warn") continue;
    const message = String(l.message);
    if (STALL_WARNING.test(message) || UNCREDITED_STALL_WARNING.test(message)) n += 1;
    else if (message.startsWith(STALL_SUMMARY)) n += Number(l.count);
  }
  return n;
}

function dumpLogs(procs: CoordinatorProcess[]): void {
  for (const c of procs) process.stderr.write(`--- last log lines of ${c.id} ---\n${c.lines.slice(-20).join("\n")}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PING_MS = 250;
const DEAD_MS = 1500;
/** Short client timings, and a lease that outlives the stall: only presence is on trial. */
const SHORT_TIMINGS = [
  "--ping-interval",
  String(PING_MS),
  "--dead-timeout",
  String(DEAD_MS),
  "--state-interval",
  "1000",
  "--leader-timeout",
  "8000",
  "--renew-deadline",
  "6000",
  "--heartbeat-interval",
  "1000",
];

test("stall - a leader stopped for twice the dead timeout reports no answering client suspect or dead, and a silent one dead after it", async () => {
  const server = await NatsServer.start();
  const cluster = `stall${process.pid}a`;
  const procs: CoordinatorProcess[] = [];
  const tally = await ReportTally.start(server.url, cluster);
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url });
  // The clients answer from a process of their own, which nothing else keeps busy.
  const sim = Helper.start(new URL("../../harness/client-sim.ts", import.meta.url), [server.url, cluster, "svc.stall"]);
  try {
    await sim.ready;
    const count = 60;
    const subjects = Array.from({ length: count }, (_, n) => SimulatedClients.subject("svc.stall", n));
    const dying = subjects[0]!;
    const answering = subjects.slice(1);
    await app.flush();
    const leader = spawnCoordinator({
      urls: [server.url],
      clusterId: cluster,
      id: "stall-1",
      args: [...SHORT_TIMINGS, "--metrics-port", "0"],
    });
    procs.push(leader);
    await waitForStream(app, cluster);
    await control(app, "svc.stall", { op: "register", from: 0, to: count });
    await observer.waitForHeartbeat("the leader's heartbeat", (h) => h.coordinatorId === "stall-1", 15_000);
    await waitFor("a report of every client", () => subjects.every((s) => tally.of(s).length > 0), 15_000);

    const url = await metricsUrl(leader);
    const stallsBefore = (await scrapeValue(url, "presence_sweep_stalls_total")) ?? 0;
    const secondsBefore = (await scrapeValue(url, "presence_sweep_stalled_seconds_total")) ?? 0;
    const lead = observer.currentLeader()!;
    // One client stops answering just before the stall: its dead timeout ends inside it.
    await control(app, "svc.stall", { op: "silence", from: 0, to: 1 });
    const stallMs = 2 * DEAD_MS;
    const pausedFrom = performance.now();
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
    // The warning names the stall (about the pause, less a sweep interval), unless an earlier
    // stall (a busy machine) was logged in the same throttle window: then it is counted in
    // the window's summary line, logged when the window ends.
    const logged = await waitFor(
      "the stall in the leader's log",
      () =>
        stallWarnings(leader).find((ms) => ms >= pausedMs - 150 && ms <= pausedMs + 1000) ??
        leader.logs().find((l) => String(l.message).startsWith(STALL_SUMMARY) && Date.parse(String(l.timestamp)) >= pause.contAt),
      15_000,
    );
    const stalls = ((await scrapeValue(url, "presence_sweep_stalls_total")) ?? 0) - stallsBefore;
    const stalledSeconds = ((await scrapeValue(url, "presence_sweep_stalled_seconds_total")) ?? 0) - secondsBefore;
    console.log(
      `stopped ${pausedMs} ms: false NodeSuspect ${falseSuspects.length}, false NodeDead ${falseDeaths.length}, ` +
        `stall warnings ${stallWarnings(leader).join(",")} ms${typeof logged === "number" ? "" : " and a summary"}, ` +
        `presence_sweep_stalls_total +${stalls}, stalled seconds +${stalledSeconds.toFixed(3)}, ` +
        `silent client dead ${death.report.ts - pause.contAt} ms after the wake`,
    );

    assert.equal(falseSuspects, [], "no answering client reported suspect");
    assert.equal(falseDeaths, [], "no answering client reported dead");
    assert.is(death.report.ts >= pause.contAt, true, "the silent client was not dead before the stall");
    assert.is(tally.of(dying).filter((s) => s.report.type === "NodeDead").length, 1, "exactly one NodeDead for the silent client");
    // Its deadline moved by the stall: dead within a dead timeout (plus a sweep and the
    // lateness of a busy machine) after the wake, not at once on waking.
    assert.ok(death.report.ts - pause.contAt < DEAD_MS + 1000, `dead ${death.report.ts - pause.contAt} ms after the wake`);
    assert.ok(stallWarnings(leader).length >= 1, "the leader warned that its event loop stalled");
    assert.ok(stalls >= 1, `presence_sweep_stalls_total counts the stall (+${stalls})`);
    // Credited in full, or nearly: stall credit is capped at half of four dead timeouts, and
    // short stalls of a busy machine just before may have used some of it.
    assert.ok(
      stalledSeconds > DEAD_MS / 1000,
      `presence_sweep_stalled_seconds_total holds more than a dead timeout of it (+${stalledSeconds})`,
    );
    assert.equal(
      [...new Set([lead, ...observer.heartbeatsSince(pausedFrom)].map((h) => `${h.coordinatorId} epoch ${h.epoch}`))],
      [`stall-1 epoch ${lead.epoch}`],
      "the leader kept its lease through the stall",
    );
  } catch (err) {
    dumpLogs(procs);
    throw err;
  } finally {
    await sim.stop();
    await Promise.all(procs.map((c) => c.kill()));
    await app.close();
    await tally.close();
    await observer.close();
    await server.stop();
  }
});

test("stall - a leader woken past its renew deadline, whose lease check is slow, suspects nobody for the pings it held back", async () => {
  const server = await NatsServer.start();
  const cluster = `stall${process.pid}c`;
  const procs: CoordinatorProcess[] = [];
  const tally = await ReportTally.start(server.url, cluster);
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const sim = Helper.start(new URL("../../harness/client-sim.ts", import.meta.url), [server.url, cluster, "svc.check"]);
  try {
    await sim.ready;
    const count = 300;
    const subjects = Array.from({ length: count }, (_, n) => SimulatedClients.subject("svc.check", n));
    // Default ping interval and dead timeout; a renew deadline that a 2.5 s pause passes,
    // inside a lease that outlives it.
    const leader = spawnCoordinator({
      urls: [server.url],
      clusterId: cluster,
      id: "check-1",
      args: ["--leader-timeout", "8000", "--renew-deadline", "2000", "--heartbeat-interval", "1000", "--state-interval", "1000"],
    });
    procs.push(leader);
    await waitForStream(app, cluster);
    await control(app, "svc.check", { op: "register", from: 0, to: count });
    await waitFor("a report of every client", () => subjects.every((s) => tally.of(s).length > 0), 20_000);
    const lead = observer.currentLeader()!;
    const before = (
      await waitFor(
        "the leader's next heartbeat",
        () => observer.heartbeats.slice(observer.heartbeats.length - 1).find((h) => h.msg.coordinatorId === leader.id),
        15_000,
      )
    ).msg;
    const pausedFrom = performance.now();
    // Stopped past the renew deadline; on waking, the server holds the answer to its lease
    // check for 300 ms (a slow check: six sweeps), while the leader's sweeps go on.
    leader.signal("SIGSTOP");
    await sleep(2500);
    const contAt = Date.now();
    process.kill(server.pid!, "SIGSTOP");
    try {
      leader.signal("SIGCONT");
      await sleep(300);
    } finally {
      process.kill(server.pid!, "SIGCONT");
    }
    const resumed = (await observer.waitForHeartbeat("the leader heartbeating again", (h) => h.ts > contAt, 15_000)).msg;
    // Every client reported again two ping intervals after the check (a ping held back
    // during the check and counted as sent would be missed by then), or suspect.
    const judgedFrom = resumed.ts + 2 * DEFAULT_PING_INTERVAL_MS;
    await waitFor(
      "a report of every client stamped two ping intervals after the check",
      () => subjects.every((s) => tally.has(s, (r) => r.ts >= judgedFrom || r.type === "NodeSuspect" || r.type === "NodeDead")),
      20_000,
    );
    const confirmed = leader
      .logs()
      .filter((l) => l.message === "lease confirmed after the renew deadline had passed: leading on under the same epoch");
    const suspects = tally.describe("NodeSuspect", subjects);
    console.log(
      `stopped ${contAt - before.ts} ms after a renewal, check answered ${resumed.ts - contAt} ms after the wake: ` +
        `NodeSuspect ${suspects.length}, NodeDead ${tally.describe("NodeDead", subjects).length}, lease confirmed ${confirmed.length}`,
    );
    assert.ok(contAt - before.ts > 2000, "the pause passed the renew deadline");
    assert.ok(confirmed.length >= 1, "the lease was confirmed by a check after the deadline");
    assert.equal(
      [...new Set([lead, ...observer.heartbeatsSince(pausedFrom)].map((h) => `${h.coordinatorId} epoch ${h.epoch}`))],
      [`${leader.id} epoch ${lead.epoch}`],
      "it leads on under its epoch",
    );
    assert.equal(suspects, [], "no client suspect for a ping that was never sent");
    assert.equal(tally.describe("NodeDead", subjects), [], "no client dead");
  } catch (err) {
    dumpLogs(procs);
    throw err;
  } finally {
    await sim.stop();
    await Promise.all(procs.map((c) => c.kill()));
    await app.close();
    await tally.close();
    await observer.close();
    await server.stop();
  }
});

/** The seed of the pause phases below: change it to meet other phases. */
const PHASE_SEED = 20261202;
const CLIENTS = 3000;
const PAUSES = 10;
const PAUSE_MS = 1200;
const REGISTER_BATCH = 500;
/**
 * A pause starts this many ms at most after a heartbeat (a renewal): 1.2 s more ends it
 * 1.7 s after the renewal at the latest, inside the 2 s lease and the followers' 2 s leader
 * timeout, with room for a late SIGCONT and the lease check on waking. A later phase would
 * let the lease expire, which is the handover case at the end.
 */
const MAX_PHASE_MS = 500;
/** A report stamped this soon after SIGSTOP was sent may have been stamped before it landed. */
const SIGNAL_SLACK_MS = 10;
const RENEW_DEADLINE_MS = defaultRenewDeadline(DEFAULT_LEADER_TIMEOUT_MS);

test("stall - a leader of 3,000 clients stopped ten times for 1.2 s keeps its epoch, suspects nobody and reports nothing while stopped; a stop past the lease hands over", async () => {
  const server = await NatsServer.start();
  const cluster = `stall${process.pid}b`;
  const procs: CoordinatorProcess[] = [];
  const tally = await ReportTally.start(server.url, cluster);
  const observer = await Observer.start([server.url], cluster);
  const app = await connect({ servers: server.url });
  const sim = Helper.start(new URL("../../harness/client-sim.ts", import.meta.url), [server.url, cluster, "svc.many"]);
  try {
    await sim.ready;
    const subjects = Array.from({ length: CLIENTS }, (_, n) => SimulatedClients.subject("svc.many", n));
    await app.flush();
    // Default client timings and the default lease.
    for (const id of ["many-1", "many-2"])
      procs.push(spawnCoordinator({ urls: [server.url], clusterId: cluster, id, args: ["--metrics-port", "0"] }));
    await waitForStream(app, cluster);
    await observer.waitForHeartbeat("a leader's heartbeat", (h) => !h.resigning, 15_000);
    // Registered in parts, each reported before the next is sent: a registration storm is
    // not on trial here.
    for (let n = 0; n < CLIENTS; n += REGISTER_BATCH) {
      await control(app, "svc.many", { op: "register", from: n, to: n + REGISTER_BATCH });
      const batch = subjects.slice(n, n + REGISTER_BATCH);
      await waitFor(`a report of clients ${n} to ${n + REGISTER_BATCH - 1}`, () => batch.every((s) => tally.of(s).length > 0), 20_000);
    }
    // The leader from here on, followed by the other coordinator.
    const first = observer.currentLeader()!;
    const leader = procs.find((p) => p.id === first.coordinatorId)!;
    const follower = procs.find((p) => p !== leader)!;
    await waitFor(
      `${follower.id} following ${leader.id}`,
      () => {
        const last = observer.reports.filter((r) => r.msg.coordinatorId === follower.id).at(-1)?.msg;
        return last?.leaderId === leader.id && last.epoch === first.epoch;
      },
      10_000,
    );
    await waitFor(
      `a report of every client from ${leader.id}`,
      () => subjects.every((s) => tally.has(s, (r) => r.epoch === first.epoch)),
      20_000,
    );

    // Ten pauses, each at a seeded random phase after one of the leader's heartbeats.
    const random = createRandom(PHASE_SEED);
    const from = performance.now();
    const pauses: (Pause & { phaseMs: number; heartbeatTs: number; resumedTs: number })[] = [];
    for (let i = 0; i < PAUSES; i++) {
      const phaseMs = random.int(0, MAX_PHASE_MS);
      let heartbeatTs: number;
      for (;;) {
        const seen = observer.heartbeats.length;
        const hb = await waitFor(
          "the leader's next heartbeat",
          () => observer.heartbeats.slice(seen).find((h) => !h.msg.resigning),
          15_000,
        );
        assert.is(`${hb.msg.coordinatorId} epoch ${hb.msg.epoch}`, `${leader.id} epoch ${first.epoch}`, `the leader before pause ${i + 1}`);
        heartbeatTs = hb.msg.ts;
        const wait = heartbeatTs + phaseMs - Date.now();
        if (wait >= -20) {
          if (wait > 0) await sleep(wait);
          break;
        }
        // Heard too late to stop at this phase: take the next heartbeat.
      }
      const pause = await pauseProcess(leader, PAUSE_MS);
      const resumed = await observer.waitForHeartbeat(
        "the leader heartbeating again",
        (h) => h.coordinatorId === leader.id && h.ts > pause.contAt,
        15_000,
      );
      pauses.push({ ...pause, phaseMs: pause.stoppedAt - heartbeatTs, heartbeatTs, resumedTs: resumed.msg.ts });
    }
    // Every deadline a pause could have spoiled passes: each client reported after a dead
    // timeout and a ping interval since the last wake (or reported dead, ending its reports).
    const judgedFrom = pauses.at(-1)!.contAt + DEFAULT_DEAD_TIMEOUT_MS + DEFAULT_PING_INTERVAL_MS;
    await waitFor(
      "a report of every client stamped a dead timeout after the last wake",
      () => subjects.every((s) => tally.has(s, (r) => r.ts >= judgedFrom || r.type === "NodeDead")),
      20_000,
    );

    const stalls = await scrapeValue(await metricsUrl(leader), "presence_sweep_stalls_total");
    // A warning of its own, or a count in the summary that ends a warning's throttle window.
    const warned = await waitFor(
      "every pause warned about in the leader's log",
      () => (stallsWarned(leader) >= PAUSES ? stallsWarned(leader) : undefined),
      15_000,
    );
    const inside = tally.seen.filter((r) => pauses.some((p) => r.report.ts >= p.stoppedAt + SIGNAL_SLACK_MS && r.report.ts < p.contAt));
    // Past the renew deadline at the wake, the leader publishes nothing until its check (a
    // renewal against its own revision) confirms the lease; its heartbeat follows at once.
    const unsure = pauses.filter((p) => p.contAt - p.heartbeatTs > RENEW_DEADLINE_MS);
    const whileUnsure = tally.seen.filter((r) => unsure.some((p) => r.report.ts >= p.contAt && r.report.ts < p.resumedTs));
    const epochs = [...new Set(observer.heartbeatsSince(from).map((h) => `${h.coordinatorId} epoch ${h.epoch}`))];
    /** Where a report's stamp falls: ms after the last wake before it, and which pause that was. */
    const sinceWake = (ts: number): string => {
      const i = pauses.findLastIndex((p) => p.stoppedAt <= ts);
      return i < 0 ? "before the pauses" : `${ts - pauses[i]!.contAt} ms after wake ${i + 1}`;
    };
    const where = (type: string) =>
      tally.seen.filter((r) => r.report.type === type).map((r) => `${r.report.clientSubject} ${sinceWake(r.report.ts)}`);
    console.log(
      `seed ${PHASE_SEED}: ten ${PAUSE_MS} ms pauses at phases ${pauses.map((p) => p.phaseMs).join(",")} ms after a heartbeat ` +
        `(lengths ${pauses.map((p) => p.contAt - p.stoppedAt).join(",")} ms): heartbeat epochs ${epochs.join(", ")}, ` +
        `NodeSuspect ${tally.describe("NodeSuspect", subjects).length}, NodeDead ${tally.describe("NodeDead", subjects).length}, ` +
        `reports inside a pause ${inside.length}, past the renew deadline ${unsure.length} (reports before the check ${whileUnsure.length}), ` +
        `stall warnings ${warned}, presence_sweep_stalls_total ${stalls}`,
    );
    assert.equal(epochs, [`${leader.id} epoch ${first.epoch}`], "one leader, one epoch through every pause");
    assert.equal(
      observer.reportsSince(from).map((r) => `${r.coordinatorId} ${r.type} ${r.reason}`),
      [],
      "no election state changed: no candidate, no step-down",
    );
    assert.equal(
      [...new Set(tally.seen.filter((r) => r.at >= from).map((r) => `${r.report.coordinatorId} epoch ${r.report.epoch}`))],
      [`${leader.id} epoch ${first.epoch}`],
      "every presence report came from the leader under its one epoch",
    );
    assert.equal(where("NodeSuspect"), [], "no answering client reported suspect");
    assert.equal(where("NodeDead"), [], "no answering client reported dead");
    assert.equal(
      inside.map((r) => `${r.report.type} ${r.report.clientSubject} ${sinceWake(r.report.ts)}`),
      [],
      "no report stamped inside a pause",
    );
    assert.equal(
      whileUnsure.map((r) => {
        const p = unsure.find((p) => r.report.ts >= p.contAt && r.report.ts < p.resumedTs)!;
        return `${r.report.type} ${r.report.clientSubject} ${sinceWake(r.report.ts)}, ${p.resumedTs - r.report.ts} ms before its heartbeat (${p.contAt - p.heartbeatTs} ms after the one before the pause)`;
      }),
      [],
      "no report between a wake past the renew deadline and the check",
    );
    // Stall credit is capped (half of four dead timeouts): pauses past it are warned about
    // but not counted or deferred, which at these timings costs no client anything.
    assert.ok((stalls ?? 0) >= 1, `the pauses counted as stalls (presence_sweep_stalls_total ${stalls})`);

    // A pause past the lease: the follower takes over under a new epoch, and the woken
    // leader steps down without publishing anything under its old one.
    const lastBeat = (
      await waitFor(
        "the leader's next heartbeat",
        () => observer.heartbeats.slice(observer.heartbeats.length - 1).find((h) => h.at > from && h.msg.coordinatorId === leader.id),
        15_000,
      )
    ).msg;
    leader.signal("SIGSTOP");
    const longStop = Date.now();
    let longCont = longStop;
    let next: { ts: number; epoch: number; coordinatorId: string };
    try {
      next = (
        await observer.waitForHeartbeat(
          "the follower's heartbeat under a new epoch",
          (h) => h.epoch > first.epoch,
          15_000,
          performance.now(),
        )
      ).msg;
      await sleep(Math.max(0, longStop + 3000 - Date.now())); // three seconds at least
    } finally {
      longCont = Date.now();
      leader.signal("SIGCONT");
    }
    assert.is(next.coordinatorId, follower.id, "the follower took over");
    assert.ok(
      longCont - lastBeat.ts > DEFAULT_LEADER_TIMEOUT_MS,
      `stopped past the lease (${longCont - lastBeat.ts} ms after its last heartbeat)`,
    );
    await observer.waitForReport(
      "the woken leader's SteppedDown",
      (r) => r.coordinatorId === leader.id && r.type === "SteppedDown",
      10_000,
    );
    await waitFor(
      `every client reported under epoch ${next.epoch} or a later one`,
      () => subjects.every((s) => tally.has(s, (r) => r.epoch >= next.epoch && (r.type === "NodePresent" || r.type === "NodeState"))),
      20_000,
    );
    const oldLate = tally.seen.filter((r) => r.report.epoch === first.epoch && r.report.ts >= longStop + SIGNAL_SLACK_MS);
    console.log(
      `stopped ${longCont - longStop} ms: ${follower.id} took over under epoch ${next.epoch} (was ${first.epoch}), ` +
        `old-epoch reports stamped after the stop ${oldLate.length}, NodeSuspect ${tally.describe("NodeSuspect", subjects).length}, ` +
        `NodeDead ${tally.describe("NodeDead", subjects).length}`,
    );
    assert.ok(next.epoch > first.epoch, "a new epoch");
    assert.equal(
      oldLate.map((r) => `${r.report.type} ${r.report.clientSubject} ts ${r.report.ts}`),
      [],
      "nothing under the old epoch after the stop",
    );
    assert.equal(tally.describe("NodeSuspect", subjects), [], "no client suspect across the handover");
    assert.equal(tally.describe("NodeDead", subjects), [], "no client dead across the handover");
  } catch (err) {
    dumpLogs(procs);
    throw err;
  } finally {
    await sim.stop();
    await Promise.all(procs.map((c) => c.kill()));
    await app.close();
    await tally.close();
    await observer.close();
    await server.stop();
  }
});

test.run();
