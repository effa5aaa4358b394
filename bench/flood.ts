/**
 * `npm run flood [-- KIND ...]`: the floods of harness/flood.ts (all of them, or the ones
 * named), their figures in `bench/results/flood-<date>.json` and a table. Exits 1 when a
 * flood did not hold.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { FLOOD_KINDS, floodProblems, mb, runFlood, type FloodKind, type FloodResult } from "../harness/flood.js";

async function main(): Promise<number> {
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  const unknown = wanted.filter((w) => !(FLOOD_KINDS as readonly string[]).includes(w));
  if (unknown.length > 0) {
    process.stderr.write(`flood: unknown flood(s) ${unknown.join(", ")}; known: ${FLOOD_KINDS.join(", ")}\n`);
    return 2;
  }
  const kinds = wanted.length > 0 ? (wanted as FloodKind[]) : [...FLOOD_KINDS];
  const results: (FloodResult & { problems: string[] })[] = [];
  for (const kind of kinds) {
    const r = await runFlood(kind, (line) => process.stdout.write(`  ${line}\n`));
    results.push({ ...r, problems: floodProblems(r) });
  }
  const date = new Date().toISOString();
  const file = `bench/results/flood-${date.slice(0, 19).replace(/:/g, "-")}.json`;
  await mkdir("bench/results", { recursive: true });
  await writeFile(file, `${JSON.stringify({ kind: "flood", date, results }, null, 2)}\n`);
  process.stdout.write(
    "\nflood          messages     MB  rate/s  publish s  handled s  suspect  dead  lost  leaders  rss MB before→peak  loop max ms  warnings  verdict\n",
  );
  for (const r of results) {
    process.stdout.write(
      `${r.kind.padEnd(14)}${String(r.messages).padStart(9)}${String(mb(r.bytes)).padStart(7)}${String(r.ratePerSecond).padStart(8)}${String(r.publishSeconds).padStart(11)}${String(r.drainSeconds).padStart(11)}${String(r.existingSuspect.length).padStart(9)}${String(r.existingDead.length).padStart(6)}${String(r.lost.length).padStart(6)}${String(r.leaderEpochs).padStart(9)}${`${r.leaderRssBeforeMB}→${r.leaderRssPeakMB}`.padStart(20)}${String(r.leaderEventLoopDelayMaxMs).padStart(13)}${String(r.warningLines).padStart(10)}  ${r.problems.length === 0 ? "held" : r.problems.join("; ")}\n`,
    );
    for (const n of r.notes) process.stdout.write(`    ${n}\n`);
    if (Object.keys(r.refused).length > 0) process.stdout.write(`    refused: ${JSON.stringify(r.refused)}\n`);
  }
  process.stdout.write(`\nwrote ${file}\n`);
  return results.every((r) => r.problems.length === 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`flood: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
