#!/usr/bin/env bash
# Runs every native Go fuzz target for FUZZTIME each (default 10s; CI uses
# the default). A longer hunt: FUZZTIME=10m scripts/fuzz.sh, or one target:
#   go test -run '^$' -fuzz '^FuzzDecide$' -fuzztime 1h ./policy/
# A failing input is written under the package's testdata/fuzz/ and makes
# this script fail; commit it once fixed, so it stays a regression seed.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-10s}
targets=(
  "./policy FuzzRoutePath"
  "./authn FuzzExtract"
  "./policy FuzzDecide"
  "./policy FuzzToken"
  "./policy FuzzLoad"
  "./extauthz FuzzCheck"
)
for target in "${targets[@]}"; do
  set -- $target
  echo "fuzz $2 ($1) for $t"
  # Minimizing a new input may take long; bound it so the run stays bounded.
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$t" -fuzzminimizetime 5s "$1" 2>&1 | tail -n 3
  test "${PIPESTATUS[0]}" -eq 0
done
