#!/usr/bin/env bash
# `make bench`: magpipe against the Python/DVC references, measured side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BV=.bench-venv
if [ ! -x "$BV/bin/dvc" ] || ! "$BV/bin/python" -c 'import numpy, torch, dvc_s3' 2>/dev/null; then
  # The full torch wheel (4.7 GB) is for the PyTorch reference only; magpipe needs the slim one.
  echo "setting up $BV (numpy, dvc with its S3 remote, torch; benchmark only)" >&2
  python3 -m venv "$BV"
  "$BV/bin/pip" install --quiet --disable-pip-version-check numpy 'dvc[s3]' torch==2.13.0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BV/bin/python" bench/bench.py --magpipe "$PWD/target/release/magpipe" \
  --data "$(realpath "$SOLARED_DIR")" --pipeline "$PWD/pipeline.yaml" \
  --dvc "$PWD/$BV/bin/dvc" --worker "$PWD/target/release/magpipe-worker" --work "$work" "$@" \
  | tee "$work/bench.md"
# The command kind's own overhead against DVC, and the all-cached default pipeline.
"$BV/bin/python" bench/command_overhead.py --magpipe "$PWD/target/release/magpipe" \
  --dvc "$PWD/$BV/bin/dvc" --pipeline "$PWD/pipeline.yaml" | tee "$work/command.md"
# Sharing results: push/pull against dvc push/pull to a folder and to a real S3 server, run --pull
# against computing, and the whole pipeline pulled against a cold run (REMOTE_BENCH=--no-full skips
# that one: its cold run takes most of an hour).
"$BV/bin/python" bench/remote.py --magpipe "$PWD/target/release/magpipe" \
  --dvc "$PWD/$BV/bin/dvc" --pipeline "$PWD/pipeline.yaml" --data "$(realpath "$SOLARED_DIR")" \
  --weed "$PWD/.venv/bin/weed" ${REMOTE_BENCH:-} \
  | tee "$work/remote.md"
# magpipe.runs() in Python over a store of 100 sweep points (the notebook venv's polars and pandas).
.venv-notebook/bin/python bench/python_runs.py --magpipe "$PWD/target/release/magpipe" \
  --repo "$PWD" --data "$(realpath "$SOLARED_DIR")" --work "$work" | tee "$work/python.md"
# The book's measurements page is this run's output, with when and where it ran
# (MEASUREMENTS= to write it elsewhere, MEASUREMENTS=none not at all).
out=${MEASUREMENTS:-docs/src/measurements.md}
if [ "$out" != none ]; then
  "$BV/bin/python" bench/page.py --out "$out" --worker "$PWD/target/release/magpipe-worker" \
    --magpipe "$PWD/target/release/magpipe" --args "$*" "$work/bench.md" "$work/command.md" \
    "$work/remote.md" "$work/python.md"
fi
