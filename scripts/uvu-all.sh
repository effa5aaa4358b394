#!/usr/bin/env bash
# Runs uvu over a directory of *.test.ts files and fails unless every test it found ran and
# passed. uvu's own exit code is not enough: an after.each hook that throws once a test has
# failed hides the failure and the rest of that suite, and uvu exits 0. Its summary lines
# tell. (A run without a summary, or without tests, is refused too.)
set -uo pipefail
dir=${1:-test}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
npx uvu -r tsx "$dir" '\.test\.ts$' 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
read -r total passed skipped < <(bash "$(dirname "$0")/uvu-counts.sh" "$out")
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$total" -eq 0 ]; then
  echo "uvu-all: no summary, or no tests (a run that ended before its summary?)" >&2
  exit 1
fi
if [ "$passed" -ne "$total" ] || [ "$skipped" -ne 0 ]; then
  echo "uvu-all: $passed of $total tests passed, $skipped skipped" >&2
  exit 1
fi
