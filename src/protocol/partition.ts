/**
 * Which partition a client belongs to: the FNV-1a 32-bit hash of its subject's UTF-8 bytes,
 * modulo the number of partitions. Any language can compute it, so a consumer can tell which
 * partition's leader reports on a client. With one partition (the default) every client is
 * in partition 0.
 */
import fnv1a from "@sindresorhus/fnv1a";

/** The most partitions a cluster may have. */
export const MAX_PARTITIONS = 1024;

/** The partition of `subject` among `partitions` (a whole number from 1 to MAX_PARTITIONS). */
export function partitionOf(subject: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new RangeError(`partitions must be a whole number from 1 to ${MAX_PARTITIONS}; got ${partitions}`);
  }
  return Number(fnv1a(subject, { size: 32 }) % BigInt(partitions));
}

/** Whether `n` names a partition of a cluster of MAX_PARTITIONS: a whole number from 0 to MAX_PARTITIONS - 1. */
export function isPartition(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < MAX_PARTITIONS;
}
