/**
 * What a check of a chaos run returns, and the verdicts on it: a check with violations
 * fails, and one that checked nothing is NOT JUDGED, which fails the run as a violation does.
 */

export interface Violation {
  at: number;
  message: string;
}

export interface CheckResult {
  name: string;
  /** What was checked, e.g. "312 NodeDead". */
  checked: number;
  unit: string;
  violations: Violation[];
  /** Items that could not be judged (e.g. a failover cut short by the next one). */
  skipped?: number;
}

export type Verdict = "PASS" | "FAIL" | "NOT JUDGED";

/** A check with violations fails; one that checked nothing judged nothing and does not pass. */
export function verdictOf(c: Pick<CheckResult, "checked" | "violations">): Verdict {
  return c.violations.length > 0 ? "FAIL" : c.checked === 0 ? "NOT JUDGED" : "PASS";
}

/** The run passes only when every check passed: a failed or an unjudged check fails it. */
export const allPassed = (checks: readonly CheckResult[]): boolean => checks.every((c) => verdictOf(c) === "PASS");
