#!/usr/bin/env bash
# Prints "total passed skipped" from the summary of a uvu run's output (a file), colours
# stripped; 0 0 0 when there is no summary.
sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '/^ *Total: /{t=$2} /^ *Passed: /{p=$2} /^ *Skipped: /{s=$2} END{print t+0, p+0, s+0}'
