/**
 * The cluster id rule: one plain subject token of 1–64 letters, digits, "-" or "_". It names
 * every subject, stream and KV bucket of a cluster, so coordinators and clients check it alike.
 */
const CLUSTER_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidClusterId(id: string): boolean {
  return CLUSTER_ID.test(id);
}
