/**
 * The machines' only source of randomness. It is seeded, and the seed is logged at startup
 * and written in a record log's header, so that a run's random choices (the election
 * backoff) can be reproduced.
 */
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";

export interface RandomSource {
  /** A uniformly random whole number in [min, max]. */
  int(min: number, max: number): number;
}

/** Largest seed accepted: seeds are 32-bit unsigned integers. */
export const MAX_SEED = 0xffff_ffff;

export function createRandom(seed: number): RandomSource {
  const rng = xoroshiro128plus(seed);
  return { int: (min, max) => uniformInt(rng, min, max) };
}

/** A fresh seed for a run that was not given one. */
export function newSeed(): number {
  return Math.floor(Math.random() * MAX_SEED);
}
