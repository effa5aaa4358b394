/**
 * `--config <file>`: a JSON or YAML file whose keys are a command's long flag names, in
 * camelCase (`leaderTimeout`) or as written on the command line without the dashes
 * (`leader-timeout`). Values are what the flag takes: numbers or strings for flags with a
 * value, `true`/`false` for switches; `natsUrl` may also be a list of URLs.
 *
 * Precedence, highest first: command-line flag > environment variable > config file >
 * default. The file's values enter commander with the value source "config", which is
 * exactly where commander places them: its own parsing then lets the command line and the
 * environment override them. Which file values were overridden is kept, so that the
 * command can log it (the environment never overrides the file silently).
 *
 * Unknown keys and values of the wrong type are refused with a ConfigError naming the key
 * and the file (exit 2), before anything connects.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import type { Command, Option } from "commander";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "./config.js";

/** Keys that can never come from a file. */
const NOT_FROM_FILE = new Set(["config", "help", "version"]);

/** What a command took from its config file. */
export interface ConfigFileUse {
  path: string;
  /** attribute name (camelCase) → the flag, e.g. `leaderTimeout` → `--leader-timeout`. */
  keys: Map<string, string>;
}

const used = new WeakMap<Command, ConfigFileUse>();

/** Reads and parses a config file: `.json` as JSON, anything else as YAML (which also reads JSON). */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError("--config", `${path} ${code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? String(err)})`}`);
  }
  let value: unknown;
  try {
    value = extname(path).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const kind = extname(path).toLowerCase() === ".json" ? "JSON" : "YAML";
    throw new ConfigError("--config", `${path} is not valid ${kind}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError("--config", `${path} must hold one object of flag names and values`);
  }
  return value as Record<string, unknown>;
}

function camel(kebab: string): string {
  return kebab.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The options of `cmd` by the keys a file may use for them (camelCase and kebab-case). */
function optionsByKey(cmd: Command): Map<string, Option> {
  const out = new Map<string, Option>();
  for (const option of cmd.options) {
    if (option.negate || option.long === undefined) continue; // `--no-x` shares x's key
    const kebab = option.long.replace(/^--/, "");
    if (NOT_FROM_FILE.has(kebab)) continue;
    out.set(camel(kebab), option);
    out.set(kebab, option);
  }
  return out;
}

/** Converts a file value to what the option's own parsing produces; throws a ConfigError. */
function convert(option: Option, key: string, value: unknown, path: string): unknown {
  const wrong = (expected: string) =>
    new ConfigError("--config", `${path}: key "${key}" must be ${expected}; got ${JSON.stringify(value)}`);
  const takesValue = option.required || option.optional;
  if (!takesValue) {
    if (typeof value !== "boolean") throw wrong("true or false");
    return value;
  }
  if (option.optional && typeof value === "boolean") {
    // `--inspect [port]`: true is the flag without a value; false is the flag left out.
    return value ? true : undefined;
  }
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "number" && Number.isFinite(value)) text = String(value);
  else if (Array.isArray(value) && option.long === "--nats-url" && value.every((v) => typeof v === "string")) text = value.join(",");
  else throw wrong(option.long === "--nats-url" ? "a string or a list of strings" : "a string or a number");
  if (!option.parseArg) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (err) {
    throw new ConfigError("--config", `${path}: key "${key}": ${(err as Error).message}`);
  }
}

/**
 * Applies the file at `path` to `cmd` before commander parses its arguments: every value
 * becomes the option's value with source "config" (so the command line and the
 * environment, parsed afterwards, override it).
 */
export function applyConfigFile(cmd: Command, path: string): ConfigFileUse {
  const values = readConfigFile(path);
  const options = optionsByKey(cmd);
  const keys = new Map<string, string>();
  for (const [key, value] of Object.entries(values)) {
    const option = options.get(key);
    if (option === undefined) {
      const why = NOT_FROM_FILE.has(key) ? "cannot be set in a config file" : `is not an option of \`${cmd.name()}\``;
      throw new ConfigError("--config", `${path}: key "${key}" ${why}`);
    }
    const name = option.attributeName();
    if (keys.has(name)) throw new ConfigError("--config", `${path}: "${key}" is given twice (as camelCase and kebab-case)`);
    keys.set(name, option.long ?? key);
    const converted = convert(option, key, value, path);
    if (converted !== undefined) cmd.setOptionValueWithSource(name, converted, "config");
  }
  const use = { path, keys };
  used.set(cmd, use);
  return use;
}

/** Where `--config` is given among a subcommand's raw arguments (or PRESENCE_CONFIG); undefined: none. */
export function findConfigPath(args: readonly string[], env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === "--config") {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("-")) throw new ConfigError("--config", "needs a file name");
      return next;
    }
    if (arg.startsWith("--config=")) return arg.slice("--config=".length);
  }
  const fromEnv = env.PRESENCE_CONFIG;
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : undefined;
}

/**
 * The values of the config file that the command line or the environment replaced, for
 * the log: never silent, and never with the values (they may be secrets).
 */
export function configOverrides(
  cmd: Command,
): { path: string; overrides: { flag: string; by: "command line" | "environment"; env?: string }[] } | null {
  const use = used.get(cmd);
  if (use === undefined) return null;
  const overrides: { flag: string; by: "command line" | "environment"; env?: string }[] = [];
  for (const [name, flag] of use.keys) {
    const source = cmd.getOptionValueSource(name);
    if (source === "cli") overrides.push({ flag, by: "command line" });
    else if (source === "env") {
      const env = cmd.options.find((o) => o.attributeName() === name && o.envVar !== undefined)?.envVar;
      overrides.push({ flag, by: "environment", ...(env !== undefined ? { env } : {}) });
    }
  }
  return { path: use.path, overrides };
}
