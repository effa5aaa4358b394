/**
 * The line the page shows for an event or a command: its short type and a detail that a
 * person reads, with batches (a sweep's replies, pings, NodeState reports) summarised.
 */
import type { AnyEventObject } from "xstate";
import type { Command } from "../../machines/commands.js";
import type { MonitorEvent } from "../../machines/monitor.js";
import type { ShardEvent } from "../../machines/shard.js";
import { clip, round } from "./snapshot-text.js";

/** `xstate.after.sweepInterval.monitor.sweeping.waiting` → `after sweepInterval`. */
export function shortType(type: string): string {
  if (type.startsWith("xstate.after.")) return `after ${type.slice("xstate.after.".length).split(".")[0]}`;
  return type;
}

/** `n` subjects, the first few of them, and `about` among them wherever it is. */
function someSubjects(subjects: readonly string[], about: string | null): string {
  const shown = subjects.slice(0, 3);
  if (about !== null && subjects.includes(about) && !shown.includes(about)) shown.push(about);
  const more = subjects.length - shown.length;
  return `${shown.join(" ")}${more > 0 ? ` +${more} more` : ""}`;
}

const presenceDetail = (r: Extract<Command, { type: "report.presence" }>["report"]): string =>
  `${r.clientSubject} state=${r.state} missed=${r.missedPings} rtt=${round(r.rttMs)}ms`;

/**
 * A short line for an event or command: what a person wants to read in the event list. A
 * batch (a sweep's replies, pings, NodeState reports) names `about`, the selected client,
 * when it is in the batch.
 */
export function describeEvent(event: AnyEventObject, about: string | null): { detail: string; report?: string } {
  const e = event as unknown as Command | MonitorEvent | ShardEvent;
  switch (e.type) {
    case "SWEEP": {
      const stall = e.stalledMs > 0 ? ` stalled ${round(e.stalledMs)}ms (verdicts deferred)` : "";
      const mine = about === null ? undefined : e.replies.find((r) => r.subject === about);
      const reply = mine === undefined ? "" : `: ${mine.subject} replied rtt=${round(mine.rttMs)}ms`;
      return { detail: `${e.replies.length} ${e.replies.length === 1 ? "reply" : "replies"}${reply}${stall}` };
    }
    case "clients.ping":
      return { detail: `${e.subjects.length}: ${someSubjects(e.subjects, about)}` };
    case "reports.state": {
      const mine = about === null ? undefined : e.reports.find((r) => r.clientSubject === about);
      if (mine !== undefined) {
        const batch = e.reports.length > 1 ? ` (1 of ${e.reports.length})` : "";
        return { detail: `${presenceDetail(mine)}${batch}`, report: "NodeState" };
      }
      return {
        detail: `${e.reports.length}: ${someSubjects(
          e.reports.map((r) => r.clientSubject),
          null,
        )}`,
        report: "NodeState",
      };
    }
    case "report.presence": {
      return { detail: presenceDetail(e.report), report: e.report.type };
    }
    case "report.publish": {
      const r = e.report;
      const leader = r.leaderId !== undefined ? ` leader=${r.leaderId}` : "";
      return { detail: `epoch=${r.epoch} reason=${r.reason}${leader}`, report: r.type };
    }
    case "REGISTRATIONS_LOADED":
    case "REGISTRATIONS_CHUNK":
      return { detail: `${e.records.length} registrations` };
    case "REGISTER":
      return { detail: `${e.records.length} registration(s)` };
    case "REGISTERED":
      return { detail: e.record.registration.subject };
    default: {
      const { type: _type, ...rest } = e as AnyEventObject;
      const keys = Object.keys(rest);
      if (keys.length === 0) return { detail: "" };
      let text: string;
      try {
        text = keys
          .slice(0, 6)
          .map((k) => {
            const v = (rest as Record<string, unknown>)[k];
            const shown = typeof v === "number" ? round(v) : typeof v === "object" && v !== null ? JSON.stringify(v) : v;
            return `${k}=${String(shown)}`;
          })
          .join(" ");
      } catch {
        text = "(unprintable)";
      }
      return { detail: clip(text) };
    }
  }
}
