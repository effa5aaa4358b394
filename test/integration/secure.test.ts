/**
 * Secure connections, as an operator sets them up: a nats-server with the users and
 * permissions of deploy/nats-server-auth.conf (the snippet in docs/operations.md), and nats-servers
 * with TLS whose certificates the test makes with openssl. Coordinators run through the
 * built CLI; secrets must never show in what they print or record.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseHeartbeat, subjects, type Heartbeat } from "../../src/protocol/election.js";
import { decodeReport, presenceSubjects, REPORT_HEADERS, type Report } from "../../src/protocol/presence.js";
import { NatsServer } from "../../src/nats/server.js";
import { makeCertificates, type TestCertificates } from "../../harness/certs.js";
import { runCli, spawnCli, spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";
import { nkeyUser, operatorAuth } from "../../harness/nats-auth.js";

const AUTH_CONF = fileURLToPath(new URL("../../deploy/nats-server-auth.conf", import.meta.url));
/** The cluster id and client subjects the documented snippet is written for. */
const CLUSTER = "prod";
const PASSWORDS = { coordinator: "coord-Secret-81731", client: "client-Secret-22", watcher: "watch-Secret-9" };

/** Heartbeats and presence reports of the cluster, seen through `options`' connection. */
class Watcher {
  readonly heartbeats: Heartbeat[] = [];
  readonly reports: Report[] = [];
  private constructor(readonly nc: NatsConnection) {}

  static async start(url: string, options: Partial<ConnectionOptions>): Promise<Watcher> {
    const nc = await connect({ servers: url, ...options });
    const w = new Watcher(nc);
    nc.subscribe(subjects.heartbeat(CLUSTER), { callback: (_e, m) => void w.heartbeats.push(parseHeartbeat(m.data)) });
    nc.subscribe(presenceSubjects.report(CLUSTER), {
      callback: (_e, m) => void w.reports.push(decodeReport(m.data, m.headers?.get(REPORT_HEADERS.encoding))),
    });
    await nc.flush();
    return w;
  }

  leaderHeartbeat(id: string, timeoutMs: number): Promise<Heartbeat> {
    return waitFor(`a heartbeat of ${id}`, () => this.heartbeats.find((h) => h.coordinatorId === id && !h.resigning), timeoutMs);
  }

  close(): Promise<void> {
    return this.nc.close();
  }
}

/** The nats-server of the permissions snippet in docs/operations.md; the passwords come from its environment. */
async function authServer(): Promise<NatsServer> {
  process.env.COORDINATOR_PASSWORD = PASSWORDS.coordinator;
  process.env.CLIENT_PASSWORD = PASSWORDS.client;
  process.env.WATCHER_PASSWORD = PASSWORDS.watcher;
  return NatsServer.start({ configFile: AUTH_CONF });
}

function printed(proc: CoordinatorProcess): string {
  return proc.lines.join("\n");
}

test("secure - with the documented coordinator permissions, run elects itself and monitors a client that has the client permissions", async () => {
  const server = await authServer();
  const dir = await mkdtemp(join(tmpdir(), "presence-secure-"));
  const watcher = await Watcher.start(server.url, { user: "watcher", pass: PASSWORDS.watcher });
  let coordinator: CoordinatorProcess | undefined;
  let client: NatsConnection | undefined;
  try {
    const record = join(dir, "run.jsonl");
    coordinator = spawnCoordinator({
      urls: [server.url],
      clusterId: CLUSTER,
      id: "sec-1",
      args: ["--user", "coordinator", "--record", record, "--state-interval", "500"],
      env: { PRESENCE_PASSWORD: PASSWORDS.coordinator },
    });
    await watcher.leaderHeartbeat("sec-1", 10_000);

    // A client with only the client permissions: it registers and answers pings.
    client = await connect({ servers: server.url, user: "client", pass: PASSWORDS.client });
    client.subscribe("svc.orders.1", { callback: (_e, m) => void m.respond() });
    client.publish(presenceSubjects.register(CLUSTER), JSON.stringify({ myPresenceSubject: "svc.orders.1", zone: "a" }));
    await client.flush();
    await waitFor(
      "NodePresent for svc.orders.1",
      () => watcher.reports.find((r) => r.type === "NodePresent" && r.clientSubject === "svc.orders.1"),
      10_000,
    );
    // Pings answered for 3 s (a client whose pings fail is suspect after 1.5 s): always alive.
    await waitFor(
      "six NodeState reports of svc.orders.1",
      () => watcher.reports.filter((r) => r.type === "NodeState" && r.clientSubject === "svc.orders.1").length >= 6,
      15_000,
    );
    const states = watcher.reports.filter((r) => r.clientSubject === "svc.orders.1");
    assert.ok(
      states.every((r) => r.state === "alive"),
      `always alive: ${states.map((r) => `${r.type}/${r.state}`).join(", ")}`,
    );

    // Nothing the coordinator did was refused by the server.
    const violations = coordinator.logs().filter((l) => /permission|authorization/i.test(`${String(l.message)} ${String(l.error ?? "")}`));
    assert.equal(violations, [], "no permissions violation");

    coordinator.signal("SIGTERM");
    assert.is(await coordinator.exited, 0);
    assert.not.ok(printed(coordinator).includes(PASSWORDS.coordinator), "the password is not in the log");
    const started = coordinator.logs().find((l) => l.message === "starting coordinator");
    assert.is(started?.auth, "--user/--password");
    assert.is(started?.user, "coordinator");
    assert.not.ok((await readFile(record, "utf8")).includes(PASSWORDS.coordinator), "the password is not in the record log");
  } finally {
    await coordinator?.kill();
    await client?.close();
    await watcher.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("secure - a wrong password fails fast with a clear one-line error that does not show it", async () => {
  const server = await authServer();
  try {
    const wrong = "not-the-Password-4711";
    const r = await runCli(["run", "-u", server.url, "--cluster-id", CLUSTER, "--user", "coordinator", "--password", wrong]);
    assert.is(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      `presence-coordinator: cannot connect to NATS at ${server.url}: authorization violation (the server refused the credentials: check --user/--password)`,
    );
    assert.not.ok(`${r.stdout}${r.stderr}`.includes(wrong), "the password is not printed");
    assert.not.match(r.stderr, /\n\s+at /, "no stack trace");

    const none = await runCli(["run", "-u", server.url, "--cluster-id", CLUSTER]);
    assert.is(none.code, 1);
    assert.match(
      none.stderr,
      /authorization violation \(the server requires authentication: pass --user\/--password, --token, --creds or --nkey\)/,
    );

    const watch = await runCli(["watch", "-u", server.url, "--cluster-id", CLUSTER, "--user", "watcher"], {
      env: { PRESENCE_PASSWORD: "nope-nope-1" },
    });
    assert.is(watch.code, 1);
    assert.match(watch.stderr, /authorization violation \(the server refused the credentials: check --user\/--password\)/);
  } finally {
    await server.stop();
  }
});

test("secure - watch prints reports with the documented watcher permissions", async () => {
  const server = await authServer();
  const coordinator = spawnCoordinator({
    urls: [server.url],
    clusterId: CLUSTER,
    id: "sec-w",
    args: ["--user", "coordinator", "--report-encoding", "json"],
    env: { PRESENCE_PASSWORD: PASSWORDS.coordinator },
  });
  const watch = spawnCoordinatorWatch(server.url);
  let client: NatsConnection | undefined;
  try {
    await waitFor("watch connected", () => watch.lines.some((l) => l.includes("reports of cluster")), 10_000);
    // A registration published before the coordinator has created its stream is not stored.
    await waitFor("the coordinator leading", () => coordinator.logs().some((l) => l.message === "became leader"), 15_000);
    client = await connect({ servers: server.url, user: "client", pass: PASSWORDS.client });
    client.subscribe("svc.watched", { callback: (_e, m) => void m.respond() });
    client.publish(presenceSubjects.register(CLUSTER), JSON.stringify({ myPresenceSubject: "svc.watched" }));
    await waitFor("watch printing NodePresent", () => watch.lines.some((l) => /NodePresent\s+svc\.watched/.test(l)), 15_000);
    assert.not.ok(printed(watch).includes(PASSWORDS.watcher));
  } finally {
    await watch.kill();
    await coordinator.kill();
    await client?.close();
    await server.stop();
  }
});

/** `watch` as the watcher user, the password from the environment. */
function spawnCoordinatorWatch(url: string): CoordinatorProcess {
  return spawnCli("watch", ["watch", "-u", url, "--cluster-id", CLUSTER, "--user", "watcher"], { PRESENCE_PASSWORD: PASSWORDS.watcher });
}

let certs: TestCertificates | undefined;
async function certificates(): Promise<TestCertificates> {
  certs ??= await makeCertificates();
  return certs;
}

async function tlsServer(verifyClients: boolean): Promise<{ server: NatsServer; conf: string }> {
  const c = await certificates();
  const conf = join(c.dir, `tls-${verifyClients ? "verify" : "plain"}.conf`);
  await writeFile(
    conf,
    `tls {\n  cert_file: "${c.serverCert}"\n  key_file: "${c.serverKey}"\n  ca_file: "${c.ca}"\n  verify: ${verifyClients}\n  timeout: 2\n}\n`,
  );
  return { server: await NatsServer.start({ configFile: conf, scheme: "tls" }), conf };
}

test("secure - TLS: a coordinator with --tls-ca connects over tls:// and leads; without the CA it is refused clearly", async () => {
  const c = await certificates();
  const { server } = await tlsServer(false);
  assert.match(server.url, /^tls:\/\//);
  const watcher = await Watcher.start(server.url, { tls: { caFile: c.ca } });
  const coordinator = spawnCoordinator({ urls: [server.url], clusterId: CLUSTER, id: "tls-1", env: { PRESENCE_TLS_CA: c.ca } });
  try {
    await watcher.leaderHeartbeat("tls-1", 10_000);
    const started = coordinator.logs().find((l) => l.message === "starting coordinator");
    assert.is(started?.tls, "ca");

    const wrongCa = await runCli(["run", "-u", server.url, "--cluster-id", "other", "--tls-ca", c.otherCa]);
    assert.is(wrongCa.code, 1);
    assert.match(wrongCa.stderr, `cannot connect to NATS at ${server.url}: TLS failed`);
    assert.match(wrongCa.stderr, /\(check --tls-ca\)/);
    assert.not.match(wrongCa.stderr, /\n\s+at /, "no stack trace");
  } finally {
    await coordinator.kill();
    await watcher.close();
    await server.stop();
  }
});

test("secure - mutual TLS: --tls-cert and --tls-key are presented to a server that verifies clients", async () => {
  const c = await certificates();
  const { server } = await tlsServer(true);
  const watcher = await Watcher.start(server.url, { tls: { caFile: c.ca, certFile: c.clientCert, keyFile: c.clientKey } });
  const coordinator = spawnCoordinator({
    urls: [server.url],
    clusterId: CLUSTER,
    id: "mtls-1",
    args: ["--tls-ca", c.ca, "--tls-cert", c.clientCert, "--tls-key", c.clientKey],
  });
  try {
    await watcher.leaderHeartbeat("mtls-1", 10_000);
    assert.is(coordinator.logs().find((l) => l.message === "starting coordinator")?.tls, "ca+client-cert");
    const noCert = await runCli(["run", "-u", server.url, "--cluster-id", "other", "--tls-ca", c.ca, "--connect-timeout", "2000"]);
    assert.is(noCert.code, 1, "a client without a certificate is refused");
    assert.match(noCert.stderr, `cannot connect to NATS at ${server.url}`);
  } finally {
    await coordinator.kill();
    await watcher.close();
    await server.stop();
  }
});

test("secure - bad security flags are refused before connecting, naming the flag (exit 2)", async () => {
  const c = await certificates();
  const url = "nats://127.0.0.1:1";
  const cases: [string[], RegExp][] = [
    [["--tls-cert", c.clientCert], /--tls-cert: needs --tls-key/],
    [["--tls-key", c.clientKey], /--tls-key: needs --tls-cert/],
    [["--password", "x"], /--password: needs --user/],
    [["--user", "u"], /--user: needs --password/],
    [["--tls-ca", join(c.dir, "missing.pem")], /--tls-ca: .*missing\.pem does not exist/],
    [["--creds", join(c.dir, "missing.creds")], /--creds: .*missing\.creds does not exist/],
    [["--creds", c.ca], /--creds: .* is not a NATS credentials file/],
    [["--nkey", c.clientKey], /--nkey: .* does not hold an NKey user seed/],
    [["--token", "t0k", "--user", "u", "--password", "p"], /--token: cannot be combined with --user\/--password/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(["run", "-u", url, "--cluster-id", "x", ...args]);
    assert.is(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.not.ok(r.stderr.includes("t0k") || r.stderr.includes("BEGIN"), "no secret or file content in the message");
  }
});

test("secure - --help shows no secret even when the environment holds them", async () => {
  const r = await runCli(["run", "--help"], { env: { PRESENCE_PASSWORD: "env-Secret-555", PRESENCE_TOKEN: "tok-Secret-777" } });
  assert.is(r.code, 0);
  for (const flag of [
    "--creds <file>",
    "--nkey <file>",
    "--user <user>",
    "--password <password>",
    "--token <token>",
    "--tls-cert <file>",
    "--tls-key <file>",
    "--tls-ca <file>",
  ]) {
    assert.ok(r.stdout.includes(flag), `run --help shows ${flag}`);
  }
  assert.not.ok(r.stdout.includes("env-Secret-555") || r.stdout.includes("tok-Secret-777"));
  assert.match(r.stdout, /PRESENCE_PASSWORD/);
});

/** Secrets of the servers below: each must never show in what a coordinator prints or records. */
const SECRETS = {
  alice: "alice-Secret-31337",
  /** Needs percent-encoding in a URL ("@", ":", "/" and "%" in it). */
  bob: "b@b:Pass/w%rd-4242",
  token: "tok3n-Secret-8086",
};

/**
 * The servers of the authentication tests, shared between them: one with users (user and
 * password, and an NKey user), one with a token, one in operator mode (creds files).
 */
interface AuthServers {
  dir: string;
  users: NatsServer;
  token: NatsServer;
  operator: NatsServer;
  nkey: { seed: string; file: string };
  creds: { seed: string; jwt: string; file: string };
  /** A creds file of a user the operator server does not know, and its secrets. */
  strangerCreds: { seed: string; jwt: string; file: string };
  /** A seed file of an NKey user the users server does not know. */
  strangerNkey: { seed: string; file: string };
}

let authServers: Promise<AuthServers> | undefined;
function servers(): Promise<AuthServers> {
  authServers ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "presence-auth-"));
    const write = async (name: string, text: string) => {
      const file = join(dir, name);
      await writeFile(file, text, { mode: 0o600 });
      return file;
    };
    const nkey = nkeyUser();
    const stranger = nkeyUser();
    const op = operatorAuth();
    const creds = op.user("coordinator");
    const strangerCreds = op.strangerUser("stranger");
    const usersConf = await write(
      "users.conf",
      `authorization {\n  users = [\n    { user: alice, password: "${SECRETS.alice}" }\n    { user: bob, password: "${SECRETS.bob}" }\n    { nkey: ${nkey.publicKey} }\n  ]\n}\n`,
    );
    const tokenConf = await write("token.conf", `authorization {\n  token: "${SECRETS.token}"\n}\n`);
    const operatorConf = await write("operator.conf", op.serverConfig(await write("operator.jwt", op.operatorJwt)));
    const [users, token, operator] = await Promise.all([
      NatsServer.start({ configFile: usersConf }),
      NatsServer.start({ configFile: tokenConf }),
      NatsServer.start({ configFile: operatorConf }),
    ]);
    return {
      dir,
      users,
      token,
      operator,
      nkey: { seed: nkey.seed, file: await write("coordinator.nk", `${nkey.seed}\n`) },
      creds: { seed: creds.seed, jwt: creds.jwt, file: await write("coordinator.creds", creds.creds) },
      strangerCreds: { seed: strangerCreds.seed, jwt: strangerCreds.jwt, file: await write("stranger.creds", strangerCreds.creds) },
      strangerNkey: { seed: stranger.seed, file: await write("stranger.nk", `${stranger.seed}\n`) },
    };
  })();
  return authServers;
}

/** `url` with `userinfo@` in front of its host. */
function withUserinfo(url: string, userinfo: string): string {
  return url.replace("://", `://${userinfo}@`);
}

/** Every secret (and its percent-encoded form) found in `text`; none is expected. */
function leaked(text: string, secrets: string[]): string[] {
  return secrets.flatMap((s) => [s, encodeURIComponent(s)]).filter((s) => text.includes(s));
}

interface AuthCase {
  name: string;
  server: (s: AuthServers) => NatsServer;
  /** Arguments after `run`, without --nats-url when the URL comes from the environment or a file. */
  args: (s: AuthServers, dir: string) => Promise<string[]>;
  env?: (s: AuthServers) => NodeJS.ProcessEnv;
  /** The startup line's `auth`. */
  auth: string;
  /** How the startup line shows the URL. */
  shownUrl: (s: AuthServers) => string;
  secrets: (s: AuthServers) => string[];
}

const AUTH_CASES: AuthCase[] = [
  {
    name: "password",
    server: (s) => s.users,
    args: async (s) => ["-u", s.users.url, "--user", "alice", "--password", SECRETS.alice],
    auth: "--user/--password",
    shownUrl: (s) => s.users.url,
    secrets: () => [SECRETS.alice],
  },
  {
    name: "url-user",
    server: (s) => s.users,
    // A config file names the URL, with a percent-encoded password.
    args: async (s, dir) => {
      const file = join(dir, "url-user.json");
      await writeFile(file, JSON.stringify({ natsUrl: [withUserinfo(s.users.url, `bob:${encodeURIComponent(SECRETS.bob)}`)] }));
      return ["--config", file];
    },
    auth: "the user and password in --nats-url",
    shownUrl: (s) => withUserinfo(s.users.url, "bob:***"),
    secrets: () => [SECRETS.bob],
  },
  {
    name: "token",
    server: (s) => s.token,
    args: async (s) => ["-u", s.token.url, "--token", SECRETS.token],
    auth: "--token",
    shownUrl: (s) => s.token.url,
    secrets: () => [SECRETS.token],
  },
  {
    name: "url-token",
    server: (s) => s.token,
    // PRESENCE_NATS_URL names the URL.
    args: async () => [],
    env: (s) => ({ PRESENCE_NATS_URL: withUserinfo(s.token.url, SECRETS.token) }),
    auth: "the token in --nats-url",
    shownUrl: (s) => withUserinfo(s.token.url, "***"),
    secrets: () => [SECRETS.token],
  },
  {
    name: "nkey",
    server: (s) => s.users,
    args: async (s) => ["-u", s.users.url, "--nkey", s.nkey.file],
    auth: "--nkey",
    shownUrl: (s) => s.users.url,
    secrets: (s) => [s.nkey.seed],
  },
  {
    name: "creds",
    server: (s) => s.operator,
    args: async (s) => ["-u", s.operator.url, "--creds", s.creds.file],
    auth: "--creds",
    shownUrl: (s) => s.operator.url,
    secrets: (s) => [s.creds.seed, s.creds.jwt],
  },
];

test("secure - password, token, URL credentials, NKey and creds each lead against a server that requires them, and with -v no secret is printed or recorded", async () => {
  const s = await servers();
  const dir = await mkdtemp(join(tmpdir(), "presence-auth-run-"));
  const running: { c: AuthCase; proc: CoordinatorProcess; record: string }[] = [];
  const others: CoordinatorProcess[] = [];
  try {
    for (const c of AUTH_CASES) {
      const record = join(dir, `${c.name}.jsonl`);
      const args = ["run", ...(await c.args(s, dir)), "--cluster-id", `auth-${c.name}`, "--coordinator-id", `auth-${c.name}`];
      const proc = spawnCli(c.name, [...args, "--log-format", "json", "-v", "--record", record], c.env?.(s) ?? {});
      running.push({ c, proc, record });
    }
    // Leading, and serving the query service that `status` asks below.
    const ready = (proc: CoordinatorProcess) =>
      ["became leader", "serving the query service"].every((m) => proc.logs().some((l) => l.message === m));
    for (const { c, proc } of running) {
      await waitFor(`${c.name}: the coordinator leading`, () => ready(proc) || !proc.running, 45_000);
      assert.ok(proc.running, `${c.name} is running:\n${printed(proc)}`);
    }

    // status and watch take credentials from the URL as well.
    const bobUrl = withUserinfo(s.users.url, `bob:${encodeURIComponent(SECRETS.bob)}`);
    const status = await runCli(["status", "-u", bobUrl, "--cluster-id", "auth-url-user", "--json"]);
    assert.is(status.code, 0, status.stderr);
    assert.ok(status.stdout.includes("auth-url-user"), status.stdout);
    assert.equal(leaked(status.stdout + status.stderr, [SECRETS.bob]), [], "status prints no secret");
    const watch = spawnCli("watch", ["watch", "--cluster-id", "auth-url-token"], {
      PRESENCE_NATS_URL: withUserinfo(s.token.url, SECRETS.token),
    });
    others.push(watch);
    await waitFor("watch connected", () => watch.lines.some((l) => l.includes("reports of cluster")) || !watch.running, 20_000);
    assert.ok(watch.running, printed(watch));
    watch.signal("SIGTERM");
    assert.is(await watch.exited, 0, printed(watch));
    assert.equal(leaked(printed(watch), [SECRETS.token]), [], "watch prints no secret");

    for (const { proc } of running) proc.signal("SIGTERM");
    for (const { c, proc, record } of running) {
      assert.is(await proc.exited, 0, `${c.name}:\n${printed(proc)}`);
      const logs = proc.logs();
      assert.ok(
        logs.some((l) => l.level === "debug"),
        `${c.name}: -v logs debug lines`,
      );
      const started = logs.find((l) => l.message === "starting coordinator");
      assert.is(started?.auth, c.auth, c.name);
      assert.is(started?.natsUrls, c.shownUrl(s), c.name);
      const recorded = await readFile(record, "utf8");
      const header = JSON.parse(recorded.slice(0, recorded.indexOf("\n"))) as { config: { natsUrls: string[] } };
      assert.equal(header.config.natsUrls, [c.shownUrl(s)], `${c.name}: the record header shows the URL redacted`);
      assert.equal(leaked(printed(proc), c.secrets(s)), [], `${c.name}: no secret in stdout or stderr`);
      assert.equal(leaked(recorded, c.secrets(s)), [], `${c.name}: no secret in the record log`);
    }
  } finally {
    await Promise.all([...running.map((r) => r.proc.kill()), ...others.map((p) => p.kill())]);
    await rm(dir, { recursive: true, force: true });
  }
});

test("secure - a wrong password, token, URL credential, NKey or creds file fails once, says which to check, and shows no secret", async () => {
  const s = await servers();
  const dir = await mkdtemp(join(tmpdir(), "presence-auth-wrong-"));
  const WRONG = { password: "wrong-Password-1234", token: "wrong-Token-5678", bob: "wr@ng:Bob/pw%-9" };
  const cases: { name: string; args: string[]; env?: NodeJS.ProcessEnv; check: string; secrets: string[] }[] = [
    {
      name: "password",
      args: ["-u", s.users.url, "--user", "alice", "--password", WRONG.password],
      check: "--user/--password",
      secrets: [WRONG.password],
    },
    { name: "token", args: ["-u", s.token.url, "--token", WRONG.token], check: "--token", secrets: [WRONG.token] },
    {
      name: "url-user",
      args: ["-u", withUserinfo(s.users.url, `bob:${encodeURIComponent(WRONG.bob)}`)],
      check: "the user and password in --nats-url",
      secrets: [WRONG.bob],
    },
    {
      name: "url-token",
      args: [],
      env: { PRESENCE_NATS_URL: withUserinfo(s.token.url, WRONG.token) },
      check: "the token in --nats-url",
      secrets: [WRONG.token],
    },
    { name: "nkey", args: ["-u", s.users.url, "--nkey", s.strangerNkey.file], check: "--nkey", secrets: [s.strangerNkey.seed] },
    {
      name: "creds",
      args: ["-u", s.operator.url, "--creds", s.strangerCreds.file],
      check: "--creds",
      secrets: [s.strangerCreds.seed, s.strangerCreds.jwt],
    },
  ];
  try {
    for (const c of cases) {
      const record = join(dir, `${c.name}.jsonl`);
      const r = await runCli(
        ["run", ...c.args, "--cluster-id", "wrong", "--log-format", "json", "-v", "--record", record],
        c.env ? { env: c.env } : {},
      );
      assert.is(r.code, 1, `${c.name}: ${r.stderr}`);
      const errors = r.stderr.split("\n").filter((l) => l.startsWith("presence-coordinator:"));
      assert.is(errors.length, 1, `${c.name}: one error line:\n${r.stderr}`);
      assert.match(errors[0]!, /cannot connect to NATS at \S+: authorization violation \(the server refused the credentials: check /);
      assert.ok(errors[0]!.includes(`check ${c.check})`), `${c.name}: ${errors[0]!}`);
      assert.not.match(r.stderr, /\n\s+at /, `${c.name}: no stack trace`);
      assert.equal(leaked(r.stdout + r.stderr, c.secrets), [], `${c.name}: no secret in stdout or stderr`);
      assert.equal(leaked(await readFile(record, "utf8"), c.secrets), [], `${c.name}: no secret in the record log`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("secure - URL credentials that disagree with each other or with the flags are refused before connecting (exit 2), without showing them", async () => {
  const url = (userinfo: string, port: number) => `nats://${userinfo}@127.0.0.1:${port}`;
  const cases: [string, string[], RegExp][] = [
    [
      `${url("alice:pw-One-111", 1)},${url("alice:pw-Two-222", 2)}`,
      [],
      /--nats-url: the credentials in nats:\/\/alice:\*\*\*@127\.0\.0\.1:1 and nats:\/\/alice:\*\*\*@127\.0\.0\.1:2 differ/,
    ],
    [
      url("alice:pw-One-111", 1),
      ["--user", "bob", "--password", "pw-Two-222"],
      /--user: "bob" differs from the user in --nats-url \(nats:\/\/alice:\*\*\*@127\.0\.0\.1:1\)/,
    ],
    [url("tok-One-111", 1), ["--token", "tok-Two-222"], /--token: differs from the token in --nats-url \(nats:\/\/\*\*\*@127\.0\.0\.1:1\)/],
    [url("alice:pw-One-111", 1), ["--nkey", "x.nk"], /--nkey: cannot be combined with the credentials in --nats-url/],
    [url("alice:pw-One-111%zz", 1), [], /--nats-url: nats:\/\/alice:\*\*\*@127\.0\.0\.1:1: the password is not valid percent-encoding/],
  ];
  // Every case with run; status and watch share the code, and are tried with the first.
  for (const command of ["run", "status", "watch"]) {
    for (const [urls, args, message] of command === "run" ? cases : cases.slice(0, 1)) {
      const r = await runCli([command, "-u", urls, "--cluster-id", "x", ...args]);
      assert.is(r.code, 2, `${command} ${urls} ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.not.ok(/pw-One|pw-Two|tok-One|tok-Two/.test(r.stdout + r.stderr), `${command}: no secret in ${r.stderr}`);
    }
  }
});

test.after(async () => {
  const s = await authServers?.catch(() => undefined);
  if (s) {
    await Promise.all([s.users.stop(), s.token.stop(), s.operator.stop()]);
    await rm(s.dir, { recursive: true, force: true });
  }
});

test.after(async () => {
  await certs?.remove();
});

test.run();
