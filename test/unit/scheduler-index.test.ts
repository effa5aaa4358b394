/**
 * The scheduler index: stopping an actor cancels exactly its own timers (through XState's
 * own cancel), and nothing else changes. SimulatedClock, recording outbox, no NATS.
 *
 * Client actors keep no timer now (their shard sweeps their liveness); the timers are the
 * monitor's sweep and the election's. Stopping actors must still leave every other timer be.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS as P } from "../../src/config/config.js";
import type { Command } from "../../src/machines/commands.js";
import type { ReplyFact } from "../../src/machines/liveness.js";
import { monitorMachine } from "../../src/machines/monitor.js";
import { indexScheduler } from "../../src/machines/scheduler-index.js";

const settings = { ...P, shardCount: 4 };

/** A monitor whose outbox answers each sweep, as the edge does, with replies of `answering` to its pings. */
function monitorWith(subjects: string[], indexed: boolean, answering: (subject: string) => boolean) {
  const clock = new SimulatedClock();
  const commands: { at: number; command: Command }[] = [];
  let inFlight: ReplyFact[] = [];
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) =>
        receive((command) => {
          commands.push({ at: clock.now(), command });
          if (command.type === "clients.ping") {
            for (const subject of command.subjects) if (answering(subject)) inFlight.push({ subject, atMs: clock.now() + 1, rttMs: 1 });
          } else if (command.type === "replies.collect") {
            const replies = inFlight.filter((r) => r.atMs <= clock.now());
            inFlight = inFlight.filter((r) => r.atMs > clock.now());
            monitor.send({ type: "SWEEP", atMs: clock.now(), stalledMs: 0, replies });
          }
        }),
      ),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", id: "outbox", systemId: "outbox" },
      { src: "monitor", id: "monitor", systemId: "monitor", input: { settings } },
    ],
  });
  const actor = createActor(root, { clock });
  if (indexed) indexScheduler(actor.system);
  actor.start();
  const monitor = actor.system.get("monitor") as AnyActorRef;
  monitor.send({
    type: "REGISTRATIONS_LOADED",
    records: subjects.map((subject, i) => ({ registration: { subject, metadata: {} }, revision: i + 1, atMs: 0 })),
  });
  const scheduled = () => Object.values(actor.system.getSnapshot()._scheduledEvents);
  const pings = (subject: string) =>
    commands.filter((c) => c.command.type === "clients.ping" && c.command.subjects.includes(subject)).map((c) => c.at);
  return { clock, commands, actor, monitor, scheduled, pings };
}

test("scheduler index - clients that die cancel none of the monitor's timers; the live client keeps its rhythm", () => {
  for (const indexed of [false, true]) {
    // b answers every ping, a and c never: they die at the dead timeout, b does not.
    const m = monitorWith(["a", "b", "c"], indexed, (s) => s === "b");
    const RUN = P.deadTimeoutMs + 3 * P.pingIntervalMs;
    for (let t = 0; t < RUN; t += 10) m.clock.increment(10);
    const dead = m.commands.filter((c) => c.command.type === "report.presence" && c.command.report.type === "NodeDead");
    assert.equal(
      dead.map((c) => (c.command.type === "report.presence" ? c.command.report.clientSubject : "")).sort(),
      ["a", "c"],
      `indexed=${indexed}`,
    );
    assert.equal(
      m.scheduled().map((e) => e.source.id),
      ["monitor"],
      "the one timer left is the monitor's sweep",
    );
    // After the deaths, the sweep goes on every sweep interval and b is pinged on its rhythm.
    const diedAt = dead[0]!.at;
    const sweeps = m.commands.filter((c) => c.command.type === "replies.collect" && c.at > diedAt).map((c) => c.at);
    assert.equal(
      sweeps,
      Array.from({ length: sweeps.length }, (_, i) => diedAt + (i + 1) * P.sweepIntervalMs),
      "sweeps on",
    );
    assert.ok(sweeps.length >= (RUN - diedAt) / P.sweepIntervalMs - 1);
    const after = m.pings("b").filter((t) => t > diedAt);
    assert.ok(after.length >= 2, `b pinged ${after.length} times after the deaths`);
    for (let i = 1; i < after.length; i++) {
      const gap = after[i]! - after[i - 1]!;
      assert.ok(gap >= P.pingIntervalMs && gap <= P.pingIntervalMs + P.sweepIntervalMs, `b pinged again after ${gap} ms`);
    }
    m.actor.stop();
    assert.is(m.scheduled().length, 0, "stopping the system cancels every timer");
  }
});

test("scheduler index - stopping one monitor cancels its sweep, and another with the same timer id sweeps on", () => {
  for (const indexed of [false, true]) {
    const clock = new SimulatedClock();
    const asks: number[] = [];
    const root = setup({
      actors: {
        outbox: fromCallback<Command>(({ receive }) => receive((c) => void (c.type === "replies.collect" && asks.push(clock.now())))),
        monitor: monitorMachine,
      },
    }).createMachine({
      type: "parallel",
      invoke: { src: "outbox", systemId: "outbox" },
      states: {
        one: {
          initial: "leading",
          states: {
            leading: { invoke: { src: "monitor", id: "m1", input: { settings } }, on: { STOP_ONE: "stopped" } },
            stopped: {},
          },
        },
        two: { invoke: { src: "monitor", id: "m2", input: { settings } } },
      },
    });
    const actor = createActor(root, { clock });
    if (indexed) indexScheduler(actor.system);
    actor.start();
    const owners = () =>
      Object.values(actor.system.getSnapshot()._scheduledEvents)
        .map((e) => e.source.id)
        .sort();
    for (let t = 0; t < 500; t += 10) clock.increment(10);
    assert.equal(owners(), ["m1", "m2"], `indexed=${indexed}: each monitor has its sweep timer`);
    assert.is(asks.length, 2 * (500 / P.sweepIntervalMs), "both sweep");
    actor.send({ type: "STOP_ONE" });
    assert.equal(owners(), ["m2"], `indexed=${indexed}: only the stopped monitor's timer is gone`);
    const before = asks.length;
    for (let t = 0; t < 500; t += 10) clock.increment(10);
    assert.is(asks.length - before, 500 / P.sweepIntervalMs, "the other sweeps on, every sweep interval");
    actor.stop();
    assert.equal(owners(), []);
  }
});

test("scheduler index - the same commands at the same times with and without the index", () => {
  const run = (indexed: boolean) => {
    const m = monitorWith(["x1", "x2", "x3", "x4"], indexed, (s) => s !== "x3");
    for (let t = 0; t < 8000; t += 50) m.clock.increment(50);
    return m.commands;
  };
  const plain = run(false);
  const types = new Set(plain.map((c) => c.command.type));
  for (const t of ["clients.ping", "reports.state", "report.presence", "registration.remove"])
    assert.ok(types.has(t as Command["type"]), `the run has ${t}`);
  assert.ok(plain.length > 150);
  assert.equal(run(true), plain);
});

test.run();
