/**
 * Readiness (`/readyz`) of a coordinator's JetStream resources: the lease bucket, the
 * registration bucket and the registration stream.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { describeError } from "../observe/logger.js";
import { resources } from "../protocol/election.js";
import { presenceResources } from "../protocol/presence.js";

/**
 * Readiness (`/readyz`): the lease bucket, the registration bucket and the registration
 * stream answer JetStream within `timeoutMs`. Throws naming the first that does not.
 */
export async function checkResources(nc: NatsConnection, clusterId: string, timeoutMs: number): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
  const checks: [string, string][] = [
    ["lease bucket", `KV_${resources.leadershipBucket(clusterId)}`],
    ["registration bucket", `KV_${presenceResources.registrationBucket(clusterId)}`],
    ["registration stream", presenceResources.registrationStream(clusterId)],
  ];
  await Promise.all(
    checks.map(async ([what, stream]) => {
      try {
        await jsm.streams.info(stream);
      } catch (err) {
        throw new Error(`${what} ${stream}: ${describeError(err)}`, { cause: err });
      }
    }),
  );
}
