#!/usr/bin/env bash
# Validates a Workflow Run RO-Crate against Provenance Run Crate 0.5 at RECOMMENDED severity with
# rocrate-validator, offline, from a private cache built here (README.md). Exit 0: it passes.
# usage: validate.sh CRATE_DIR REPORT_JSON
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../../../.venv-rocrate"
[ -x "$venv/bin/rocrate-validator" ] || { echo "$venv is missing: make rocrate-validator" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME="$work/xdg" ROCRATE_VALIDATOR_AUTO_WARM=0
"$venv/bin/python" "$here/offline_cache.py" "$work/http_cache" \
  "https://w3id.org/ro/crate/1.1/context=$here/ro-crate-1.1-context.jsonld" >/dev/null
exec "$venv/bin/rocrate-validator" -y --disable-color validate --offline \
  --cache-path "$work/http_cache" -p provenance-run-crate-0.5 --no-auto-profile \
  --requirement-severity recommended --skip-checks process-run-crate-0.5_5.1 --no-paging \
  --output-format json --output-file "$2" "$1"
