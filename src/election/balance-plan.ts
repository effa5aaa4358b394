/**
 * How partitions spread over the live coordinators: a pure function of what a coordinator
 * sees (who is live, who leads which partition), so that every coordinator, seeing the same,
 * plans the same moves, and a test can check it without NATS.
 *
 * - **Targets.** With n live coordinators and P partitions, each should lead
 *   floor(P / n) or ceil(P / n) (its share); the ones that lead the most now keep the
 *   larger targets, so that as few partitions as possible move.
 * - **Surplus.** One that leads more than its target hands the surplus over by resigning,
 *   at most `maxMovesPerRound` partitions a round, each named to the live coordinator
 *   furthest below its target (ties: the lowest id).
 * - **Free partitions** are stood for by everyone, whatever its share. Each partition has an
 *   order of heirs (see heirs): those that lead fewer come first, and one leader's partitions
 *   are spread over the others. The standing delay grows with a coordinator's place in that
 *   order, so the heir stands first. The share only governs the voluntary moves.
 */

export interface BalanceView {
  /** This coordinator's id. */
  self: string;
  /** How many partitions the cluster runs. */
  partitions: number;
  /** The live coordinators' ids, this one included. */
  live: readonly string[];
  /** Who leads each partition now, by partition (null: nobody). A leader not in `live` still counts as leading. */
  leaders: readonly (string | null)[];
  /** The most partitions one coordinator hands over per round. */
  maxMovesPerRound: number;
  /** The live coordinators that may receive a handover (absent: all of them); one that has just joined may not yet. */
  ready?: readonly string[];
}

export interface Handover {
  partition: number;
  /** The coordinator it is handed to: named in the resigning heartbeat. */
  successor: string;
}

export interface BalancePlan {
  /** ceil(P / live): the most a coordinator should lead. */
  share: number;
  /** How many partitions this coordinator should lead. */
  target: number;
  /** How many it leads now. */
  led: number;
  /** The partitions to resign this round, and to whom. */
  handovers: Handover[];
}

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Each live coordinator's target: floor(P / n), plus one for the P mod n that lead the most now (ties: the lowest id). */
export function targets(partitions: number, led: ReadonlyMap<string, number>): Map<string, number> {
  const ids = [...led.keys()].sort((a, b) => led.get(b)! - led.get(a)! || byId(a, b));
  const floor = Math.floor(partitions / ids.length);
  const extra = partitions % ids.length;
  return new Map(ids.map((id, i) => [id, floor + (i < extra ? 1 : 0)]));
}

/** What this coordinator should do now; see the file comment. */
export function planBalance(view: BalanceView): BalancePlan {
  const live = [...new Set(view.live)].sort(byId);
  if (!live.includes(view.self)) live.push(view.self);
  const led = new Map<string, number>(live.map((id) => [id, 0]));
  const mine: number[] = [];
  view.leaders.forEach((leader, p) => {
    if (leader === null) return;
    if (led.has(leader)) led.set(leader, led.get(leader)! + 1);
    if (leader === view.self) mine.push(p);
  });
  const target = targets(view.partitions, led);
  const share = Math.ceil(view.partitions / live.length);
  const myTarget = target.get(view.self)!;
  const surplus = Math.min(Math.max(0, mine.length - myTarget), view.maxMovesPerRound);
  // Receivers, furthest below their target first; each handover fills the neediest.
  const ready = view.ready === undefined ? null : new Set(view.ready);
  const deficit = new Map(
    live.filter((id) => id !== view.self && (ready === null || ready.has(id))).map((id) => [id, target.get(id)! - led.get(id)!]),
  );
  const handovers: Handover[] = [];
  // The highest-numbered partitions go first: any fixed order works, as long as it is the same everywhere.
  for (const partition of surplus > 0 ? mine.slice(-surplus).reverse() : []) {
    let best: string | undefined;
    for (const [id, d] of deficit) if (d > 0 && (best === undefined || d > deficit.get(best)!)) best = id;
    if (best === undefined) break;
    deficit.set(best, deficit.get(best)! - 1);
    handovers.push({ partition, successor: best });
  }
  return { share, target: myTarget, led: mine.length, handovers };
}

/**
 * Who takes each partition over if it falls free: its heir, and after the heir everyone
 * else by how few partitions they lead (ties: the lowest id). The heirs of one leader's
 * partitions are spread over the others, each partition going to whoever leads the fewest
 * counting what that leader's earlier partitions gave them; the heirs of free partitions are
 * spread over everyone the same way. So when a coordinator crashes, every survivor computes
 * the same heirs, and its partitions spread over the survivors without waiting for a round of
 * balancing. A resigning leader names its partitions' heirs as their successors.
 *
 * Returns, per partition, the live coordinators in the order they should stand (the
 * partition's leader, when live, excluded).
 */
export function heirs(live: readonly string[], leaders: readonly (string | null)[]): string[][] {
  const ids = [...new Set(live)].sort(byId);
  const led = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const leader of leaders) if (leader !== null && led.has(leader)) led.set(leader, led.get(leader)! + 1);
  // Each leader's partitions (and the free ones, under null) are shared out independently.
  const given = new Map<string | null, Map<string, number>>();
  return leaders.map((leader) => {
    const owner = leader !== null && led.has(leader) ? leader : null;
    const extra = given.get(owner) ?? new Map<string, number>();
    given.set(owner, extra);
    const load = (id: string) => led.get(id)! + (extra.get(id) ?? 0);
    const order = ids.filter((id) => id !== owner).sort((a, b) => load(a) - load(b) || byId(a, b));
    const heir = order[0];
    if (heir !== undefined) extra.set(heir, (extra.get(heir) ?? 0) + 1);
    return order;
  });
}

/**
 * The extra wait before `self` stands for each partition: `step` for each coordinator ahead
 * of it in the partition's order of heirs, at most `maxRanks` steps. The heir stands after the
 * usual random backoff alone; with `step` at least the backoff's spread, it wins unless it is
 * gone, and then the next one costs only a step more.
 */
export function standingDelays(self: string, order: readonly (readonly string[])[], step: number, maxRanks: number): number[] {
  return order.map((ids) => {
    const rank = ids.indexOf(self);
    return (rank < 0 ? maxRanks : Math.min(rank, maxRanks)) * step;
  });
}
