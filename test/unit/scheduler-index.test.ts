/**
 * The scheduler index: stopping an actor cancels exactly its own timers (through XState's
 * own cancel), and nothing else changes. SimulatedClock, recording outbox, no NATS.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, setup, SimulatedClock, type AnyActorRef } from "xstate";
import { DEFAULT_MONITOR_TIMINGS as P } from "../../src/config.js";
import type { Command } from "../../src/machines/commands.js";
import { monitorMachine } from "../../src/machines/monitor.js";
import { indexScheduler } from "../../src/services/scheduler-index.js";

function monitorWith(subjects: string[], indexed: boolean) {
  const clock = new SimulatedClock();
  const commands: { at: number; command: Command }[] = [];
  const root = setup({
    actors: {
      outbox: fromCallback<Command>(({ receive }) => receive((command) => commands.push({ at: clock.now(), command }))),
      monitor: monitorMachine,
    },
  }).createMachine({
    invoke: [
      { src: "outbox", id: "outbox", systemId: "outbox" },
      { src: "monitor", id: "monitor", systemId: "monitor", input: { settings: { ...P, shardCount: 4 } } },
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
  return { clock, commands, actor, monitor, scheduled };
}

test("scheduler index - a client that dies cancels only its own timers; the others keep their rhythm", () => {
  for (const indexed of [false, true]) {
    const m = monitorWith(["a", "b", "c"], indexed);
    // b answers every ping, a and c never: they die at the dead timeout, b does not.
    for (let t = 0; t < P.deadTimeoutMs + P.pingIntervalMs; t += 10) {
      const before = m.commands.length;
      m.clock.increment(10);
      for (const { command } of m.commands.slice(before)) {
        if (command.type === "client.ping" && command.subject === "b") m.monitor.send({ type: "PONG", subject: "b", atMs: m.clock.now(), rttMs: 1 });
      }
    }
    const dead = m.commands.filter((c) => c.command.type === "report.presence" && c.command.report.type === "NodeDead");
    assert.equal(dead.map((c) => (c.command.type === "report.presence" ? c.command.report.clientSubject : "")).sort(), ["a", "c"], `indexed=${indexed}`);
    const sources = new Set(m.scheduled().map((e) => e.source.id));
    assert.ok(!sources.has("a") && !sources.has("c"), "the dead clients' timers are gone");
    assert.ok(sources.has("b"), "the live client's timers are still set");
    m.actor.stop();
    assert.is(m.scheduled().length, 0, "stopping the system cancels every timer");
  }
});

test("scheduler index - the same commands at the same times with and without the index", () => {
  const run = (indexed: boolean) => {
    const m = monitorWith(["x1", "x2", "x3", "x4"], indexed);
    for (let t = 0; t < 8000; t += 50) {
      const before = m.commands.length;
      m.clock.increment(50);
      for (const { command } of m.commands.slice(before)) {
        if (command.type === "client.ping" && command.subject !== "x3") m.monitor.send({ type: "PONG", subject: command.subject, atMs: m.clock.now(), rttMs: 1 });
      }
    }
    return m.commands;
  };
  const plain = run(false);
  assert.ok(plain.length > 50);
  assert.equal(run(true), plain);
});

test.run();
