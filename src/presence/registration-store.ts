/**
 * Registrations, behind a small interface: the KV bucket `presence-registrations-{cluster}`
 * (one entry per registered client, what a new leader loads) and the WorkQueue stream of
 * the same name with its one durable consumer, which only the leader pulls.
 */
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  type ConsumerMessages,
  type JetStreamClient,
  type JsMsg,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvWatchEntry } from "@nats-io/kv";
import { nanos, type NatsConnection } from "@nats-io/transport-node";
import type { JsonObject } from "@bufbuild/protobuf";
import {
  MAX_REGISTRATION_BYTES,
  presenceResources,
  presenceSubjects,
  RegistrationError,
  validatePresenceSubject,
  type Registration,
} from "../protocol/presence.js";
import { isWrongRevision } from "../nats/jetstream-errors.js";
import { describeError, type Logger } from "../observe/logger.js";
import { RegistrationMirror } from "./registration-mirror.js";

/** Why a stored subject would be refused today, or null. */
function refusalOf(subject: string): string | null {
  try {
    validatePresenceSubject(subject);
    return null;
  } catch (err) {
    if (err instanceof RegistrationError) return err.reason;
    throw err;
  }
}

/** One stored registration and its KV revision. */
export interface StoredRegistration {
  registration: Registration;
  revision: number;
  /** When it was stored, ms since the Unix epoch. */
  registeredAtMs: number;
}

/**
 * A registration or unregistration message pulled from the registration stream: what the
 * intake uses of a JetStream message (`JsMsg` is one).
 */
export interface RegistrationMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  ack(): void;
  /** Hands it back for redelivery, after `millis` if given. */
  nak(millis?: number): void;
}

export interface RegistrationStore {
  /**
   * Starts pulling the registration stream's durable consumer, which only the leader pulls;
   * every message goes to `handle`. Resolves to the pull, which `close()` ends.
   */
  pull(handle: (m: RegistrationMessage) => Promise<void>): Promise<{ close(): Promise<unknown> }>;
  /** Every stored registration; with `only`, those of the subjects it accepts (a partition's). */
  loadAll(only?: (subject: string) => boolean): Promise<StoredRegistration[]>;
  /** Stores a registration; resolves to its revision. */
  put(registration: Registration): Promise<number>;
  /** Removes a subject's registration; with `revision`, only if it is still that one. */
  remove(subject: string, revision?: number): Promise<void>;
  /**
   * Calls `handler` with every change of the bucket from now on, as the registration mirror
   * applies it; absent when the store keeps no mirror. Returns a function that stops it.
   */
  follow?(handler: (change: RegistrationChange) => void): () => void;
}

/** A change of the registration bucket: a registration stored, or a subject's removed. */
export type RegistrationChange = { op: "put"; stored: StoredRegistration } | { op: "delete"; subject: string; revision: number };

/** The subject a registration key stands for (registrationKey's inverse). */
export function subjectOfKey(key: string): string {
  return Buffer.from(key, "base64url").toString("utf8");
}

/** A registration store operation failed. */
export class RegistrationStoreError extends Error {
  override readonly name = "RegistrationStoreError";
}

/** KV keys allow only [-/_=.a-zA-Z0-9]; subjects allow more, so keys are base64url of the subject. */
export function registrationKey(subject: string): string {
  return Buffer.from(subject, "utf8").toString("base64url");
}

interface StoredValue {
  myPresenceSubject: string;
  registeredAtMs: number;
  metadata: JsonObject;
}

/**
 * One key's latest value as read, judged as it is read (for the mirror, as it arrives rather
 * than when a takeover needs it): a registration to monitor, one whose subject is refused
 * today, or why it cannot be read.
 */
type StoredEntry =
  | { key: string; revision: number; stored: StoredRegistration }
  | { key: string; revision: number; refused: { subject: string; reason: string } }
  | { key: string; revision: number; error: string };

function decodeStored(e: KvWatchEntry): StoredEntry {
  try {
    const v = e.json<StoredValue>();
    const reason = refusalOf(v.myPresenceSubject);
    if (reason !== null) return { key: e.key, revision: e.revision, refused: { subject: String(v.myPresenceSubject), reason } };
    return {
      key: e.key,
      revision: e.revision,
      stored: {
        registration: { subject: v.myPresenceSubject, metadata: v.metadata ?? {} },
        revision: e.revision,
        registeredAtMs: v.registeredAtMs,
      },
    };
  } catch (err) {
    return { key: e.key, revision: e.revision, error: describeError(err) };
  }
}

/**
 * A takeover waits for the registration mirror while it makes progress; once it has applied
 * nothing for this long, the bucket is read instead.
 */
const MIRROR_STALL_MS = 1000;

export interface RegistrationResourcesOptions {
  clusterId: string;
  replicas: number;
  logger: Logger;
  /** How long a pulled message may stay unacknowledged before it is delivered again. */
  ackWaitMs: number;
  /** Mirror the bucket in memory from the start (RegistrationMirror), so that `loadAll` need not read it. */
  mirror?: boolean;
}

/**
 * The largest message the registration stream stores: a registration's payload limit and
 * room for headers. The server refuses bigger ones before they take disk or reach a leader.
 */
export const REGISTRATION_STREAM_MAX_MSG_BYTES = MAX_REGISTRATION_BYTES + 4096;

/** Messages asked for at once from the registration consumer. */
const PULL_BATCH = 256;
/**
 * How long one pull request stays open on the server. A leader that dies leaves its open
 * pull requests behind, and the server may hand them new registrations, which then wait
 * out the ack wait before the next leader gets them; short-lived requests keep that to one
 * ack wait. (nats.js renews them as they expire.)
 */
const PULL_EXPIRES_MS = 2000;
/** Registration messages stored at once (different subjects; one subject's run in order). */
const PULL_CONCURRENCY = 128;

/** The KV bucket and the stream, created if absent. */
export class KvRegistrationStore implements RegistrationStore {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly clusterId: string,
    private readonly kv: KV,
    private readonly logger: Logger,
    private readonly mirror: RegistrationMirror<StoredEntry> | null,
  ) {}

  /** Registrations in the mirror now (0 without one). */
  get mirrored(): number {
    return this.mirror?.size ?? 0;
  }

  follow(handler: (change: RegistrationChange) => void): () => void {
    if (this.mirror === null) throw new Error("registration store: changes are followed through the mirror, and there is none");
    return this.mirror.follow((key, value, revision) => {
      if (value === undefined) handler({ op: "delete", subject: subjectOfKey(key), revision });
      else if ("stored" in value) handler({ op: "put", stored: value.stored });
      // A value refused today or unreadable is not monitored (loadAll logs and deletes it).
    });
  }

  /** Stops the registration mirror's watch (closing the connection stops it too). */
  close(): void {
    this.mirror?.stop();
  }

  static async open(nc: NatsConnection, options: RegistrationResourcesOptions): Promise<KvRegistrationStore> {
    const { clusterId, replicas } = options;
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const stream = presenceResources.registrationStream(clusterId);
    const bucket = presenceResources.registrationBucket(clusterId);
    try {
      try {
        const info = await jsm.streams.info(stream);
        if (info.config.max_msg_size !== REGISTRATION_STREAM_MAX_MSG_BYTES) {
          // A stream made by an older version: bring its message size limit in line.
          await jsm.streams.update(stream, { max_msg_size: REGISTRATION_STREAM_MAX_MSG_BYTES });
          options.logger.info("limited the registration stream's message size", { stream, bytes: REGISTRATION_STREAM_MAX_MSG_BYTES });
        }
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
        await jsm.streams.add({
          name: stream,
          subjects: [presenceSubjects.register(clusterId), presenceSubjects.unregister(clusterId)],
          retention: RetentionPolicy.Workqueue,
          num_replicas: replicas,
          max_msg_size: REGISTRATION_STREAM_MAX_MSG_BYTES,
        });
        options.logger.info("created the registration stream", { stream });
      }
      try {
        await jsm.consumers.info(stream, presenceResources.registrationConsumer);
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
        await jsm.consumers.add(stream, {
          durable_name: presenceResources.registrationConsumer,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: nanos(options.ackWaitMs),
          max_deliver: -1,
        });
      }
      const kv = await new Kvm(js).create(bucket, { history: 1, replicas });
      return new KvRegistrationStore(
        js,
        clusterId,
        kv,
        options.logger,
        options.mirror === true ? RegistrationMirror.start(kv, decodeStored, options.logger, () => nc.isClosed()) : null,
      );
    } catch (err) {
      throw new RegistrationStoreError(`registration store: cannot prepare stream and KV bucket ${stream}: ${describeError(err)}`, {
        cause: err,
      });
    }
  }

  /**
   * Every stored registration. One whose subject is refused today (stored before a rule was
   * added, or by another implementation sharing the bucket) is not monitored but logged and
   * deleted, as it would have been refused on arrival.
   */
  async loadAll(only?: (subject: string) => boolean): Promise<StoredRegistration[]> {
    // Everything the bucket holds now is up to its stream's last sequence: once the mirror
    // has applied that much, it holds what a read of the bucket would give.
    const mirror = this.mirror;
    if (mirror === null) {
      this.lastLoadSource = "bucket";
      return this.accept(await this.readBucket(), only);
    }
    const last = (await this.kv.status()).streamInfo.state.last_seq;
    const mirrored = await mirror.at(last, MIRROR_STALL_MS);
    this.lastLoadSource = mirrored !== null ? "mirror" : "bucket";
    if (mirrored === null) this.logger.info("the registration mirror is not current: reading the bucket", { lastSeq: last });
    return this.accept(mirrored ?? (await this.readBucket()), only);
  }

  /** Where the last `loadAll` found the registrations (for tests and logs). */
  lastLoadSource: "mirror" | "bucket" | null = null;

  /** Every key's latest value, read from the bucket with a watch of its own. */
  private async readBucket(): Promise<StoredEntry[]> {
    const out: StoredEntry[] = [];
    // Deletes are delivered too, so that the last entry (delta 0) always arrives.
    const iter = await this.kv.watch();
    const done = new Promise<void>((resolve) => {
      void (async () => {
        for await (const e of iter) {
          if (e.operation === "PUT") out.push(decodeStored(e));
          if (e.delta === 0) break;
        }
        resolve();
      })();
    });
    // An empty bucket delivers nothing; the watcher's pending count tells when it is caught up.
    const status = await this.kv.status();
    if (status.values === 0) iter.stop();
    await done;
    iter.stop();
    return out;
  }

  /**
   * The stored registrations to monitor. One whose subject is refused today is not monitored
   * but logged and deleted; an unreadable one is logged and ignored.
   */
  private async accept(entries: StoredEntry[], only?: (subject: string) => boolean): Promise<StoredRegistration[]> {
    const out: StoredRegistration[] = [];
    const refused: { key: string; revision: number; subject: string; reason: string }[] = [];
    for (const e of entries) {
      // Another partition's entry is its leader's business, refused or not.
      if (
        only !== undefined &&
        !only("stored" in e ? e.stored.registration.subject : "refused" in e ? e.refused.subject : subjectOfKey(e.key))
      )
        continue;
      if ("stored" in e) out.push(e.stored);
      else if ("refused" in e) refused.push({ key: e.key, revision: e.revision, ...e.refused });
      else this.logger.warn("ignored an unreadable stored registration", { key: e.key, error: e.error });
    }
    if (refused.length > 0) await this.removeRefused(refused);
    return out;
  }

  private async removeRefused(refused: { key: string; revision: number; subject: string; reason: string }[]): Promise<void> {
    this.logger.warn("stored registrations refused: not monitored, and deleted", {
      count: refused.length,
      first: refused.slice(0, 5).map((r) => ({ subject: r.subject, reason: r.reason })),
    });
    for (const r of refused) {
      try {
        // Against the revision read: a registration that replaced it meanwhile is kept.
        await this.kv.delete(r.key, { previousSeq: r.revision });
      } catch (err) {
        if (!isWrongRevision(err))
          this.logger.warn("could not delete a refused stored registration", { key: r.key, error: describeError(err) });
      }
    }
  }

  async put(registration: Registration): Promise<number> {
    const value: StoredValue = {
      myPresenceSubject: registration.subject,
      registeredAtMs: Date.now(),
      metadata: registration.metadata,
    };
    return this.kv.put(registrationKey(registration.subject), JSON.stringify(value));
  }

  async remove(subject: string, revision?: number): Promise<void> {
    try {
      await this.kv.delete(registrationKey(subject), revision !== undefined ? { previousSeq: revision } : {});
    } catch (err) {
      if (!isWrongRevision(err)) throw err;
    }
  }

  /** Pulls the registration stream's durable consumer until the pull is closed. */
  async pull(handle: (msg: JsMsg) => Promise<void>): Promise<ConsumerMessages> {
    const consumer = await this.js.consumers.get(
      presenceResources.registrationStream(this.clusterId),
      presenceResources.registrationConsumer,
    );
    const messages = await consumer.consume({ max_messages: PULL_BATCH, expires: PULL_EXPIRES_MS });
    void (async () => {
      // Up to PULL_CONCURRENCY messages are handled at once: each waits for a KV round trip,
      // and one at a time would cap registrations at a few hundred a second.
      const inFlight = new Set<Promise<void>>();
      for await (const m of messages) {
        const work = handle(m).finally(() => inFlight.delete(work));
        inFlight.add(work);
        if (inFlight.size >= PULL_CONCURRENCY) await Promise.race(inFlight);
      }
    })();
    return messages;
  }
}
