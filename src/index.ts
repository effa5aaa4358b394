/**
 * presence-coordinator as a library: the presence client, the presence watch, and the wire
 * types and codecs of reports, heartbeats and the query service. The same as
 * `presence-coordinator/client`; the daemon itself is the `presence-coordinator` command.
 */
export * from "./client/index.js";
