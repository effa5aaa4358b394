import { test } from "uvu";
import * as assert from "uvu/assert";
import { MAX_PARTITIONS, partitionOf } from "../../src/client/index.js";

// FNV-1a 32 of each subject's UTF-8 bytes, computed by an independent implementation:
// h = 0x811c9dc5; for each byte: h = ((h ^ byte) * 0x01000193) mod 2^32.
const VECTORS: [subject: string, hash: number][] = [
  ["", 0x811c9dc5],
  ["a", 0xe40c292c],
  ["foobar", 0xbf9cf968],
  ["demo.client-3", 0xc50d6037],
  ["svc.é.ü", 0x4a435c5e],
  ["🦄🌈", 0xaaf5fee7],
];

test("partition - the FNV-1a 32 hash of the subject's UTF-8 bytes, modulo the partitions", () => {
  for (const [subject, hash] of VECTORS) {
    for (const partitions of [1, 4, 7, 1024]) {
      assert.is(partitionOf(subject, partitions), hash % partitions, `${JSON.stringify(subject)} among ${partitions}`);
    }
  }
  assert.is(partitionOf("demo.client-3", 1024), 55);
  assert.is(partitionOf("svc.é.ü", 7), 5, "non-ASCII subjects hash their UTF-8 bytes");
});

test("partition - one partition holds every client", () => {
  for (const [subject] of VECTORS) assert.is(partitionOf(subject, 1), 0);
});

test("partition - a partition count that is not a whole number from 1 to the maximum is refused", () => {
  for (const bad of [0, -1, 1.5, Number.NaN, MAX_PARTITIONS + 1]) {
    assert.throws(() => partitionOf("svc.a", bad), /partitions must be a whole number from 1 to 1024/, String(bad));
  }
  assert.is(partitionOf("a", MAX_PARTITIONS), 300, "the maximum itself is allowed");
});

test.run();
