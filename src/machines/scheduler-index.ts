/**
 * Makes stopping an actor cost what that actor has scheduled, not what the whole system has.
 *
 * XState 5.33's scheduler keeps every delayed event of an actor system in one table, and
 * `cancelAll(actor)` (run for every actor that stops) walks that whole table to find the
 * stopping actor's timers. Stopping the monitor (every way out of leadership) stops every
 * client actor, so the cost of a step-down is the number of clients times the number of
 * timers in the system: when client actors kept two or three timers each, 50,000 clients
 * meant minutes of a blocked event loop. Client actors keep no timer now (their shard sweeps
 * their liveness), and this index keeps a stop's cost from growing with the system's timers
 * should any machine set many again.
 *
 * This keeps, beside the scheduler, the ids each actor has scheduled, and answers
 * `cancelAll` from that index through the scheduler's own `cancel`. It changes no timing and
 * no order: the same timers are set and cancelled, and timers keep firing through XState.
 * The index holds at most one entry per (actor, id); an `after` timer's id is fixed per
 * state and delay, so an actor's entry stays a handful of ids, and it goes with the actor.
 */
import type { ActorSystem, AnyActorRef } from "xstate";

/** The scheduler every actor system has (`system.scheduler`, typed by XState's ActorSystem). */
type Scheduler = ActorSystem<never>["scheduler"];

const indexed = new WeakSet<object>();

export function indexScheduler(system: { scheduler: Scheduler }): void {
  const scheduler: Scheduler = system.scheduler;
  if (indexed.has(scheduler)) return;
  indexed.add(scheduler);
  const ids = new Map<AnyActorRef, Set<string>>();
  const schedule = scheduler.schedule.bind(scheduler);
  const cancel = scheduler.cancel.bind(scheduler);
  scheduler.schedule = (source, target, event, delay, id) => {
    // XState draws a random id for a delayed send without one; draw it here to index it.
    const key = id ?? Math.random().toString(36).slice(2);
    let own = ids.get(source);
    if (own === undefined) {
      own = new Set();
      ids.set(source, own);
    }
    own.add(key);
    schedule(source, target, event, delay, key);
  };
  scheduler.cancel = (source, id) => {
    ids.get(source)?.delete(id);
    cancel(source, id);
  };
  scheduler.cancelAll = (actorRef) => {
    const own = ids.get(actorRef);
    if (own === undefined) return;
    ids.delete(actorRef);
    for (const id of own) cancel(actorRef, id);
  };
}
