/** Recognising JetStream's answers, shared by the stores. */
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";

/** A compare-and-swap write (or delete) was refused: the subject's last revision is another one. */
export function isWrongRevision(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
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
    if (
      /no responders|temporarily unavailable|no suitable peers|insufficient resources|stream is offline|jetstream system/i.test(e.message)
    ) {
      return true;
    }
  }
  return false;
}

/**
 * nats-server's codes (its errors.json) for creating a stream that another process created
 * at the same moment: "stream name already in use" (10058) and "subjects overlap with an
 * existing stream" (10065). Two coordinators that start together both find the stream (or a
 * bucket's) missing and both create it, and the server may refuse the second.
 */
const CREATION_RACE_CODES: ReadonlySet<number> = new Set([10058, 10065]);
/** Preparing again after a creation race finds what the other process made: a few tries are plenty. */
const CREATION_RACE_TRIES = 3;
const CREATION_RACE_PAUSE_MS = 100;

/** JetStream refused to create a stream because one of that name or those subjects exists (see CREATION_RACE_CODES). */
export function isCreationRace(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof JetStreamApiError && CREATION_RACE_CODES.has(e.code)) return true;
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
 *
 * A creation that another process won at the same moment (isCreationRace) is prepared again
 * at once, at most CREATION_RACE_TRIES times, logged with `info`: the next try finds the
 * stream. A stream of that name or those subjects that is not ours still fails, with the
 * server's answer, after those tries.
 */
export async function retryWhileNotReady<T>(
  what: string,
  prepare: () => Promise<T>,
  options: {
    deadlineMs: number;
    warn: (message: string, fields: Record<string, unknown>) => void;
    info?: (message: string, fields: Record<string, unknown>) => void;
    /** Waits `ms` between tries (default: a timer); tests pass their own to see the pauses. */
    pause?: (ms: number) => Promise<void>;
  },
): Promise<T> {
  const pause = options.pause ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = performance.now() + options.deadlineMs;
  let races = 0;
  for (let attempt = 1, pauseMs = 250; ; attempt++) {
    try {
      return await prepare();
    } catch (err) {
      if (isCreationRace(err) && races < CREATION_RACE_TRIES) {
        races += 1;
        (options.info ?? options.warn)(`another process was creating the ${what} at the same moment; preparing it again`, {
          attempt,
          error: describeChain(err),
        });
        await pause(CREATION_RACE_PAUSE_MS);
        continue;
      }
      if (!isTransientJetStreamError(err) || performance.now() + pauseMs > deadline) throw err;
      options.warn(`JetStream is not ready for the ${what} yet; trying again`, { attempt, retryInMs: pauseMs, error: describeChain(err) });
      await pause(pauseMs);
      pauseMs = Math.min(2000, pauseMs * 2);
    }
  }
}
