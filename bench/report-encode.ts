/**
 * `node --import tsx bench/report-encode.ts [--clients N] [--rounds R] [--batch B] [--partition P]`: CPU per
 * `NodeState` encode, the old way (a whole report object through `encodeReport`) against the
 * per-client encoder, one report at a time (`encode`) and in batches of B as the edge
 * publishes a sweep's reports (`encodeAll`), in both encodings. Each round encodes one
 * NodeState for every client, as a state interval does; the rounds alternate between the ways
 * so that load on the machine falls on all alike. Prints the median and best round in µs per
 * report. `--partition` stamps every report with that partition (default 0: the field is left
 * out, today's wire). Figures, not a verdict: nothing here passes or fails on time.
 */
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { encodeReport, type ClientReport, type ReportEncoding } from "../src/protocol/presence.js";
import { createReportEncoder } from "../src/protocol/report-encoder.js";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "10000" },
    rounds: { type: "string", default: "15" },
    batch: { type: "string", default: "200" },
    partition: { type: "string", default: "0" },
  },
});
const clients = Number(values.clients);
const rounds = Number(values.rounds);
const batch = Number(values.batch);
const partition = Number(values.partition);
const clusterId = "prod";
const coordinatorId = "coordinator-7f3a9c";
const epoch = 4_294_967_301;

/** One NodeState per client, with metadata like a registration's (a few short fields). */
const bodies: ClientReport[] = Array.from({ length: clients }, (_, i) => ({
  type: "NodeState",
  clientSubject: `app.clients.svc-${i % 97}.instance-${i}`,
  state: "alive",
  lastSeenMs: 1_795_336_518_000 + i,
  rttMs: 0.25 + (i % 40) / 16,
  missedPings: 0,
  metadata: { service: `svc-${i % 97}`, zone: i % 2 ? "eu-1" : "us-2", version: "2.4.1" },
}));

let sink = 0;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function oldWay(encoding: ReportEncoding, seq0: number): void {
  let seq = seq0;
  const ts = Date.now();
  for (const body of bodies) {
    const report = { ...body, clusterId, coordinatorId, epoch, seq: ++seq, ts, ...(partition === 0 ? {} : { partition }) };
    sink += encodeReport(report, encoding).byteLength;
  }
}

function bench(encoding: ReportEncoding): { old: number[]; fast: number[]; batched: number[] } {
  const encoder = createReportEncoder(encoding, clusterId, coordinatorId, partition);
  const newWay = (seq0: number) => {
    let seq = seq0;
    const ts = Date.now();
    for (const body of bodies) sink += encoder.encode(body, epoch, ++seq, ts).byteLength;
  };
  const batches = Array.from({ length: Math.ceil(clients / batch) }, (_, i) => bodies.slice(i * batch, (i + 1) * batch));
  const batchedWay = (seq0: number) => {
    let seq = seq0 + 1;
    const ts = Date.now();
    for (const b of batches) {
      for (const payload of encoder.encodeAll(b, epoch, seq, ts)) sink += payload.byteLength;
      seq += b.length;
    }
  };
  // Warm-up: JIT, and the first round fills the encoder's per-client cache.
  oldWay(encoding, 0);
  newWay(0);
  batchedWay(0);
  const old: number[] = [];
  const fast: number[] = [];
  const batched: number[] = [];
  const perReport = (from: number) => ((performance.now() - from) * 1000) / clients;
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    oldWay(encoding, r * clients);
    old.push(perReport(t));
    t = performance.now();
    newWay(r * clients);
    fast.push(perReport(t));
    t = performance.now();
    batchedWay(r * clients);
    batched.push(perReport(t));
  }
  return { old, fast, batched };
}

console.log(`NodeState encode, ${clients} clients x ${rounds} rounds, partition ${partition} (µs per report; median, best)`);
for (const encoding of ["protobuf", "json"] as const) {
  const { old, fast, batched } = bench(encoding);
  const f = (xs: number[]) => `${median(xs).toFixed(2)} µs (best ${Math.min(...xs).toFixed(2)})`;
  console.log(
    `${encoding.padEnd(8)}  encodeReport ${f(old)}   per-client encoder: one at a time ${f(fast)}, in batches of ${batch} ${f(batched)}   ratio ${(median(old) / median(batched)).toFixed(1)}x`,
  );
}
if (sink === 0) console.log("(nothing encoded)");
