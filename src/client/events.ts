/**
 * The client library's events: node:events' EventEmitter, typed by an event map
 * (`{ name: [args] }`). One difference in use: the library reports failures through
 * `fail()`, which emits `error` only when someone listens and otherwise turns it into a
 * process warning, because an unhandled `error` would throw inside a NATS callback and take
 * the application down.
 */
import { EventEmitter } from "node:events";

/** Event name → the listener's arguments. */
export type EventMap<T> = Record<keyof T, unknown[]>;

export class ClientEvents<T extends EventMap<T> & { error: [Error] }> extends EventEmitter<T> {
  protected fail(err: Error): void {
    const self = this as EventEmitter<{ error: [Error] }>;
    if (self.listenerCount("error") > 0) self.emit("error", err);
    else process.emitWarning(err);
  }
}
