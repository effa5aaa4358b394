/**
 * The malformed registrations a chaos run sends, one of each kind of refusal: a coordinator
 * must refuse them all, never ping their subjects and never report them.
 */
import type { RefusedKind } from "../../harness/chaos-invariants/record.js";

export interface Malformed {
  /** The subject it names, if it names one. */
  subject?: string;
  payload: () => string | Uint8Array;
}

/**
 * One malformed registration of each kind, under `prefix`. Those that name a subject name one nobody else
 * uses, which the simulated clients watch for pings. The oversized and the bad UTF-8 ones
 * carry a valid subject, so that only the size or the encoding refuses them.
 */
export function malformedRegistrations(prefix: string): Record<RefusedKind, Malformed> {
  const named = (subject: string, extra: Record<string, unknown> = {}) => ({
    subject,
    payload: () => JSON.stringify({ myPresenceSubject: subject, ...extra }),
  });
  const utf8 = `${prefix}.bad.utf8`;
  return {
    "not-json": { payload: () => "not json at all" },
    "not-an-object": { payload: () => "[1,2,3]" },
    "no-subject": { payload: () => "{}" },
    "subject-not-a-string": { payload: () => JSON.stringify({ myPresenceSubject: 42 }) },
    "empty-subject": { payload: () => JSON.stringify({ myPresenceSubject: "" }) },
    "wildcard-star": named(`${prefix}.bad.*`),
    "wildcard-gt": named(`${prefix}.bad.>`),
    whitespace: named(`${prefix}.bad subject`),
    "empty-token": named(`${prefix}.bad..token`),
    dollar: named(`$SYS.${prefix}.bad`),
    inbox: named(`_INBOX.${prefix}.bad`),
    "presence-namespace": named(`presence.${prefix}.bad`),
    "coordinator-namespace": named(`coordinator.${prefix}.bad`),
    "too-long-subject": named(`${prefix}.bad.${"x".repeat(300)}`),
    "over-64-kib": named(`${prefix}.bad.big`, { pad: "x".repeat(65 * 1024) }),
    "bad-utf-8": {
      subject: utf8,
      // Valid JSON but for two bytes that are not UTF-8, inside a metadata string.
      payload: () => {
        const [head, tail] = JSON.stringify({ myPresenceSubject: utf8, note: "@@" }).split("@@") as [string, string];
        const enc = new TextEncoder();
        return new Uint8Array([...enc.encode(head), 0xff, 0xfe, ...enc.encode(tail)]);
      },
    },
  };
}

/** The subjects of malformed registrations that a ping could reach (not those NATS could not deliver on anyway). */
export function trappable(malformed: Record<RefusedKind, Malformed>): string[] {
  return (Object.values(malformed) as Malformed[])
    .map((m) => m.subject)
    .filter((x): x is string => x !== undefined && !/\s/.test(x) && !x.includes(".."));
}
