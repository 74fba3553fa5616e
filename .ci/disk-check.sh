#!/usr/bin/env bash
# Before `make test` builds anything: is there room for what it writes? A first run writes
# about NEED_GB (target/, fuzz/target/ and the venvs; measured, see docs/src/install.md), and a
# disk that fills up ends the run half an hour in, inside some linker, with "No space left on
# device". What is built already counts as room.
#
#   .ci/disk-check.sh NEED_GB        (make test DISK_CHECK=0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."
need_gb=${1:?NEED_GB}
used_kb=$({ du -sk target fuzz/target .venv .venv-* 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
gb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1048576}'; }
short_kb=$((need_gb * 1048576 - used_kb - free_kb))
if [ "$short_kb" -gt 0 ]; then
  echo "error: make test needs about ${need_gb} GB in $(pwd) (built and installed here so far: $(gb "$used_kb") GB; free on its disk: $(gb "$free_kb") GB): free $(gb "$short_kb") GB more, or run it with DISK_CHECK=0" >&2
  exit 1
fi
