/**
 * Record and replay: the fixtures recorded from real runs (scripts/record-fixtures.ts)
 * replay with --check semantics and give exactly the recorded reports; a tampered log
 * diverges at the right line; bad logs give errors that name the line; the writer survives
 * a full disk; and a short in-process run, recorded on a SimulatedClock, round-trips.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Writable } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SimulatedClock } from "xstate";
import { DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS, type CoordinatorConfig } from "../../src/config/config.js";
import { routeCommands, type Command, type RegistrationRecord } from "../../src/machines/commands.js";
import type { ReplyFact } from "../../src/machines/liveness.js";
import type { Heartbeat, LeaseHolder } from "../../src/protocol/election.js";
import type { ClientReport } from "../../src/protocol/presence.js";
import { createRandom } from "../../src/machines/random.js";
import { ElectionDriver } from "../../src/election/election-driver.js";
import type { LeaseStore } from "../../src/election/lease-store.js";
import { createLogger } from "../../src/observe/logger.js";
import { LogRecorder, RECORD_FORMAT, RecordWriter, type RecordHeader } from "../../src/observe/record/recorder.js";
import { runReplay } from "../../src/cli/commands/replay.js";
import { formatActors, formatDivergence } from "../../src/cli/print/replay.js";
import { parseRecordLog, RecordLogError, type RecordLog } from "../../src/observe/record/record-log.js";
import { isReport, replayLog } from "../../src/observe/record/replay.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));
const SCENARIOS = ["crash-failover", "client-death", "flapping-client", "graceful-handoff", "re-registration", "partitioned-handover"];

function fixtureLogs(scenario: string): { file: string; log: RecordLog }[] {
  const dir = join(FIXTURES, scenario);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".jsonl"))
    .sort();
  assert.ok(files.length > 0, `${dir} holds no .jsonl logs: run npm run fixtures:record`);
  return files.map((f) => ({ file: f, log: parseRecordLog(readFileSync(join(dir, f), "utf8"), join(dir, f)) }));
}

const reportsOf = (commands: { command: Command }[]) => commands.filter((c) => isReport(c.command)).map((c) => c.command);
/** Every presence report, in order; a batch of NodeState counts one by one. */
const presence = (commands: { command: Command }[]): ClientReport[] =>
  commands.flatMap((c) =>
    c.command.type === "report.presence" ? [c.command.report] : c.command.type === "reports.state" ? c.command.reports : [],
  );

test("fixtures - every scenario was recorded", () => {
  for (const s of SCENARIOS) {
    assert.ok(statSync(join(FIXTURES, s), { throwIfNoEntry: false })?.isDirectory(), `test/fixtures/${s} exists`);
  }
});

for (const scenario of SCENARIOS) {
  test(`replay - the ${scenario} fixture replays to exactly the recorded reports`, () => {
    for (const { file, log } of fixtureLogs(scenario)) {
      const result = replayLog(log, { check: true });
      assert.is(result.divergence, null, `${scenario}/${file}: ${JSON.stringify(result.divergence)}`);
      assert.is(result.entries, log.entries.length, "every entry was fed");
      assert.ok(reportsOf(result.recorded).length > 0, `${file} holds reports`);
      assert.equal(reportsOf(result.produced), reportsOf(result.recorded), `${file}: the report sequence is the recorded one`);
      assert.equal(
        result.produced.map((c) => c.command),
        result.recorded.map((c) => c.command),
        `${file}: every command is the recorded one`,
      );
    }
  });
}

test("replay - the fixtures show what their scenarios are about", () => {
  const types = (scenario: string, file: string, subject?: string) => {
    const log = fixtureLogs(scenario).find((l) => l.file === file)!.log;
    return presence(replayLog(log).produced)
      .filter((r) => subject === undefined || r.clientSubject === subject)
      .map((r) => r.type);
  };
  const death = types("client-death", "cd-a.jsonl", "svc.db.2");
  assert.is(death.filter((t) => t === "NodeDead").length, 1, "one NodeDead");
  assert.is(death.at(-1), "NodeDead", "nothing after NodeDead");
  assert.ok(death.includes("NodeSuspect"), "suspect before dead");
  const flaps = types("flapping-client", "fl-a.jsonl", "svc.cache.2");
  assert.ok(
    flaps.filter((t) => t === "NodeSuspect").length >= 3 && flaps.filter((t) => t === "NodeRecovered").length >= 3,
    flaps.join(","),
  );
  assert.not.ok(flaps.includes("NodeDead"));
  const again = types("re-registration", "rr-a.jsonl", "svc.worker.7");
  assert.is(again.filter((t) => t === "NodePresent").length, 2, "a second NodePresent for the re-registration");
  assert.is(again.at(-1), "NodeLeft");
  for (const [scenario, count] of [
    ["crash-failover", 3],
    ["graceful-handoff", 2],
  ] as const) {
    const leaders = fixtureLogs(scenario).filter(({ log }) =>
      replayLog(log).produced.some((c) => c.command.type === "report.publish" && c.command.report.type === "BecameLeader"),
    );
    assert.is(leaders.length, 2, `${scenario}: both coordinators led, one after the other`);
    const second = leaders.find(({ log }) => presence(replayLog(log).produced).filter((r) => r.type === "NodePresent").length === count);
    assert.ok(second, `${scenario}: a leader reported every client present`);
  }
});

test("replay - the partitioned fixture replays each partition through its own actor system, its commands named by partition", () => {
  const [a, b] = fixtureLogs("partitioned-handover");
  assert.is(a!.file, "ph-a.jsonl");
  assert.is(a!.log.header.config.partitions, 3);
  const ledBy = (log: RecordLog) => {
    const result = replayLog(log, { check: true });
    assert.is(result.divergence, null);
    assert.is(result.partitions, 3);
    assert.ok(
      result.produced.every((c) => c.partition !== undefined && c.partition >= 0 && c.partition < 3),
      "every command names its partition",
    );
    const led = (type: string) =>
      [
        ...new Set(
          result.produced.flatMap((c) => (c.command.type === "report.publish" && c.command.report.type === type ? [c.partition] : [])),
        ),
      ].sort();
    return { result, became: led("BecameLeader"), steppedDown: led("SteppedDown") };
  };
  const first = ledBy(a!.log);
  assert.equal(first.became, [0, 1, 2], "ph-a led every partition");
  const handedOver = a!.log.entries.find((e) => e.entry.kind === "event" && e.entry.event.type === "HAND_OVER")?.entry;
  assert.ok(handedOver, "ph-a handed a partition over");
  assert.equal(first.steppedDown, [handedOver.partition], "and stepped down in that partition only");
  const second = ledBy(b!.log);
  assert.equal(second.became, [0, 1, 2], "ph-b took the handed-over partition, then the others after the crash");
  // Each client is reported by its partition's election: partitionOf over 3 partitions.
  const where = new Map(
    second.result.produced.flatMap((c) => (c.command.type === "report.presence" ? [[c.command.report.clientSubject, c.partition]] : [])),
  );
  assert.equal(Object.fromEntries(where), { "svc.part.7": 2, "svc.part.3": 0, "svc.part.1": 1, "svc.part.8": 1 });
  // Timers are numbered per partition: each partition's first timer is its own timer 1.
  const firstTimers = a!.log.entries.flatMap(({ entry }) => (entry.kind === "timer" && entry.n === 1 ? [entry.partition] : []));
  assert.equal(firstTimers.sort(), [0, 1, 2]);
});

/** The text of a fixture with one line changed. */
function tampered(scenario: string, change: (lines: string[]) => void): RecordLog {
  const { log } = fixtureLogs(scenario)[0]!;
  const lines = readFileSync(log.file, "utf8").trimEnd().split("\n");
  change(lines);
  return parseRecordLog(`${lines.join("\n")}\n`, "tampered.jsonl");
}

test("replay --check - a changed report is found at its line, with expected and actual", () => {
  let changedLine = 0;
  const log = tampered("client-death", (lines) => {
    changedLine = lines.findIndex((l) => l.includes('"NodeDead"')) + 1;
    lines[changedLine - 1] = lines[changedLine - 1]!.replace('"state":"dead"', '"state":"alive"');
  });
  const d = replayLog(log, { check: true }).divergence;
  assert.ok(d, "replay differs");
  assert.is(d.line, changedLine);
  assert.is(d.problem, "the commands differ");
  assert.is((d.expected as { report: ClientReport }).report.type, "NodeDead");
  assert.is((d.expected as { report: ClientReport }).report.state, "alive", "expected: what the (tampered) log says");
  assert.is((d.actual as { report: ClientReport }).report.state, "dead", "actual: what the machines say");
});

test("replay --check - a dropped command and a timer that never fired live are divergences", () => {
  let line = 0;
  const dropped = tampered("re-registration", (lines) => {
    line = lines.findIndex((l) => l.includes('"NodeLeft"')) + 1;
    lines.splice(line - 1, 1);
  });
  const d1 = replayLog(dropped, { check: true }).divergence;
  assert.ok(d1);
  assert.is(d1.problem, "replay produced a command the log does not have here");
  assert.is((d1.actual as { report: ClientReport }).report.type, "NodeLeft");

  const wrongTimer = tampered("client-death", (lines) => {
    line = lines.findIndex((l) => l.includes('"kind":"timer"')) + 1;
    lines[line - 1] = lines[line - 1]!.replace(/"n":\d+/, '"n":99999');
  });
  const d2 = replayLog(wrongTimer, { check: true }).divergence;
  assert.ok(d2);
  assert.is(d2.line, line);
  assert.match(d2.problem, /timer 99999/);
});

test("replay --check - a tampered entry of one partition is a divergence naming that partition", () => {
  let line = 0;
  const changed = tampered("partitioned-handover", (lines) => {
    line = lines.findIndex((l) => l.includes('"NodePresent"') && l.includes('"svc.part.7"')) + 1;
    lines[line - 1] = lines[line - 1]!.replace('"state":"alive"', '"state":"suspect"');
  });
  const d1 = replayLog(changed, { check: true }).divergence;
  assert.ok(d1, "replay differs");
  assert.equal([d1.line, d1.partition, d1.problem], [line, 2, "the commands differ"]);
  assert.is((d1.actual as { report: ClientReport }).report.state, "alive");

  // A command moved to another partition: that partition's machines did not send it.
  const moved = tampered("partitioned-handover", (lines) => {
    line = lines.findIndex((l) => l.includes('"NodePresent"') && l.includes('"svc.part.3"')) + 1;
    lines[line - 1] = lines[line - 1]!.replace('"partition":0}', '"partition":1}');
  });
  const d2 = replayLog(moved, { check: true }).divergence;
  assert.ok(d2, "replay differs");
  assert.equal([d2.line, d2.partition], [line, 1]);
  assert.is((d2.expected as { report: ClientReport }).report.clientSubject, "svc.part.3");

  // A timer fired in the wrong partition: that partition set no such timer yet.
  const timer = tampered("partitioned-handover", (lines) => {
    line = lines.findIndex((l) => l.includes('"kind":"timer"') && l.includes('"partition":2}')) + 1;
    lines[line - 1] = lines[line - 1]!.replace('"partition":2}', '"partition":0}');
  });
  const d3 = replayLog(timer, { check: true }).divergence;
  assert.ok(d3, "replay differs");
  assert.equal([d3.line, d3.partition], [line, 0]);
  assert.match(d3.problem, /^the log fires timer \d+/);
});

test("replay - the printed commands and the divergence name their partition; --until lists every partition's actors", async () => {
  const file = join(FIXTURES, "partitioned-handover", "ph-b.jsonl");
  const out = sink();
  assert.is(await runReplay({ file, json: false, check: false, out, err: sink() }), 0);
  const lines = out.text().trimEnd().split("\n");
  assert.ok(
    lines.every((l) => /^ +\d+\.\d{3} ms {2}p[012] {2}\S/.test(l) || /^ {30,}reports\.state /.test(l)),
    lines.slice(0, 5).join("\n"),
  );
  assert.ok(lines.some((l) => / p2 {2}report\.presence NodePresent svc\.part\.7 /.test(l)));
  const check = sink();
  assert.is(await runReplay({ file, json: false, check: true, out: check, err: sink() }), 0);
  assert.match(check.text(), /replayed through 3 partitions' actor systems; all \d+ commands \(\d+ reports\) match the log\n$/);
  const json = sink();
  assert.is(await runReplay({ file, json: true, check: true, out: json, err: sink() }), 0);
  assert.is((JSON.parse(json.text()) as { partitions: number }).partitions, 3);

  const { log } = fixtureLogs("partitioned-handover")[1]!;
  const resigning = log.entries.find(({ entry }) => entry.kind === "event" && entry.event.type === "RESIGN")!.entry;
  const actors = replayLog(log, { until: resigning.t - 1 }).until!.actors;
  assert.equal(
    actors.filter((a) => a.kind === "election").map((a) => a.partition),
    [0, 1, 2],
  );
  const clients = actors.filter((a) => a.kind === "client").map((a) => `${a.partition}:${a.id.split("/")[1]}`);
  assert.equal(clients.sort(), ["0:svc.part.3", "1:svc.part.1", "1:svc.part.8", "2:svc.part.7"]);
  const tree = formatActors(replayLog(log, { until: resigning.t - 1 }).until!).split("\n");
  const p1 = tree.indexOf("  partition 1");
  assert.ok(p1 > 0, tree.join("\n"));
  assert.match(tree[p1 + 1]!, /^ {4}election \{"leader"/);
  assert.match(tree.find((l) => l.trim().startsWith("svc.part.8"))!, /^ {10}svc\.part\.8 /);

  const tamperedFile = formatDivergence(
    { line: 7, index: 6, t: 12.5, partition: 2, problem: "the commands differ", expected: null, actual: null },
    "x.jsonl",
  );
  assert.match(tamperedFile, /^replay differs from x\.jsonl at entry 6 \(line 7, partition 2, t=12\.500 ms\): the commands differ/);
});

/** The first line (1-based) of a fixture's text that holds `text`. */
const lineOf = (lines: string[], text: string, from = 0) => lines.findIndex((l, i) => i >= from && l.includes(text)) + 1;

test("replay --check - a log whose deadTimeoutMs was changed diverges at the NodeDead its sweep found", () => {
  let line = 0;
  const log = tampered("client-death", (lines) => {
    const h = JSON.parse(lines[0]!) as RecordHeader;
    line = lineOf(lines, '"NodeDead"');
    h.config.deadTimeoutMs += 500;
    lines[0] = JSON.stringify(h);
  });
  const d = replayLog(log, { check: true }).divergence;
  assert.ok(d, "replay differs");
  assert.is(d.line, line, "no timer per client: the death is a sweep's verdict, and replay's sweep does not find it");
  assert.is((d.expected as { report: ClientReport }).report.type, "NodeDead");
  assert.not.equal((d.actual as { report?: ClientReport } | null)?.report?.type, "NodeDead");
});

test("replay --check - a log whose sweepIntervalMs was changed diverges at the first sweep timer", () => {
  let line = 0;
  const log = tampered("client-death", (lines) => {
    const h = JSON.parse(lines[0]!) as RecordHeader;
    line = lineOf(lines, `"ms":${h.config.sweepIntervalMs}}`);
    h.config.sweepIntervalMs += 10;
    lines[0] = JSON.stringify(h);
  });
  const d = replayLog(log, { check: true }).divergence;
  assert.ok(d, "replay differs");
  assert.is(d.line, line);
  assert.match(d.problem, /set for 50 ms, but replay set it for 60 ms/);
});

test("replay --check - a log whose leaderTimeoutMs was changed diverges at the first timer", () => {
  let line = 0;
  const log = tampered("crash-failover", (lines) => {
    const h = JSON.parse(lines[0]!) as RecordHeader;
    line = lineOf(lines, '"kind":"timer"');
    h.config.leaderTimeoutMs += 1000;
    lines[0] = JSON.stringify(h);
  });
  const d = replayLog(log, { check: true }).divergence;
  assert.ok(d, "replay differs");
  assert.is(d.line, line);
  assert.match(d.problem, /set for 2000 ms, but replay set it for 3000 ms/);
});

test("replay --check - a timer whose recorded length was changed is a divergence at its line", () => {
  let line = 0;
  const log = tampered("flapping-client", (lines) => {
    const sweeps = lines.flatMap((l, i) => (l.includes('"ms":50}') ? [i + 1] : []));
    line = sweeps[5]!; // a sweep timer in the middle of the run
    lines[line - 1] = lines[line - 1]!.replace('"ms":50}', '"ms":70}');
  });
  const d = replayLog(log, { check: true }).divergence;
  assert.ok(d, "replay differs");
  assert.is(d.line, line);
  assert.match(d.problem, /set for 70 ms, but replay set it for 50 ms/);
});

test("replay --check - an extra command line is reported at its line, in the middle and at the end of the log", () => {
  let line = 0;
  const doubled = tampered("client-death", (lines) => {
    line = lineOf(lines, '"NodeSuspect"');
    lines.splice(line, 0, lines[line - 1]!); // the same report twice in a row
    line += 1;
  });
  const d1 = replayLog(doubled, { check: true }).divergence;
  assert.ok(d1, "replay differs");
  assert.is(d1.line, line, "the second copy is the extra one");
  assert.is(d1.problem, "the log has a command replay did not produce");
  assert.is((d1.expected as { report: ClientReport }).report.type, "NodeSuspect");
  assert.is(d1.actual, null);

  const appended = tampered("client-death", (lines) => {
    const last = JSON.parse(lines.at(-1)!) as { t: number };
    lines.push(JSON.stringify({ kind: "command", t: last.t, command: { type: "heartbeat.publish", epoch: 1, resigning: false } }));
    line = lines.length;
  });
  const d2 = replayLog(appended, { check: true }).divergence;
  assert.ok(d2, "replay differs");
  assert.is(d2.line, line);
  assert.is(d2.problem, "the log has a command replay did not produce");
});

test("replay --until - stops there and describes every actor", () => {
  const { log } = fixtureLogs("client-death")[0]!;
  const death = log.entries.findIndex((e) => e.entry.kind === "command" && JSON.stringify(e.entry).includes('"NodeDead"'));
  const nodeDeadAt = log.entries[death]!.entry.t;
  // The sweep that found it dead: the commands it produced are logged a little later.
  const sweepAt = log.entries.slice(0, death).findLast((e) => e.entry.kind === "event")!.entry.t;
  const before = replayLog(log, { until: sweepAt - 0.001 });
  const actors = before.until!.actors;
  assert.equal(actors[0]!.id, "election");
  assert.ok(typeof actors[0]!.value === "object" && "leader" in (actors[0]!.value as object), "the election leads");
  assert.equal(actors.find((a) => a.kind === "monitor")?.value, { registrations: "running", sweeping: "waiting" });
  const clients = actors.filter((a) => a.kind === "client");
  assert.equal(clients.map((c) => c.id.split("/")[1]).sort(), ["svc.db.1", "svc.db.2"]);
  assert.is(clients.find((c) => c.id.endsWith("svc.db.2"))!.detail.state, "suspect");
  // The live client's last reply, read from its shard's table: its actor heard no event of it.
  const replies = log.entries.flatMap(({ entry }) =>
    entry.kind === "event" && entry.t < sweepAt && entry.event.type === "SWEEP"
      ? entry.event.replies.filter((r) => r.subject === "svc.db.1")
      : [],
  );
  assert.ok(replies.length > 2, "svc.db.1 replied");
  const db1 = clients.find((c) => c.id.endsWith("svc.db.1"))!.detail;
  assert.equal([db1.state, db1.lastSeenMs, db1.rttMs, db1.missedPings], ["alive", replies.at(-1)!.atMs, replies.at(-1)!.rttMs, 0]);
  const after = replayLog(log, { until: nodeDeadAt + 1 });
  assert.equal(
    after.until!.actors.filter((a) => a.kind === "client").map((c) => c.id.split("/")[1]),
    ["svc.db.1"],
    "the dead client's actor is gone",
  );
});

/** A stream that keeps what is written to it. */
function sink(): NodeJS.WritableStream & { text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write: (c, _e, cb) => {
      chunks.push(String(c));
      cb();
    },
  });
  return Object.assign(w, { text: () => chunks.join("") });
}

test("replay - the printed commands leave out the sweeps' replies.collect, say so, and print each NodeState of a batch on a line", async () => {
  const file = join(FIXTURES, "client-death", "cd-a.jsonl");
  const out = sink();
  const err = sink();
  assert.is(await runReplay({ file, json: false, check: false, out, err }), 0);
  const lines = out.text().trimEnd().split("\n");
  const produced = replayLog(fixtureLogs("client-death")[0]!.log).produced;
  const collects = produced.filter((c) => c.command.type === "replies.collect").length;
  assert.ok(collects > 20);
  assert.not.ok(
    lines.some((l) => l.includes("replies.collect")),
    "no replies.collect line",
  );
  assert.is(
    err.text(),
    `(${collects} replies.collect commands, one per sweep interval of 50 ms, are not shown; --json shows every command)\n`,
  );
  const states = produced.flatMap((c) => (c.command.type === "reports.state" ? c.command.reports : []));
  const pings = produced.filter((c) => c.command.type === "clients.ping").length;
  const others = produced.length - collects - pings - produced.filter((c) => c.command.type === "reports.state").length;
  assert.is(lines.length, others + pings + states.length, "one line per command, and per NodeState of a batch");
  assert.ok(
    lines.some((l) => /^ +\d+\.\d{3} ms {2}clients\.ping svc\.db\.\d( svc\.db\.\d)*$/.test(l)),
    "a ping line names its subjects",
  );
  const db2 = states.find((r) => r.clientSubject === "svc.db.2")!;
  assert.ok(
    lines.some((l) =>
      l.endsWith(
        `reports.state NodeState svc.db.2 state=${db2.state} lastSeenMs=${db2.lastSeenMs} rttMs=${db2.rttMs} missedPings=${db2.missedPings} {"role":"replica"}`,
      ),
    ),
    "a NodeState line reads like a report.presence line, metadata included",
  );
  const json = sink();
  await runReplay({ file, json: true, check: false, out: json, err: sink() });
  assert.is(json.text().trimEnd().split("\n").length, produced.length, "--json prints every command");
});

// --- reading bad logs ---

const header = (over: Partial<RecordHeader> = {}): string =>
  JSON.stringify({
    kind: "header",
    format: RECORD_FORMAT,
    version: "0.1.0",
    config: testConfig(),
    seed: 1,
    coordinatorId: "me",
    startedAt: "2026-01-01T00:00:00.000Z",
    ...over,
  });

function readError(text: string): RecordLogError {
  try {
    parseRecordLog(text, "bad.jsonl");
  } catch (err) {
    assert.instance(err, RecordLogError);
    return err as RecordLogError;
  }
  throw new assert.Assertion({ message: "the log was accepted", generated: false, operator: "throws", expects: "error", actual: "none" });
}

test("record log - a corrupt line is refused with its line number", () => {
  const e = readError(`${header()}\n{"kind":"start","t":1}\n{"kind":"event","t":2,garbage\n{"kind":"stop","t":3}\n`);
  assert.is(e.line, 3);
  assert.match(e.message, /^bad\.jsonl, line 3: not JSON/);
});

test("record log - a truncated last line is refused as truncated, naming the line", () => {
  const e = readError(`${header()}\n{"kind":"start","t":1}\n{"kind":"command","t":2,"command":{"type":"lease.cr`);
  assert.is(e.line, 3);
  assert.match(e.message, /line 3: truncated/);
});

test("record log - a newer format is refused on line 1, saying which version wrote it", () => {
  const e = readError(`${header({ format: RECORD_FORMAT + 1, version: "9.0.0" })}\n{"kind":"start","t":1}\n`);
  assert.is(e.line, 1);
  assert.match(
    e.message,
    new RegExp(`format ${RECORD_FORMAT + 1}, newer than this presence-coordinator reads \\(format ${RECORD_FORMAT}\\)`),
  );
  assert.match(e.message, /9\.0\.0/);
});

test("record log - a format-1 log (one event per ping reply) is refused on line 1, naming the version to replay it with", () => {
  const e = readError(`${header({ format: 1, version: "0.0.9" })}\n{"kind":"start","t":1}\n`);
  assert.is(e.line, 1);
  assert.is(RECORD_FORMAT, 2);
  assert.match(e.message, /^bad\.jsonl, line 1: the log has format 1, which recorded one event per ping reply/);
  assert.match(
    e.message,
    /sweeps \(format 2\) and cannot replay it exactly: replay it with the presence-coordinator that wrote it \(version 0\.0\.9, a build that writes record format 1\)$/,
  );
});

test("record log - an entry's partition must be below the header's count, and present when it has several", () => {
  const several = header({ config: { ...testConfig(), partitions: 3 } });
  const ok = parseRecordLog(
    `${several}\n{"kind":"start","t":1,"partition":2}\n{"kind":"info","t":2,"what":"connection","status":"reconnect"}\n`,
    "ok",
  );
  assert.is(ok.entries[0]!.entry.partition, 2);
  const beyond = readError(`${several}\n{"kind":"start","t":1,"partition":0}\n{"kind":"stop","t":2,"partition":3}\n`);
  assert.is(beyond.line, 3);
  assert.match(beyond.message, /partition 3: must be a whole number from 0 to 2 \(the header's config\.partitions is 3\)$/);
  assert.match(readError(`${several}\n{"kind":"start","t":1,"partition":1.5}\n`).message, /partition 1\.5: must be a whole number/);
  assert.match(readError(`${several}\n{"kind":"start","t":1,"partition":-1}\n`).message, /partition -1: must be/);
  assert.match(
    readError(`${several}\n{"kind":"start","t":1}\n`).message,
    /start entry without a partition: the header says the coordinator ran 3 partitions/,
  );
  assert.match(
    readError(`${header()}\n{"kind":"start","t":1,"partition":0}\n`).message,
    /entry of partition 0, but the header's config has one partition/,
  );
  assert.match(
    readError(header({ config: { ...testConfig(), partitions: 0 } })).message,
    /config\.partitions must be a whole number from 1 to 1024, not 0/,
  );
  assert.match(
    readError(header({ config: { ...testConfig(), partitions: 5_000_000 } })).message,
    /config\.partitions must be a whole number from 1 to 1024, not 5000000/,
  );
});

test("record log - a missing header, an unknown kind and time going backwards are refused with their lines", () => {
  assert.is(readError(`{"kind":"start","t":1}\n`).line, 1);
  assert.match(readError("").message, /empty/);
  const unknown = readError(`${header()}\n{"kind":"start","t":1}\n{"kind":"mystery","t":2}\n`);
  assert.is(unknown.line, 3);
  assert.match(unknown.message, /unknown entry kind "mystery"/);
  const backwards = readError(`${header()}\n{"kind":"start","t":5}\n{"kind":"stop","t":4}\n`);
  assert.is(backwards.line, 3);
  assert.match(backwards.message, /time goes backwards/);
  assert.is(readError(`${header()}\n{"kind":"timer","t":5,"n":0,"ms":3}\n`).line, 2);
});

// --- writing ---

/** Polls `done` until it holds, or fails after `timeoutMs`: the writer flushes on its own timer. */
async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) assert.unreachable(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test("record writer - a full disk is reported once; recording stops and nothing throws", async () => {
  const written: string[] = [];
  const errors: unknown[] = [];
  let writes = 0;
  const writer = new RecordWriter(
    {
      write: async (data) => {
        writes += 1;
        if (writes >= 2) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        written.push(data);
      },
      close: async () => undefined,
    },
    { onError: (err) => errors.push(err), flushIntervalMs: 5 },
  );
  writer.writeLine("one");
  await until("the first write", () => writes === 1);
  writer.writeLine("two");
  await until("the failed write reported", () => errors.length === 1);
  writer.writeLine("three");
  writer.writeLine("four");
  await writer.close();
  assert.equal(written, ["one\n"]);
  assert.is(errors.length, 1, "reported once");
  assert.is(writer.active, false);
});

test("record writer - a disk that cannot keep up stops recording instead of growing the buffer without end", async () => {
  const errors: unknown[] = [];
  let release: (() => void) | undefined;
  const writer = new RecordWriter(
    {
      // The first write never finishes until the end of the test: everything after it waits.
      write: () => new Promise<void>((resolve) => (release = resolve)),
      close: async () => undefined,
    },
    { onError: (err) => errors.push(err), flushIntervalMs: 1, flushAtChars: 100, maxBufferedChars: 1000 },
  );
  writer.writeLine("first");
  await until("the first write to start", () => release !== undefined);
  for (let i = 0; i < 200; i++) writer.writeLine(`line ${i} waiting for the disk`);
  assert.is(errors.length, 1, "reported once");
  assert.match(String(errors[0]), /disk is too slow/);
  assert.is(writer.active, false);
  release?.();
  await writer.close();
});

test("record writer - close writes the buffered tail before it closes the file", async () => {
  const written: string[] = [];
  let closed = false;
  const writer = new RecordWriter(
    {
      write: async (data) => {
        await new Promise((r) => setImmediate(r)); // a write that takes a turn of the event loop
        written.push(data);
      },
      close: async () => {
        closed = true;
      },
    },
    { onError: () => assert.unreachable("no error"), flushIntervalMs: 60_000, flushAtChars: 10 },
  );
  for (let i = 0; i < 50; i++) writer.writeLine(`line ${i}`);
  await writer.close();
  assert.ok(closed);
  assert.equal(
    written.join("").trimEnd().split("\n"),
    Array.from({ length: 50 }, (_, i) => `line ${i}`),
  );
});

// --- round trip of an in-process run ---

function testConfig(): CoordinatorConfig {
  return {
    natsUrls: ["nats://127.0.0.1:4222"],
    clusterId: "rt",
    coordinatorId: "me",
    ...DEFAULT_TIMINGS,
    ...DEFAULT_MONITOR_TIMINGS,
    reportEncoding: "json",
    connectTimeoutMs: 5000,
    kvReplicas: 1,
    maxClients: 100_000,
    shardCount: 8,
    logFormat: "json",
    verbose: false,
    seed: 99,
  };
}

test("record and replay - a short in-process run on a SimulatedClock round-trips to the same reports", async () => {
  const config = testConfig();
  const clock = new SimulatedClock();
  const text: string[] = [header({ config, seed: config.seed, coordinatorId: config.coordinatorId })];
  const writer = new RecordWriter(
    { write: async (d) => void text.push(d.trimEnd()), close: async () => undefined },
    { onError: (err) => assert.unreachable(String(err)) },
  );
  const recorder = new LogRecorder(writer, () => clock.now());
  let revision = 1;
  const lease: LeaseStore = {
    acquire: async () => {
      revision = 7;
      return { epoch: 7, revision };
    },
    renew: async () => ++revision,
    release: async () => undefined,
    holder: async (): Promise<LeaseHolder | null> => null,
  };
  let hear: ((hb: Heartbeat) => void) | undefined;
  const silent = "svc.quiet";
  let driver: ElectionDriver | undefined;
  const later = (f: () => void) => void Promise.resolve().then(f);
  const at = () => 1_700_000_000_000 + clock.now();
  const record = (subject: string): RegistrationRecord => ({ registration: { subject, metadata: {} }, revision: 3, atMs: at() });
  const replies: ReplyFact[] = [];
  driver = new ElectionDriver({
    coordinatorId: config.coordinatorId,
    clusterId: config.clusterId,
    timings: config,
    random: createRandom(config.seed),
    monitor: { ...DEFAULT_MONITOR_TIMINGS, shardCount: config.shardCount },
    outbox: routeCommands({
      election: (c) => driver!.execute(c),
      presence: (c) => {
        if (c.type === "registrations.load")
          later(() => driver!.sendToMonitor({ type: "REGISTRATIONS_LOADED", records: [record("svc.ok")] }));
        if (c.type === "registrations.pull") later(() => driver!.sendToMonitor({ type: "REGISTERED", record: record(silent) }));
        // The edge: replies are kept until the next replies.collect, which one SWEEP answers.
        if (c.type === "clients.ping")
          for (const subject of c.subjects) if (subject !== silent) later(() => replies.push({ subject, atMs: at(), rttMs: 0.5 }));
        if (c.type === "replies.collect")
          later(() => driver!.sendToMonitor({ type: "SWEEP", atMs: at(), stalledMs: 0, replies: replies.splice(0) }));
      },
    }),
    lease,
    heartbeats: {
      publish: (hb) => later(() => hear?.(hb)),
      subscribe: (h) => {
        hear = h;
        return () => {
          hear = undefined;
        };
      },
    },
    reports: { publish: () => undefined },
    logger: createLogger({ format: "json", verbose: false, stream: new Writable({ write: (_c, _e, cb) => cb() }) }),
    isConnected: () => true,
    now: () => clock.now(),
    clock,
    recorder,
  });
  driver.start();
  for (let i = 0; i < 10_000; i++) {
    clock.increment(1);
    await Promise.resolve();
    await Promise.resolve();
  }
  const resigned = driver.resign(1000);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  await resigned;
  await writer.close();

  const log = parseRecordLog(`${text.join("\n")}\n`, "in-process.jsonl");
  const result = replayLog(log, { check: true });
  assert.is(result.divergence, null, JSON.stringify(result.divergence));
  const types = presence(result.produced).map((r) => `${r.type} ${r.clientSubject}`);
  assert.ok(types.includes(`NodeDead ${silent}`), types.join(", "));
  assert.ok(types.includes("NodeState svc.ok"));
  assert.not.ok(types.includes("NodeDead svc.ok"));
  assert.equal(reportsOf(result.produced), reportsOf(result.recorded));
  assert.ok(
    log.entries.some((e) => e.entry.kind === "timer"),
    "timers were recorded",
  );
  const last = reportsOf(result.produced).at(-1);
  assert.ok(last?.type === "report.publish" && last.report.type === "Stopped", "the resignation's last report is in the log");
});

test.run();
