/** The soak's verdict on deaths: what counts as a false death, a missed one, a double one. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { judgeDeaths, type Silence } from "../../bench/soak-checks.js";

const T = { deadTimeoutMs: 5000, pingIntervalMs: 1000 };
const silences = (entries: [string, Silence[]][]) => new Map(entries);

test("soak checks - a death inside a long enough silence is true, and the silence is reported once", () => {
  const r = judgeDeaths(silences([["a", [{ from: 1000, to: 9000 }]]]), [{ subject: "a", at: 6500 }], T);
  assert.equal(r, { falseDeaths: [], missed: [], twice: [], silences: 1 });
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
  assert.equal(r, { falseDeaths: [], missed: [], twice: ["a"], silences: 2 }, "b is not missed: its silence has not ended");
});

test.run();
