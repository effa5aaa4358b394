/**
 * Credentials in NATS URLs, as the NATS clients take them: `nats://user:pass@host:4222`
 * (user and password) and `nats://token@host:4222` (a token), percent-encoded. The nats.js
 * client does not read them from a URL, so they are split off here and passed as options;
 * and every URL that is shown (logs, error lines, record logs) goes through `redactNatsUrl`
 * first. Knows nothing of flags or configuration.
 */

/** What a redacted URL shows in place of a password or a token. */
export const REDACTED = "***";

/** The credentials of one URL, percent-decoded. */
export type UrlCredentials = { kind: "user"; user: string; password: string } | { kind: "token"; token: string };

/** One URL taken apart: what to connect to, what to show, and its credentials if it has any. */
export interface SplitNatsUrl {
  /** The URL without its credentials: what the client connects to. */
  server: string;
  /** The URL with its password or token replaced by `***`: what may be shown. */
  redacted: string;
  credentials?: UrlCredentials;
}

/** A URL whose credentials cannot be read. The message shows the URL redacted. */
export class NatsUrlError extends Error {
  override readonly name = "NatsUrlError";
}

/** Where the userinfo of `url` is: [start of the authority, index of its last "@", end of the authority]. */
function userinfoBounds(url: string): { start: number; at: number; end: number } | null {
  const scheme = url.indexOf("://");
  const start = scheme >= 0 ? scheme + 3 : 0;
  let end = url.length;
  for (const c of ["/", "?", "#"]) {
    const i = url.indexOf(c, start);
    if (i >= 0 && i < end) end = i;
  }
  // As in the WHATWG URL parser: the last "@" of the authority ends the userinfo.
  const at = url.lastIndexOf("@", end - 1);
  return at >= start ? { start, at, end } : null;
}

/**
 * `url` with its password or token replaced by `***` (`nats://alice:***@host:4222`,
 * `nats://***@host:4222`); a URL without credentials is returned as it is. Idempotent.
 */
export function redactNatsUrl(url: string): string {
  const b = userinfoBounds(url);
  if (b === null) return url;
  const userinfo = url.slice(b.start, b.at);
  const colon = userinfo.indexOf(":");
  const shown = colon >= 0 ? `${userinfo.slice(0, colon)}:${REDACTED}` : REDACTED;
  return `${url.slice(0, b.start)}${shown}${url.slice(b.at)}`;
}

/** Every `scheme://userinfo@` in free text, up to the last "@" before a separator. */
const URL_USERINFO = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^\s/?#,;"'<>`]*)@/g;

/**
 * `text` with the password or token of every `scheme://...@host` in it redacted, for text
 * that may quote a URL (an error message, a log line). Idempotent.
 */
export function redactUrlsIn(text: string): string {
  if (!text.includes("@")) return text;
  return text.replace(URL_USERINFO, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(":");
    return `${scheme}${colon >= 0 ? `${userinfo.slice(0, colon)}:${REDACTED}` : REDACTED}@`;
  });
}

function decode(part: string, what: string, redacted: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new NatsUrlError(`${redacted}: the ${what} is not valid percent-encoding (encode "%" as %25)`);
  }
}

/**
 * Splits the credentials off `url`. A userinfo with a colon is a user and a password, one
 * without is a token; both are percent-decoded. Throws a NatsUrlError (showing the URL
 * redacted) for an empty user or token, bad percent-encoding, or no host after the "@".
 */
export function splitNatsUrl(url: string): SplitNatsUrl {
  const b = userinfoBounds(url);
  if (b === null) return { server: url, redacted: url };
  const redacted = redactNatsUrl(url);
  const server = `${url.slice(0, b.start)}${url.slice(b.at + 1)}`;
  if (b.at + 1 >= b.end) throw new NatsUrlError(`${redacted}: no host after the credentials`);
  const userinfo = url.slice(b.start, b.at);
  const colon = userinfo.indexOf(":");
  if (colon < 0) {
    const token = decode(userinfo, "token", redacted);
    if (token === "") throw new NatsUrlError(`${redacted}: the token before "@" is empty`);
    return { server, redacted, credentials: { kind: "token", token } };
  }
  const user = decode(userinfo.slice(0, colon), "user name", redacted);
  const password = decode(userinfo.slice(colon + 1), "password", redacted);
  if (user === "") throw new NatsUrlError(`${redacted}: the user name before ":" is empty`);
  return { server, redacted, credentials: { kind: "user", user, password } };
}

/** `urls` without their credentials, for the client to connect to. */
export function withoutCredentials(urls: readonly string[]): string[] {
  return urls.map((u) => {
    const b = userinfoBounds(u);
    return b === null ? u : `${u.slice(0, b.start)}${u.slice(b.at + 1)}`;
  });
}

/** Whether two URLs' credentials are the same. */
export function sameCredentials(a: UrlCredentials, b: UrlCredentials): boolean {
  if (a.kind === "token" && b.kind === "token") return a.token === b.token;
  if (a.kind === "user" && b.kind === "user") return a.user === b.user && a.password === b.password;
  return false;
}
