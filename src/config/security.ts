/**
 * NATS authentication and TLS: the flags' values, the credentials taken from seed URLs,
 * their checks, and what of them may be logged (never a secret).
 */
import { ConfigError } from "./config.js";
import { NatsUrlError, sameCredentials, splitNatsUrl, type SplitNatsUrl, type UrlCredentials } from "../nats/url.js";

/**
 * How a command authenticates to NATS and secures the connection. Every field is optional;
 * at most one way to authenticate (creds, nkey, user/password, token) may be set. These
 * values are kept out of `CoordinatorConfig` on purpose: the configuration is logged at
 * startup and written into record logs, and secrets must appear in neither.
 */
export interface NatsSecurity {
  /** `--creds`: a NATS credentials file (user JWT and NKey seed). Read again on every reconnect. */
  credsFile?: string;
  /** `--nkey`: a file holding an NKey user seed (`SU...`). Read again on every reconnect. */
  nkeyFile?: string;
  /** `--user` (with `--password`). */
  user?: string;
  /** `--password`: a secret; never logged. */
  password?: string;
  /** `--token`: a secret; never logged. */
  token?: string;
  /** `--tls-cert`: client certificate (PEM), with `--tls-key`, for servers that verify clients. */
  tlsCert?: string;
  /** `--tls-key`: the client certificate's private key (PEM). */
  tlsKey?: string;
  /** `--tls-ca`: CA certificate(s) (PEM) that the server's certificate must chain to. */
  tlsCa?: string;
  /** The user and password, or the token, came from the userinfo of a `--nats-url` URL. */
  fromUrl?: boolean;
}

/** A description of `security` that holds no secret: which method, which files, TLS or not. */
export function describeSecurity(security: NatsSecurity): Record<string, string> {
  const out: Record<string, string> = { auth: authMethod(security) ?? "none" };
  if (security.user !== undefined) out.user = security.user;
  if (security.credsFile !== undefined) out.creds = security.credsFile;
  if (security.nkeyFile !== undefined) out.nkey = security.nkeyFile;
  if (security.tlsCa !== undefined || security.tlsCert !== undefined) {
    out.tls = [security.tlsCa !== undefined ? "ca" : "", security.tlsCert !== undefined ? "client-cert" : ""].filter(Boolean).join("+");
  }
  return out;
}

/** The one way `security` authenticates, named after its flags; undefined: none. */
export function authMethod(security: NatsSecurity): string | undefined {
  if (security.credsFile !== undefined) return "--creds";
  if (security.nkeyFile !== undefined) return "--nkey";
  if (security.user !== undefined || security.password !== undefined) {
    return security.fromUrl === true ? "the user and password in --nats-url" : "--user/--password";
  }
  if (security.token !== undefined) return security.fromUrl === true ? "the token in --nats-url" : "--token";
  return undefined;
}

/** The seed URLs as shown (credentials redacted) and the security they imply. */
export interface NatsConnectionSettings {
  urls: string[];
  security: NatsSecurity;
}

/**
 * Takes the credentials out of the seed URLs (`nats://user:pass@host`, `nats://token@host`,
 * percent-decoded) and into `security`, as the NATS clients read them; returns the URLs
 * with the credentials redacted. Refuses (ConfigError, naming the flag and the URLs
 * redacted) credentials that differ between URLs, that differ from --user, --password or
 * --token, or that come with --creds or --nkey. A URL without credentials uses those of
 * the others: the client has one set for every server. Never puts a secret in a message.
 */
export function natsConnectionFrom(rawUrls: readonly string[], flags: NatsSecurity): NatsConnectionSettings {
  let found: { credentials: UrlCredentials; url: string } | undefined;
  const urls: string[] = [];
  for (const raw of rawUrls) {
    let split: SplitNatsUrl;
    try {
      split = splitNatsUrl(raw);
    } catch (err) {
      if (err instanceof NatsUrlError) throw new ConfigError("--nats-url", err.message);
      throw err;
    }
    urls.push(split.redacted);
    if (split.credentials === undefined) continue;
    if (found !== undefined && !sameCredentials(found.credentials, split.credentials)) {
      throw new ConfigError(
        "--nats-url",
        `the credentials in ${found.url} and ${split.redacted} differ; every URL must carry the same ones (or none)`,
      );
    }
    found ??= { credentials: split.credentials, url: split.redacted };
  }
  if (found === undefined) return { urls, security: flags };
  const { credentials, url } = found;
  const inUrl = `--nats-url (${url})`;
  const combined = (flag: string) =>
    new ConfigError(flag, `cannot be combined with the credentials in ${inUrl}; pick one way to authenticate`);
  if (flags.credsFile !== undefined) throw combined("--creds");
  if (flags.nkeyFile !== undefined) throw combined("--nkey");
  if (credentials.kind === "user") {
    if (flags.token !== undefined) throw combined("--token");
    if (flags.user !== undefined && flags.user !== credentials.user) {
      throw new ConfigError("--user", `"${flags.user}" differs from the user in ${inUrl}`);
    }
    if (flags.password !== undefined && flags.password !== credentials.password) {
      throw new ConfigError("--password", `differs from the password in ${inUrl}`);
    }
    return { urls, security: { ...flags, user: credentials.user, password: credentials.password, fromUrl: true } };
  }
  if (flags.user !== undefined) throw combined("--user");
  if (flags.password !== undefined) throw combined("--password");
  if (flags.token !== undefined && flags.token !== credentials.token)
    throw new ConfigError("--token", `differs from the token in ${inUrl}`);
  return { urls, security: { ...flags, token: credentials.token, fromUrl: true } };
}

/** Checks that a file named by `flag` exists and can be read; returns its text. */
function readableFile(flag: string, path: string, readText: (path: string) => string): string {
  if (path.trim() === "") throw new ConfigError(flag, "must name a file; got an empty value");
  try {
    return readText(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "cannot be read (permission denied)"
          : code === "EISDIR"
            ? "is a directory"
            : `cannot be read (${code ?? String(err)})`;
    throw new ConfigError(flag, `${path} ${why}`);
  }
}

/**
 * Refuses bad combinations and unreadable files before anything connects, naming the flag:
 * a certificate without its key (or the reverse), a password without a user, more than one
 * way to authenticate, a file that does not exist, a creds or seed file that holds
 * something else. Never puts a secret or a file's content into a message.
 */
export function validateSecurity(security: NatsSecurity, readText: (path: string) => string): void {
  const methods = [
    security.credsFile !== undefined ? "--creds" : null,
    security.nkeyFile !== undefined ? "--nkey" : null,
    security.user !== undefined || security.password !== undefined ? "--user/--password" : null,
    security.token !== undefined ? "--token" : null,
  ].filter((m): m is string => m !== null);
  if (methods.length > 1) {
    throw new ConfigError(methods[1]!.split("/")[0]!, `cannot be combined with ${methods[0]}; pick one way to authenticate`);
  }
  if (security.password !== undefined && security.user === undefined) {
    throw new ConfigError("--password", "needs --user");
  }
  if (security.user !== undefined && security.password === undefined) {
    throw new ConfigError("--user", "needs --password (or PRESENCE_PASSWORD)");
  }
  if (security.user !== undefined && security.user.trim() === "") throw new ConfigError("--user", "must not be empty");
  if (security.token !== undefined && security.token === "") throw new ConfigError("--token", "must not be empty");
  if (security.tlsCert !== undefined && security.tlsKey === undefined) {
    throw new ConfigError("--tls-cert", "needs --tls-key (the certificate's private key)");
  }
  if (security.tlsKey !== undefined && security.tlsCert === undefined) {
    throw new ConfigError("--tls-key", "needs --tls-cert (the client certificate it belongs to)");
  }
  if (security.credsFile !== undefined) {
    const text = readableFile("--creds", security.credsFile, readText);
    if (!text.includes("BEGIN NATS USER JWT") || !text.includes("BEGIN USER NKEY SEED")) {
      throw new ConfigError("--creds", `${security.credsFile} is not a NATS credentials file (no user JWT and NKey seed in it)`);
    }
  }
  if (security.nkeyFile !== undefined) {
    const text = readableFile("--nkey", security.nkeyFile, readText);
    if (!/^SU[A-Z2-7]{50,}$/.test(text.trim())) {
      throw new ConfigError("--nkey", `${security.nkeyFile} does not hold an NKey user seed (one line starting with SU)`);
    }
  }
  for (const [flag, path] of [
    ["--tls-cert", security.tlsCert],
    ["--tls-key", security.tlsKey],
    ["--tls-ca", security.tlsCa],
  ] as const) {
    if (path === undefined) continue;
    const text = readableFile(flag, path, readText);
    if (!text.includes("-----BEGIN ")) throw new ConfigError(flag, `${path} is not a PEM file`);
  }
}
