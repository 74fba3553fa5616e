#!/usr/bin/env bash
# `make bench`: magpipe against the Python/DVC references, measured side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
BV=.bench-venv
if [ ! -x "$BV/bin/dvc" ] || ! "$BV/bin/python" -c 'import numpy' 2>/dev/null; then
  echo "setting up $BV (numpy, dvc; benchmark only)" >&2
  python3 -m venv "$BV"
  "$BV/bin/pip" install --quiet --disable-pip-version-check numpy dvc
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BV/bin/python" bench/bench.py --magpipe "$PWD/target/release/magpipe" \
  --data "$(realpath "$SOLARED_DIR")" --pipeline "$PWD/pipeline.yaml" \
  --dvc "$PWD/$BV/bin/dvc" --work "$work" "$@"
