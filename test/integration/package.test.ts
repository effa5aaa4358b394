/**
 * The npm package as a user gets it: `npm pack` of the built tree, installed into a clean
 * directory with `npm install <tarball>`, and its `presence-coordinator` bin run from there.
 * The package holds what runs (dist, web, visualizations, package.json, README) and
 * nothing else.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { test } from "uvu";
import * as assert from "uvu/assert";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };

test("package - npm pack installs into a clean directory and its bin runs: --help, --version and a replay", async () => {
  const dir = await mkdtemp(join(tmpdir(), "presence-pack-"));
  try {
    // The tree is built before the integration tests run; prepack would build it again.
    const packed = await exec("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: ROOT, maxBuffer: 16 << 20 });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const paths = info!.files.map((f) => f.path);
    const tops = new Set(paths.map((p) => p.split("/")[0]));
    assert.equal([...tops].sort(), ["README.md", "dist", "package.json", "visualizations", "web"]);
    for (const needed of ["dist/cli.js", "web/inspector/index.html", "visualizations/election.svg"])
      assert.ok(paths.includes(needed), `packs ${needed}`);
    assert.not.ok(
      paths.some((p) => p.endsWith(".map")),
      "no source maps (their sources are not packed)",
    );
    assert.not.ok(
      paths.some((p) => /^(src|test|bench|scripts|scratch)\//.test(p)),
      "no sources, tests or scripts",
    );

    const app = join(dir, "app");
    await exec("mkdir", ["-p", app]);
    await exec("npm", ["init", "-y"], { cwd: app });
    await exec("npm", ["install", "--no-audit", "--no-fund", join(dir, info!.filename)], {
      cwd: app,
      maxBuffer: 16 << 20,
      timeout: 120_000,
    });
    const bin = join(app, "node_modules", ".bin", "presence-coordinator");

    const version = await exec(bin, ["--version"], { cwd: app });
    assert.is(version.stdout.trim(), pkg.version);
    const help = await exec(bin, ["--help"], { cwd: app });
    assert.match(help.stdout, /run \[options\]/);
    const runHelp = await exec(bin, ["run", "--help"], { cwd: app });
    for (const flag of ["--metrics-port <port>", "--config <file>", "--tls-ca <file>"]) assert.ok(runHelp.stdout.includes(flag), flag);
    // A replay exercises the machines, the protocol and the record log reader from the installed package.
    const fixture = join(ROOT, "test", "fixtures", "client-death", "cd-a.jsonl");
    const replay = await exec(bin, ["replay", fixture, "--check"], { cwd: app });
    assert.match(replay.stdout, /all \d+ commands \(\d+ reports\) match the log/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
