/**
 * Message headers that are built once and then published on every message: the presence
 * reports' (design §10). nats.js encodes a message's headers to bytes on every publish;
 * these keep their bytes and encode again only after a change.
 */
import { MsgHdrsImpl, type Match, type MsgHdrs } from "@nats-io/transport-node";

class FixedHeaders extends MsgHdrsImpl {
  private encoded: Uint8Array | null = null;

  override encode(): Uint8Array {
    if (this.encoded === null) this.encoded = super.encode();
    return this.encoded;
  }

  override set(k: string, v: string, match?: Match): void {
    this.encoded = null;
    super.set(k, v, match);
  }

  override append(k: string, v: string, match?: Match): void {
    this.encoded = null;
    super.append(k, v, match);
  }

  override delete(k: string, match?: Match): void {
    this.encoded = null;
    super.delete(k, match);
  }
}

/** Headers with these entries, encoded once however often they are published. */
export function fixedHeaders(entries: Readonly<Record<string, string>>): MsgHdrs {
  const h = new FixedHeaders();
  for (const [k, v] of Object.entries(entries)) h.set(k, v);
  return h;
}
