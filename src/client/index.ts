/**
 * The client library (`import { PresenceClient, watchPresence } from "presence-coordinator/client"`):
 * be monitored, and watch who is present. It depends on NATS, the wire protocol and an FNV-1a hash only
 * (no winston, xstate or commander).
 */
export {
  PresenceClient,
  PresenceClientError,
  DEFAULT_NEW_LEADER_GRACE_MS,
  type PresenceClientOptions,
  type PresenceClientEvents,
  type PresenceClientStatus,
  type PresenceClientErrorCode,
  type ReregisterReason,
} from "./presence-client.js";
export {
  watchPresence,
  PresenceWatch,
  PresenceView,
  DEFAULT_EXPIRE_AFTER_MS,
  type WatchPresenceOptions,
  type PresenceWatchEvents,
  type PresenceEntry,
  type PresenceChange,
  type LeaveReason,
  type Applied,
  type PartitionLeader,
} from "./watch-presence.js";
export { ClientEvents, type EventMap } from "./events.js";
export { MAX_PARTITIONS, partitionOf } from "../protocol/partition.js";
export {
  decodeReport,
  encodeReport,
  validatePresenceSubject,
  parseRegistration,
  presenceSubjects,
  RegistrationError,
  ReportDecodeError,
  REPORT_HEADERS,
  REPORT_SCHEMA,
  REPORT_TYPES,
  MAX_SUBJECT_LENGTH,
  MAX_REGISTRATION_BYTES,
  type Report,
  type ReportType,
  type ReportEncoding,
  type ClientReport,
  type ClientState,
  type Registration,
  type RegistrationRefusal,
} from "../protocol/presence.js";
export { parseHeartbeat, subjects as coordinatorSubjects, type Heartbeat } from "../protocol/election.js";
export {
  querySubjects,
  QUERY_ERRORS,
  QUERY_SERVICE_NAME,
  type ClientInfo,
  type ListRequest,
  type ListResponse,
  type GetRequest,
  type GetResponse,
  type StatsResponse,
  type QueryErrorBody,
  type QueryOperation,
} from "../protocol/query.js";
