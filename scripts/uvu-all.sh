#!/usr/bin/env bash
# Runs uvu over a directory of *.test.ts files and fails unless every test it found ran and
# passed. uvu's own exit code is not enough: an after.each hook that throws once a test has
# failed hides the failure and the rest of that suite, and uvu exits 0. Its summary lines
# tell. (A run that ends before its summary is refused too.)
set -uo pipefail
dir=${1:-test}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
npx uvu -r tsx "$dir" '\.test\.ts$' 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
total=$(printf '%s\n' "$plain" | awk '/^ *Total: /{t=$2} END{print t+0}')
passed=$(printf '%s\n' "$plain" | awk '/^ *Passed: /{p=$2} END{print p+0}')
skipped=$(printf '%s\n' "$plain" | awk '/^ *Skipped: /{s=$2} END{print s+0}')
if [ "$status" -ne 0 ]; then exit "$status"; fi
if ! printf '%s\n' "$plain" | grep -q '^ *Total: '; then
  echo "uvu-all: the run ended before its summary (a test that never settled?)" >&2
  exit 1
fi
if [ "$passed" -ne "$total" ] || [ "$skipped" -ne 0 ]; then
  echo "uvu-all: $passed of $total tests passed, $skipped skipped" >&2
  exit 1
fi
