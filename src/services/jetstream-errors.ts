/** Recognising JetStream's answers, shared by the stores. */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** A compare-and-swap write (or delete) was refused: the subject's last revision is another one. */
export function isWrongRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/**
 * JetStream is not ready yet, rather than refusing: the request timed out, nobody answered,
 * or a forming cluster has no meta leader or no peers for a replicated asset yet. Worth
 * asking again; anything else (a permission, a conflicting setting) is not.
 */
export function isTransientJetStreamError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.name === "TimeoutError" || e.name === "NoRespondersError" || /^(timeout|request timed out)$/i.test(e.message)) return true;
    if (/no responders|temporarily unavailable|no suitable peers|insufficient resources|stream is offline|jetstream system/i.test(e.message)) {
      return true;
    }
  }
  return false;
}

function describeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      parts.push(`${e.name}: ${e.message}`);
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join(" / ");
}

/**
 * Runs `prepare` (creating or opening a bucket or stream at startup) until it succeeds, for
 * as long as JetStream only says it is not ready, with a growing pause between tries, up to
 * `deadlineMs`; logs each retry. A 3-node cluster that starts together with the
 * coordinators needs a few seconds before it can create replicated assets.
 */
export async function retryWhileNotReady<T>(
  what: string,
  prepare: () => Promise<T>,
  options: { deadlineMs: number; warn: (message: string, fields: Record<string, unknown>) => void },
): Promise<T> {
  const deadline = performance.now() + options.deadlineMs;
  for (let attempt = 1, pauseMs = 250; ; attempt++, pauseMs = Math.min(2000, pauseMs * 2)) {
    try {
      return await prepare();
    } catch (err) {
      if (!isTransientJetStreamError(err) || performance.now() + pauseMs > deadline) throw err;
      options.warn(`JetStream is not ready for the ${what} yet; trying again`, { attempt, retryInMs: pauseMs, error: describeChain(err) });
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }
}
