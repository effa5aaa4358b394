/** The replay command's text: one line per command, a divergence, the actors' states. */
import type { Command } from "../../machines/commands.js";
import type { Divergence, ReplayResult, TimedCommand } from "../../observe/record/replay.js";
import type { ClientReport } from "../../protocol/presence.js";

function fields(o: Record<string, unknown>): string {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(" ");
}

function presenceLine(command: string, { type, clientSubject, metadata, ...rest }: ClientReport): string {
  const meta = Object.keys(metadata).length > 0 ? ` ${JSON.stringify(metadata)}` : "";
  return `${command} ${type} ${clientSubject} ${fields(rest)}${meta}`;
}

/**
 * One line per command: `  1234.567 ms  report.presence NodeDead demo.client-3 state=dead ...`;
 * a batch of NodeState reports is one line per report, the time on the first. With several
 * partitions the time is followed by the partition whose actors sent it (`p2`).
 */
export function formatCommand({ t, partition, command }: TimedCommand): string {
  const time = `${t.toFixed(3).padStart(11)} ms${partition === undefined ? "" : `  p${partition}`}`;
  switch (command.type) {
    case "report.presence":
      return `${time}  ${presenceLine("report.presence", command.report)}`;
    case "report.publish": {
      const { type, ...rest } = command.report;
      return `${time}  report.publish ${type} ${fields(rest)}`;
    }
    case "clients.ping":
      return `${time}  clients.ping ${command.subjects.join(" ")}`;
    case "reports.state":
      return command.reports.map((r, i) => `${i === 0 ? time : " ".repeat(time.length)}  ${presenceLine("reports.state", r)}`).join("\n");
    default: {
      const { type, ...rest } = command;
      const text = fields(rest);
      return `${time}  ${type}${text ? ` ${text}` : ""}`;
    }
  }
}

export function formatDivergence(d: Divergence, file: string): string {
  const show = (c: Command | null) => (c === null ? "(nothing)" : JSON.stringify(c));
  return [
    `replay differs from ${file} at entry ${d.index} (line ${d.line}, ${d.partition === undefined ? "" : `partition ${d.partition}, `}t=${d.t.toFixed(3)} ms): ${d.problem}`,
    `  expected: ${show(d.expected)}`,
    `  actual:   ${show(d.actual)}`,
  ].join("\n");
}

/** The actor tree, indented; with several partitions, each partition's election under a line naming it. */
export function formatActors(until: NonNullable<ReplayResult["until"]>): string {
  const lines = [`actors at ${until.t.toFixed(3)} ms:`];
  for (const a of until.actors) {
    const nested = a.partition === undefined ? 0 : 1;
    if (a.kind === "election" && a.partition !== undefined) lines.push(`  partition ${a.partition}`);
    const depth = nested + (a.kind === "election" ? 1 : a.kind === "monitor" ? 2 : a.kind === "shard" ? 3 : 4);
    const name = a.kind === "client" ? a.id.slice(a.id.indexOf("/") + 1) : a.id;
    const value = a.value === null ? "" : ` ${typeof a.value === "string" ? a.value : JSON.stringify(a.value)}`;
    lines.push(`${"  ".repeat(depth)}${name}${value}  ${fields(a.detail)}`);
  }
  return lines.join("\n");
}
