/**
 * NATS authentication for integration tests: NKey users, and decentralized (operator mode)
 * authentication with a creds file, whose JWTs are signed here with the nkeys library (the
 * same encoding as the NATS jwt libraries: an "ed25519-nkey" JWT, version 2 claims).
 */
import { randomBytes } from "node:crypto";
import { createAccount, createOperator, createUser, type KeyPair } from "@nats-io/nkeys";

const text = new TextDecoder();

function b64url(data: Uint8Array | string): string {
  return Buffer.from(data).toString("base64url");
}

/** A JWT of `claims`, issued (signed) by `issuer` for `subject`. */
function signJwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }));
  const claims = {
    jti: randomBytes(16).toString("hex").toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  const payload = b64url(JSON.stringify(claims));
  const signature = issuer.sign(new TextEncoder().encode(`${header}.${payload}`));
  return `${header}.${payload}.${b64url(signature)}`;
}

/** An NKey user: its seed (the secret, `SU...`) and its public key (`U...`, for the server). */
export function nkeyUser(): { seed: string; publicKey: string } {
  const user = createUser();
  return { seed: text.decode(user.getSeed()), publicKey: user.getPublicKey() };
}

/** The text of a NATS credentials file, as `nsc` writes it. */
function credsFile(jwt: string, seed: string): string {
  return [
    "-----BEGIN NATS USER JWT-----",
    jwt,
    "------END NATS USER JWT------",
    "",
    "************************* IMPORTANT *************************",
    "NKEY Seed printed below can be used to sign and prove identity.",
    "NKEYs are sensitive and should be treated as secrets.",
    "",
    "-----BEGIN USER NKEY SEED-----",
    seed,
    "------END USER NKEY SEED------",
    "",
  ].join("\n");
}

/** An operator with one JetStream-enabled account, and users of it as creds files. */
export interface OperatorAuth {
  /** nats-server configuration text (operator mode, the account preloaded in memory). */
  serverConfig(operatorJwtPath: string): string;
  operatorJwt: string;
  /** A new user of the account: its creds file's text, and the secrets in it. */
  user(name: string): { creds: string; seed: string; jwt: string };
  /** A user signed by an account the server does not know: refused. */
  strangerUser(name: string): { creds: string; seed: string; jwt: string };
}

export function operatorAuth(): OperatorAuth {
  const operator = createOperator();
  const account = createAccount();
  // JetStream needs a system account.
  const system = createAccount();
  const operatorJwt = signJwt(operator, operator.getPublicKey(), "test-operator", {
    type: "operator",
    system_account: system.getPublicKey(),
  });
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const systemJwt = signJwt(operator, system.getPublicKey(), "SYS", {
    limits: unlimited,
    default_permissions: { pub: {}, sub: {} },
    type: "account",
  });
  const jetstream = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };
  const accountJwt = signJwt(operator, account.getPublicKey(), "test-account", {
    limits: { ...unlimited, ...jetstream },
    default_permissions: { pub: {}, sub: {} },
    type: "account",
  });
  const userOf = (issuer: KeyPair, name: string) => {
    const user = createUser();
    const jwt = signJwt(issuer, user.getPublicKey(), name, { pub: {}, sub: {}, subs: -1, data: -1, payload: -1, type: "user" });
    const seed = text.decode(user.getSeed());
    return { creds: credsFile(jwt, seed), seed, jwt };
  };
  return {
    operatorJwt,
    serverConfig: (operatorJwtPath) =>
      [
        `operator: "${operatorJwtPath}"`,
        `system_account: ${system.getPublicKey()}`,
        "resolver: MEMORY",
        "resolver_preload: {",
        `  ${account.getPublicKey()}: "${accountJwt}"`,
        `  ${system.getPublicKey()}: "${systemJwt}"`,
        "}",
        "",
      ].join("\n"),
    user: (name) => userOf(account, name),
    strangerUser: (name) => userOf(createAccount(), name),
  };
}
