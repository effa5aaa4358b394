/**
 * `--config <file>`: JSON and YAML files of flag values, the precedence flag > environment
 * > file > default (commander's own parsing after the file is applied), and refusals that
 * name the key and the file.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command, Option } from "commander";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { applyConfigFile, configOverrides, findConfigPath } from "../../src/config/config-file.js";
import { ConfigError } from "../../src/config/config.js";
import { wholeNumber } from "../../src/cli/flags.js";

/** A command shaped like `run`: a mandatory URL, numbers with env vars, choices, a switch, an optional value. */
function command(): Command {
  return new Command("run")
    .exitOverride()
    .addOption(new Option("-u, --nats-url <urls>", "urls").env("T_NATS_URL").makeOptionMandatory())
    .addOption(new Option("--leader-timeout <ms>", "ms").env("T_LEADER_TIMEOUT").argParser(wholeNumber).default(2000))
    .addOption(new Option("--heartbeat-interval <ms>", "ms").env("T_HEARTBEAT_INTERVAL").argParser(wholeNumber).default(1000))
    .addOption(new Option("--log-format <format>", "fmt").choices(["json", "pretty"]).default("pretty"))
    .addOption(new Option("--inspect [port]", "port").argParser(wholeNumber))
    .addOption(new Option("-v, --verbose", "verbose").default(false))
    .addOption(new Option("--config <file>", "file"))
    .action(() => undefined);
}

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "presence-config-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

/** Applies `path`, then lets commander parse `args` with `env`, as the CLI does. */
function parse(path: string, args: string[], env: Record<string, string> = {}): Command {
  const cmd = command();
  applyConfigFile(cmd, path);
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    cmd.parse(args, { from: "user" });
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
  }
  return cmd;
}

test("config file - YAML keys in kebab-case and camelCase become option values, a list of URLs is joined", async () => {
  const path = await file(
    "a.yaml",
    "nats-url:\n  - nats://n1:4222\n  - nats://n2:4222\nleaderTimeout: 3000\nlog-format: json\nverbose: true\ninspect: true\n",
  );
  const cmd = parse(path, []);
  assert.equal(cmd.opts(), {
    natsUrl: "nats://n1:4222,nats://n2:4222",
    leaderTimeout: 3000,
    heartbeatInterval: 1000,
    logFormat: "json",
    verbose: true,
    inspect: true,
  });
  assert.is(cmd.getOptionValueSource("leaderTimeout"), "config");
  assert.is(cmd.getOptionValueSource("heartbeatInterval"), "default");
});

test("config file - precedence: flag > environment > file > default, and overrides are reported by name", async () => {
  const path = await file("b.json", JSON.stringify({ natsUrl: "nats://file:4222", leaderTimeout: "3000", heartbeatInterval: 900 }));
  const cmd = parse(path, ["--leader-timeout", "4000"], { T_LEADER_TIMEOUT: "5000", T_HEARTBEAT_INTERVAL: "800" });
  assert.is(cmd.opts().leaderTimeout, 4000, "the flag wins over the environment and the file");
  assert.is(cmd.opts().heartbeatInterval, 800, "the environment wins over the file");
  assert.is(cmd.opts().natsUrl, "nats://file:4222", "the file wins over nothing (and satisfies a mandatory option)");
  assert.equal(configOverrides(cmd), {
    path,
    overrides: [
      { flag: "--leader-timeout", by: "command line" },
      { flag: "--heartbeat-interval", by: "environment", env: "T_HEARTBEAT_INTERVAL" },
    ],
  });
});

test("config file - unknown keys, wrong types and bad files are refused naming the key and the file", async () => {
  const cases: [string, string, RegExp][] = [
    ["c1.yaml", "leaderTimout: 3000\n", /c1\.yaml: key "leaderTimout" is not an option of `run`/],
    ["c2.yaml", "leaderTimeout: 2s\n", /c2\.yaml: key "leaderTimeout": must be a whole number/],
    ["c3.yaml", "verbose: yes please\n", /c3\.yaml: key "verbose" must be true or false/],
    ["c4.yaml", "logFormat: xml\n", /c4\.yaml: key "logFormat": Allowed choices are json, pretty/],
    ["c5.yaml", "leaderTimeout: [1, 2]\n", /c5\.yaml: key "leaderTimeout" must be a string or a number/],
    ["c6.json", "{ nope", /c6\.json is not valid JSON/],
    ["c7.yaml", "- a\n- b\n", /c7\.yaml must hold one object of flag names and values/],
    ["c8.yaml", "config: other.yaml\n", /c8\.yaml: key "config" cannot be set in a config file/],
    ["c9.yaml", "leaderTimeout: 1\nleader-timeout: 2\n", /c9\.yaml: "leader-timeout" is given twice/],
  ];
  for (const [name, text, message] of cases) {
    const path = await file(name, text);
    try {
      applyConfigFile(command(), path);
      assert.unreachable(`${name} should be refused`);
    } catch (err) {
      assert.instance(err, ConfigError, name);
      assert.is((err as ConfigError).flag, "--config");
      assert.match((err as Error).message, message);
    }
  }
  assert.throws(() => applyConfigFile(command(), join(dir, "missing.yaml")), /missing\.yaml does not exist/);
});

test("config file - found on the command line (both spellings) or in PRESENCE_CONFIG, the flag first", () => {
  assert.is(findConfigPath(["--cluster-id", "x", "--config", "a.yaml"], {}), "a.yaml");
  assert.is(findConfigPath(["--config=b.json"], { PRESENCE_CONFIG: "env.yaml" }), "b.json");
  assert.is(findConfigPath(["--cluster-id", "x"], { PRESENCE_CONFIG: "env.yaml" }), "env.yaml");
  assert.is(findConfigPath(["--", "--config", "a.yaml"], {}), undefined);
  assert.throws(() => findConfigPath(["--config"], {}), /--config: needs a file name/);
});

test.run();
