/**
 * Every check of `npm run chaos`, in the order its table prints them. The checks are pure
 * functions over what the run recorded (record.ts); each returns how many items it checked
 * and every violation with its evidence (verdict.ts). test/unit/chaos-invariants.test.ts
 * feeds them hand-made sequences.
 */
import { checkDuplicateDeaths, checkFalseDeaths, checkFalseSuspects, checkMissedDeaths } from "./deaths.js";
import {
  checkHeartbeatEpochs,
  checkLeaderFaultsRan,
  checkMonitoredAfterTakeover,
  checkOverlappingEpochs,
  checkStaleEpochs,
} from "./leadership.js";
import { checkLeavesReported, checkNoReportAfterLeave } from "./leaves.js";
import { DEFAULT_CHAOS_TIMINGS, type ChaosRecord, type ChaosTimings } from "./record.js";
import { checkRefusedIgnored, checkRegistrationsReported, checkUnknownSubjects } from "./registrations.js";
import type { CheckResult } from "./verdict.js";

export function runChecks(record: ChaosRecord, timings: ChaosTimings = DEFAULT_CHAOS_TIMINGS): CheckResult[] {
  return [
    checkFalseDeaths(record, timings),
    checkMissedDeaths(record, timings),
    checkDuplicateDeaths(record, timings),
    checkStaleEpochs(record),
    checkOverlappingEpochs(record),
    checkHeartbeatEpochs(record),
    checkMonitoredAfterTakeover(record, timings),
    checkUnknownSubjects(record),
    checkRegistrationsReported(record, timings),
    checkFalseSuspects(record, timings),
    checkLeavesReported(record, timings),
    checkNoReportAfterLeave(record, timings),
    checkRefusedIgnored(record),
    checkLeaderFaultsRan(record),
  ];
}
