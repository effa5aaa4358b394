/**
 * The soak's verdict on deaths, a pure function with its own tests: every NodeDead must
 * fall in a silence of its client, and every silence that ended must be reported dead once.
 */
/** A client's silence: from when it stopped answering until it was revived (undefined: still silent). */
export interface Silence {
  from: number;
  to: number | undefined;
}

/**
 * Checks every NodeDead against the silences: one is false unless its client had been silent
 * for at least the dead timeout less one ping interval (the last answer may precede the
 * silence by that much) and at most a second past its revival (a ping in flight). Every
 * silence that ended is reported dead exactly once.
 */
export function judgeDeaths(
  silences: Map<string, Silence[]>,
  deaths: { subject: string; at: number }[],
  timings: { deadTimeoutMs: number; pingIntervalMs: number },
): { falseDeaths: string[]; missed: string[]; twice: string[]; silences: number } {
  const falseDeaths: string[] = [];
  const deathsIn = new Map<Silence, number>();
  for (const d of deaths) {
    const matching = (silences.get(d.subject) ?? []).find(
      (s) => d.at - s.from >= timings.deadTimeoutMs - timings.pingIntervalMs - 250 && (s.to === undefined || d.at <= s.to + 1000),
    );
    if (matching === undefined) falseDeaths.push(d.subject);
    else deathsIn.set(matching, (deathsIn.get(matching) ?? 0) + 1);
  }
  const missed: string[] = [];
  const twice: string[] = [];
  let count = 0;
  for (const [subject, list] of silences) {
    for (const s of list) {
      count += 1;
      const n = deathsIn.get(s) ?? 0;
      if (s.to !== undefined && n === 0) missed.push(subject);
      if (n > 1) twice.push(subject);
    }
  }
  return { falseDeaths, missed, twice, silences: count };
}
