#!/usr/bin/env bash
# The suite proper, as `make test` runs it once everything is built and installed: every test
# binary of the workspace against a single-node Slurm started for them, while the fuzz targets
# build beside them; then the kernels' tests on aarch64 under qemu and a short fuzzing run.
#
# Why beside: the tests leave a core idle much of the time (tests/slurm.rs alone is about three
# minutes, most of it waiting on Slurm's scheduler and a job's time limit), and the fuzz build
# (its own target dir, so no cargo lock is shared) fills that time at a lower priority: measured
# on a 2-core AMD EPYC, the tests with it beside them took 10.7 min, against about 9.7 for the
# tests alone and 4 for the fuzz build after them. Not beside the tests' build, which it only
# slowed (3 min to 6).
#
#   .ci/suite.sh FUZZ_SECONDS      (FUZZ_FLAGS and CARGO_FLAGS from make)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_secs=${1:-20}
read -r -a cargo_flags <<<"${CARGO_FLAGS:---release --workspace --locked}"
log=target/fuzz-build.log
mkdir -p target

cargo test "${cargo_flags[@]}" --no-run
# Its own process group (setsid), so that stopping it stops its cargo and rustc too.
setsid nice -n 10 bash fuzz/run.sh build >"$log" 2>&1 &
fuzz_build=$!
slurm_up=
cleanup() {
  kill -- "-$fuzz_build" 2>/dev/null || true
  [ -z "$slurm_up" ] || bash .ci/slurm/stop.sh
}
trap cleanup EXIT

eval "$(bash .ci/slurm/start.sh)"
slurm_up=1
rc=0
cargo test "${cargo_flags[@]}" || rc=$?
bash .ci/slurm/stop.sh
slurm_up=
[ "$rc" = 0 ] || exit "$rc"

if ! wait "$fuzz_build"; then
  tail -n 40 "$log" >&2
  echo "the fuzz targets did not build (all of it in $log)" >&2
  exit 1
fi
trap - EXIT
make --no-print-directory test-aarch64
bash fuzz/run.sh "$fuzz_secs"
