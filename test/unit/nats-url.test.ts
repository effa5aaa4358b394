import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, validateConfig, DEFAULT_MONITOR_TIMINGS, DEFAULT_TIMINGS, type CoordinatorConfig } from "../../src/config/config.js";
import { authMethod, describeSecurity, natsConnectionFrom, type NatsSecurity } from "../../src/config/security.js";
import { redactNatsUrl, redactUrlsIn, splitNatsUrl, withoutCredentials } from "../../src/nats/url.js";
import { connectFailure, connectionOptions } from "../../src/nats/connection.js";
import { createLogger } from "../../src/observe/logger.js";
import { openRecordLog } from "../../src/observe/record/recorder.js";

const SECRET = "s3cr3t-PW";

function refused(urls: string[], flags: NatsSecurity = {}): ConfigError {
  try {
    natsConnectionFrom(urls, flags);
  } catch (err) {
    assert.instance(err, ConfigError);
    const e = err as ConfigError;
    assert.not.ok(e.message.includes(SECRET) || e.message.includes("tok3n-XYZ"), `no secret in "${e.message}"`);
    return e;
  }
  assert.unreachable(`expected ${urls.join(",")} to be refused`);
  throw new Error("unreachable");
}

test("nats-url - user and password are taken from the URL, percent-decoded, and the URL is shown redacted", () => {
  const c = natsConnectionFrom([`nats://alice:${SECRET}%40x%3A@127.0.0.1:4222`], {});
  assert.equal(c.urls, ["nats://alice:***@127.0.0.1:4222"]);
  assert.equal(c.security, { user: "alice", password: `${SECRET}@x:`, fromUrl: true });
  assert.is(authMethod(c.security), "the user and password in --nats-url");
  assert.equal(describeSecurity(c.security), { auth: "the user and password in --nats-url", user: "alice" });
});

test("nats-url - a userinfo without a colon is a token, as in the NATS clients", () => {
  const c = natsConnectionFrom(["tls://tok3n%2FXYZ@nats.example.com:4443", "tls://nats2.example.com:4443"], {});
  assert.equal(c.urls, ["tls://***@nats.example.com:4443", "tls://nats2.example.com:4443"]);
  assert.equal(c.security, { token: "tok3n/XYZ", fromUrl: true });
  assert.is(authMethod(c.security), "the token in --nats-url");
});

test("nats-url - a host:port seed without a scheme may carry credentials too", () => {
  const c = natsConnectionFrom([`alice:${SECRET}@127.0.0.1:4222`], {});
  assert.equal(c.urls, ["alice:***@127.0.0.1:4222"]);
  assert.is(c.security.password, SECRET);
  validateConfig({ ...config, natsUrls: c.urls });
});

test("nats-url - URLs without credentials and the flags pass through untouched", () => {
  const flags: NatsSecurity = { user: "bob", password: SECRET };
  const c = natsConnectionFrom(["nats://a:4222", "b:4222"], flags);
  assert.equal(c.urls, ["nats://a:4222", "b:4222"]);
  assert.is(c.security, flags);
});

test("nats-url - the same credentials in several URLs, or also given by flags, are accepted", () => {
  const c = natsConnectionFrom([`nats://alice:${SECRET}@a:4222`, "nats://b:4222", `nats://alice:${SECRET}@c:4222`], {
    user: "alice",
    password: SECRET,
  });
  assert.equal(c.urls, ["nats://alice:***@a:4222", "nats://b:4222", "nats://alice:***@c:4222"]);
  assert.equal(c.security, { user: "alice", password: SECRET, fromUrl: true });
  assert.equal(natsConnectionFrom(["nats://tok3n-XYZ@a:4222"], { token: "tok3n-XYZ" }).security, { token: "tok3n-XYZ", fromUrl: true });
});

test("nats-url - credentials that disagree between URLs or with the flags are refused, naming the flag", () => {
  const cases: [string[], NatsSecurity, string, RegExp][] = [
    [
      [`nats://alice:${SECRET}@a:4222`, "nats://alice:other@b:4222"],
      {},
      "--nats-url",
      /credentials in nats:\/\/alice:\*\*\*@a:4222 and nats:\/\/alice:\*\*\*@b:4222 differ/,
    ],
    [[`nats://alice:${SECRET}@a:4222`, "nats://tok3n-XYZ@b:4222"], {}, "--nats-url", /differ/],
    [
      [`nats://alice:${SECRET}@a:4222`],
      { user: "bob", password: SECRET },
      "--user",
      /"bob" differs from the user in --nats-url \(nats:\/\/alice:\*\*\*@a:4222\)/,
    ],
    [[`nats://alice:${SECRET}@a:4222`], { user: "alice", password: "other" }, "--password", /differs from the password in --nats-url/],
    [[`nats://alice:${SECRET}@a:4222`], { token: "tok3n-XYZ" }, "--token", /cannot be combined with the credentials in --nats-url/],
    [["nats://tok3n-XYZ@a:4222"], { token: "other" }, "--token", /differs from the token in --nats-url \(nats:\/\/\*\*\*@a:4222\)/],
    [["nats://tok3n-XYZ@a:4222"], { user: "alice", password: SECRET }, "--user", /cannot be combined/],
    [[`nats://alice:${SECRET}@a:4222`], { credsFile: "x.creds" }, "--creds", /cannot be combined with the credentials in --nats-url/],
    [["nats://tok3n-XYZ@a:4222"], { nkeyFile: "x.nk" }, "--nkey", /cannot be combined/],
  ];
  for (const [urls, flags, flag, message] of cases) {
    const e = refused(urls, flags);
    assert.is(e.flag, flag, e.message);
    assert.match(e.message, message);
  }
});

test("nats-url - unreadable credentials are refused without showing them", () => {
  assert.match(
    refused([`nats://alice:${SECRET}%zz@a:4222`]).message,
    /nats:\/\/alice:\*\*\*@a:4222: the password is not valid percent-encoding/,
  );
  assert.match(refused([`nats://:${SECRET}@a:4222`]).message, /the user name before ":" is empty/);
  assert.match(refused(["nats://@a:4222"]).message, /the token before "@" is empty/);
  assert.match(refused([`nats://alice:${SECRET}@`]).message, /no host after the credentials/);
});

test("nats-url - redaction hides the password or token, keeps the rest, and is idempotent", () => {
  assert.is(redactNatsUrl(`nats://alice:${SECRET}@h:4222`), "nats://alice:***@h:4222");
  assert.is(redactNatsUrl("nats://tok3n-XYZ@h:4222"), "nats://***@h:4222");
  assert.is(redactNatsUrl(`nats://alice:p@ss@h:4222/x@y`), "nats://alice:***@h:4222/x@y", "the last @ of the authority ends the userinfo");
  assert.is(redactNatsUrl("nats://h:4222"), "nats://h:4222");
  assert.is(redactNatsUrl(redactNatsUrl(`nats://alice:${SECRET}@h:4222`)), "nats://alice:***@h:4222");
  const text = `cannot connect to nats://alice:${SECRET}@h1:4222,wss://tok3n-XYZ@h2:443 ("tls://u:p@w@h3")`;
  assert.is(redactUrlsIn(text), 'cannot connect to nats://alice:***@h1:4222,wss://***@h2:443 ("tls://u:***@h3")');
  assert.equal(withoutCredentials([`nats://alice:${SECRET}@h:4222`, "nats://alice:***@h:4223", "tok@h:1", "h:2"]), [
    "nats://h:4222",
    "nats://h:4223",
    "h:1",
    "h:2",
  ]);
  assert.is(splitNatsUrl("nats://h:4222").credentials, undefined);
});

test("nats-url - a bad URL is refused with its credentials redacted", () => {
  try {
    validateConfig({ ...config, natsUrls: [`http://alice:${SECRET}@h:80`] });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.match((err as Error).message, /"http:\/\/alice:\*\*\*@h:80" is not a NATS URL/);
  }
});

test("nats-url - a failed connection names the URLs redacted", () => {
  const e = connectFailure([`nats://alice:${SECRET}@h:4222`, "nats://tok3n-XYZ@h2:4222"], new Error("connection refused"), {
    user: "alice",
    password: SECRET,
    fromUrl: true,
  });
  assert.is(e.message, "cannot connect to NATS at nats://alice:***@h:4222, nats://***@h2:4222: connection refused");
});

test("nats-url - the client is given the URLs without userinfo, and the credentials as options", () => {
  const c = natsConnectionFrom([`nats://alice:${SECRET}@h:4222`, "tls://h2:4443"], {});
  assert.equal(connectionOptions(c.urls, c.security), { servers: ["nats://h:4222", "tls://h2:4443"], user: "alice", pass: SECRET });
  const t = natsConnectionFrom(["tok3n-XYZ@h:4222"], {});
  assert.equal(connectionOptions(t.urls, t.security), { servers: ["h:4222"], token: "tok3n-XYZ" });
});

test("nats-url - no log line shows a URL's password, whoever logs it, at any level", () => {
  const out = new PassThrough();
  let text = "";
  out.on("data", (c: Buffer) => (text += c.toString()));
  for (const format of ["json", "pretty"] as const) {
    const log = createLogger({ format, verbose: true, stream: out });
    log.debug(`dialing nats://alice:${SECRET}@h:4222`, { servers: [`nats://tok3n-XYZ@h:1`], server: `tls://alice:${SECRET}@h:2` });
    log.error("failed", { error: `nats://alice:${SECRET}@h:4222 refused` });
  }
  assert.ok(text.includes("nats://alice:***@h:4222") && text.includes("nats://***@h:1"), text);
  assert.not.ok(text.includes(SECRET) || text.includes("tok3n-XYZ"), text);
});

test("nats-url - a record log's header shows the URLs redacted, whatever the caller passed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "presence-url-record-"));
  try {
    const path = join(dir, "r.jsonl");
    const log = await openRecordLog({
      path,
      version: "0",
      config: { ...config, natsUrls: [`nats://alice:${SECRET}@h:4222`] },
      onError: () => undefined,
    });
    await log.close();
    const text = await readFile(path, "utf8");
    assert.ok(text.includes('"natsUrls":["nats://alice:***@h:4222"]'), text);
    assert.not.ok(text.includes(SECRET), text);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const config: CoordinatorConfig = {
  natsUrls: ["nats://127.0.0.1:4222"],
  clusterId: "c",
  coordinatorId: "c1",
  ...DEFAULT_TIMINGS,
  ...DEFAULT_MONITOR_TIMINGS,
  shardCount: 1,
  reportEncoding: "protobuf",
  connectTimeoutMs: 5000,
  kvReplicas: 1,
  maxClients: 10,
  logFormat: "json",
  verbose: false,
  seed: 1,
};

test.run();
