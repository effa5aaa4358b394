#!/usr/bin/env node
/**
 * presence-coordinator: the command line's entry. The commands are in src/cli/commands/,
 * built into one program by src/cli/program.ts.
 */
import "./cli/v8-flags.js"; // first: V8 settings apply to what is allocated after them
import { buildProgram } from "./cli/program.js";

await buildProgram().parseAsync(process.argv);
