import { test } from "uvu";
import * as assert from "uvu/assert";
import { COMMAND_EXECUTOR, routeCommands, type Command } from "../../src/machines/commands.js";

const route = () => {
  const seen: string[] = [];
  const send = routeCommands({
    election: (c) => seen.push(`election ${c.type}`),
    presence: (c) => seen.push(`presence ${c.type}`),
  });
  return { seen, send };
};

test("commands - the election's go to the driver, the monitor's to the presence edge", () => {
  const { seen, send } = route();
  const commands: Command[] = [
    { type: "lease.renew", epoch: 3, revision: 9 },
    { type: "clients.ping", subjects: ["svc.a"], keys: [0] },
    { type: "heartbeat.publish", epoch: 3, resigning: false },
    { type: "registration.remove", subject: "svc.a", revision: 4 },
    { type: "monitor.stop" },
  ];
  for (const c of commands) send(c);
  assert.equal(seen, [
    "election lease.renew",
    "presence clients.ping",
    "election heartbeat.publish",
    "presence registration.remove",
    "presence monitor.stop",
  ]);
});

test("commands - every command has exactly one side", () => {
  const { seen, send } = route();
  const types = Object.keys(COMMAND_EXECUTOR) as Command["type"][];
  for (const type of types) send({ type } as Command);
  assert.is(seen.length, types.length);
  assert.equal(
    seen.map((line) => line.split(" ")[0]),
    types.map((type) => COMMAND_EXECUTOR[type]),
  );
  assert.equal(types.filter((t) => COMMAND_EXECUTOR[t] === "election").sort(), [
    "heartbeat.publish",
    "lease.create",
    "lease.release",
    "lease.renew",
    "report.publish",
  ]);
});

test.run();
