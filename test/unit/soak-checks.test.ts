/** The soak's verdict on deaths: what counts as a false death, a missed one, a double one. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ClientAction, type SeenPresence } from "../../harness/chaos-invariants/record.js";
import { judgeChurn, judgeDeaths, type Silence } from "../../harness/soak-checks.js";

const T = { deadTimeoutMs: 5000, pingIntervalMs: 1000 };
const silences = (entries: [string, Silence[]][]) => new Map(entries);

test("soak checks - a death inside a long enough silence is true, and the silence is reported once", () => {
  const r = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "a", at: 6500 }], T);
  assert.equal(r, { falseDeaths: [], late: [], missed: [], twice: [], silences: 1, details: [] });
});

test("soak checks - a death of a client that never went silent is false", () => {
  const r = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "b", at: 6500 }], T);
  assert.equal(r.falseDeaths, ["b"]);
  assert.equal(r.missed, ["a"], "and the silence of a went unreported");
});

test("soak checks - a client that was silenced before is falsely dead when it answers again (the check does not remember every silence as a licence)", () => {
  const r = judgeDeaths(
    silences([["a", [{ from: 1000, to: 9000 }]]]),
    [
      { subject: "a", at: 6500 },
      { subject: "a", at: 60_000 }, // long after a was revived
    ],
    T,
  );
  assert.equal(r.falseDeaths, ["a"]);
  assert.equal(r.details, ["a dead at 60.000 s: silent from 1.000 s to 9.000 s"]);
});

test("soak checks - a death just after the revival is true when the leader stood still meanwhile", () => {
  const r = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "a", at: 10_500 }], T);
  assert.equal(r.falseDeaths, ["a"], "1.5 s after the revival, with nothing in the way");
  const stalled = judgeDeaths(
    silences([["a", [{ from: 1000, to: 9000 }]]]),
    [{ subject: "a", at: 10_500 }],
    T,
    [{ from: 8500, to: 10_000 }],
    5000,
  );
  assert.equal(stalled.falseDeaths, [], "no heartbeat from 8.5 s to 10 s: the leader could not read the reply");
});

test("soak checks - a death sooner than the dead timeout (less one ping interval) after the silence began is false", () => {
  const r = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "a", at: 1000 + 3000 }], T);
  assert.equal(r.falseDeaths, ["a"]);
  const onTime = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "a", at: 1000 + 4000 }], T);
  assert.equal(onTime.falseDeaths, [], "the last answer may precede the silence by a ping interval");
});

test("soak checks - two deaths in one silence, and a silence still going on", () => {
  const r = judgeDeaths(
    silences([
      ["a", [{ from: 1000, to: 9000 }]],
      ["b", [{ from: 20_000, to: undefined }]],
    ]),
    [
      { subject: "a", at: 6000 },
      { subject: "a", at: 7000 },
    ],
    T,
  );
  assert.equal(
    r,
    { falseDeaths: [], late: [], missed: [], twice: ["a"], silences: 2, details: [] },
    "b is not missed: its silence has not ended",
  );
});

test("soak checks - a death later than dead timeout + ping interval + slack after the silence began is late", () => {
  // T: dead 5000, ping 1000, slack 1000: due by 7000 ms into the silence.
  const onTime = judgeDeaths(silences([["a", [{ from: 1000, to: 12_000 }]]]), [{ subject: "a", at: 1000 + 6900 }], T);
  assert.equal(onTime.late, []);
  const late = judgeDeaths(silences([["a", [{ from: 1000, to: 12_000 }]]]), [{ subject: "a", at: 1000 + 9000 }], T);
  assert.equal(late.late, ["a"]);
  assert.equal(late.missed, [], "late, but not missed");
  // A leader that stood still for 2.5 s meanwhile (no heartbeat) moves the bound.
  const stalled = judgeDeaths(silences([["a", [{ from: 1000, to: 12_000 }]]]), [{ subject: "a", at: 1000 + 9000 }], T, [
    { from: 3000, to: 5500 },
  ]);
  assert.equal(stalled.late, []);
});

const C = DEFAULT_CHAOS_TIMINGS; // ping 750, travel 250, leave bound 3000
const act = (at: number, subject: string, kind: ClientAction["kind"]): ClientAction => ({ at, subject, kind });
const seen = (at: number, type: string, clientSubject: string): SeenPresence => ({
  at,
  type,
  clientSubject,
  coordinatorId: "soak-a",
  epoch: 1,
  seq: 1,
});
const soak = (actions: ClientAction[], presence: SeenPresence[]): ChaosRecord => ({
  actions,
  presence,
  heartbeats: Array.from({ length: 31 }, (_, i) => ({ at: i * 1000, coordinatorId: "soak-a", epoch: 1 })),
  elections: [],
  subjects: new Set(actions.map((x) => x.subject)),
  endAt: 30_000,
});
const verdicts = (r: ChaosRecord) => Object.fromEntries(judgeChurn(r, C).map((c) => [c.name, c.violations.length]));

test("soak checks - churn: suspects of silent clients and prompt leaves pass", () => {
  const actions = [
    act(0, "a", "register"),
    act(0, "b", "register"),
    act(5000, "a", "silence"),
    act(8000, "b", "unregister"),
    act(16_000, "b", "register"),
  ];
  const presence = [seen(6600, "NodeSuspect", "a"), seen(8030, "NodeLeft", "b"), seen(16_010, "NodePresent", "b")];
  const results = judgeChurn(soak(actions, presence), C);
  assert.equal(verdicts(soak(actions, presence)), { "false suspects": 0, "NodeLeft in time": 0, "no report after leave": 0 });
  assert.equal(
    results.map((c) => c.checked),
    [1, 1, 1],
  );
});

test("soak checks - churn: a suspect of a client that answers, a leave never reported, a report after leave, each fail", () => {
  const actions = [act(0, "a", "register"), act(0, "b", "register"), act(8000, "b", "unregister"), act(16_000, "b", "register")];
  // a answers all along, yet is suspect; b's leave is ignored: reported on, never left.
  const presence = [
    seen(6600, "NodeSuspect", "a"),
    seen(9500, "NodeState", "b"),
    seen(11_500, "NodeState", "b"),
    seen(13_100, "NodeDead", "b"),
  ];
  assert.equal(verdicts(soak(actions, presence)), { "false suspects": 1, "NodeLeft in time": 1, "no report after leave": 1 });
});

test.run();
