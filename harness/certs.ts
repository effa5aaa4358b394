/**
 * Test certificates made with `openssl` in a temporary directory: a CA, a server
 * certificate for 127.0.0.1/localhost signed by it, and a client certificate for mutual TLS.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCertificates {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second CA that signed nothing here: a server certificate does not chain to it. */
  otherCa: string;
  remove(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run("openssl", args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`);
  }
}

async function signed(dir: string, name: string, subject: string, ext: string): Promise<void> {
  await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}-key.pem`, "-subj", subject, "-out", `${name}.csr`], dir);
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca-key.pem",
      "-CAcreateserial",
      "-days",
      "2",
      "-sha256",
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.pem`,
    ],
    dir,
  );
}

export async function makeCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "presence-tls-"));
  try {
    for (const ca of ["ca", "other-ca"]) {
      await openssl(
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          `${ca}-key.pem`,
          "-out",
          `${ca}.pem`,
          "-days",
          "2",
          "-subj",
          `/CN=presence test ${ca}`,
        ],
        dir,
      );
    }
    await signed(dir, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    await signed(dir, "client", "/CN=presence-coordinator", "extendedKeyUsage=clientAuth\n");
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem"),
    otherCa: join(dir, "other-ca.pem"),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
