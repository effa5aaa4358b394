/**
 * The diagrams checked in under `visualizations/`: one SVG (Graphviz) and one Mermaid file
 * per machine, generated from the machine definitions by `npm run viz`. The unit tests call
 * `checkVisualizations`, so a diagram that no longer matches its machine fails the suite.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { chartOf } from "./chart.js";
import { MACHINE_NAMES, MACHINES } from "./machines.js";
import { renderSvg, toMermaid } from "./render.js";

/** Where the diagrams live, relative to the repository root. */
export const VISUALIZATIONS_DIR = "visualizations";

/** Every diagram, file name → contents: `<name>.svg` and `<name>.mmd` for every machine, in MACHINE_NAMES order. */
export async function renderAll(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const name of MACHINE_NAMES) {
    const chart = chartOf(MACHINES[name]);
    files.set(`${name}.svg`, await renderSvg(chart));
    files.set(`${name}.mmd`, toMermaid(chart));
  }
  return files;
}

/** The names of the diagrams in `dir` that are missing or differ from what `renderAll` makes now. */
export async function checkVisualizations(dir: string): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, contents] of await renderAll()) {
    let current: string | undefined;
    try {
      current = await readFile(join(dir, file), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new Error(`charts: cannot read ${join(dir, file)}`, { cause: error });
      }
    }
    if (current !== contents) stale.push(file);
  }
  return stale;
}
