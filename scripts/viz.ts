/**
 * npm run viz        writes every machine's diagram into visualizations/
 * npm run viz:check  exits 1 when a diagram there is missing or out of date
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkVisualizations, renderAll, VISUALIZATIONS_DIR } from "../src/charts/visualizations.js";

async function main(): Promise<number> {
  if (process.argv.includes("--check")) {
    const stale = await checkVisualizations(VISUALIZATIONS_DIR);
    if (stale.length > 0) {
      for (const file of stale) console.error(`out of date: ${join(VISUALIZATIONS_DIR, file)}`);
      console.error(`${stale.length} diagram file(s) do not match the machines: run npm run viz`);
      return 1;
    }
    console.log(`all ${(await renderAll()).size} diagrams in ${VISUALIZATIONS_DIR}/ are up to date`);
    return 0;
  }
  await mkdir(VISUALIZATIONS_DIR, { recursive: true });
  for (const [file, contents] of await renderAll()) {
    const path = join(VISUALIZATIONS_DIR, file);
    await writeFile(path, contents);
    console.log(`wrote ${path}`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error("viz: failed to render the diagrams:", error);
    process.exit(1);
  },
);
