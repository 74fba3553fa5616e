#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), coverage-guided by libFuzzer through
# cargo fuzz, starting from fuzz/seeds and the working corpus in fuzz/corpus (kept between runs,
# not committed). Prints the executions per target; a crash stops the run with its input in
# fuzz/artifacts/<target>/ — fix it, then copy the input to fuzz/regressions/<target>/ so
# `make test` replays it (tests/fuzz_replay.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh build          (only build the targets: `make test` builds them beside its tests)
#
# FUZZ_FLAGS picks the build: by default optimised, with AddressSanitizer and debug assertions
# (integer overflow panics); `make test` uses "--dev -s none", which builds in about 4 minutes
# on 2 cores instead of about 10, for its short run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npz npy pickle pipeline_yaml remote_config)

# cargo fuzz passes -Z flags (sanitizer, coverage); these machines have only the stable toolchain,
# and RUSTC_BOOTSTRAP lets it accept them.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
read -r -a flags <<<"${FUZZ_FLAGS:--O -a}"
# The fuzz build shares nothing with the workspace's (other flags): coverage instrumentation.
cargo fuzz build "${flags[@]}"
[ "$secs" != build ] || exit 0

summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/corpus/$t.log"
  echo "fuzzing $t for ${secs}s" >&2
  # One big allocation is a bug in a reader of 1 GiB-bounded files: -malloc_limit_mb catches it.
  if ! cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -max_len=16384 -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=1100 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $t crashed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  summary+=("$(printf '%-14s %10s executions in %4ss, no crash (corpus %s inputs)' "$t" "$execs" "$secs" "$corpus")")
done
printf '%s\n' "${summary[@]}"
