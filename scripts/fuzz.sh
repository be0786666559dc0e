#!/usr/bin/env bash
# Runs Go's fuzzing engine on every native fuzz target of the module (found
# by their func Fuzz… in *_test.go, outside testdata), FUZZTIME each
# (default 30s), or on the targets named:
#
#   scripts/fuzz.sh                          every target   (make fuzz)
#   FUZZTIME=10m scripts/fuzz.sh             a longer hunt
#   scripts/fuzz.sh ./policy FuzzDecide      one target (pairs: PKG TARGET ...)
#
# It is not part of `make test`, and nothing gates on it: `make test` runs
# every target's seed corpus (testdata/fuzz/… and f.Add) as ordinary tests,
# which is deterministic; the engine is random, so a run that finds nothing
# proves little, and one that fails must be read, not retried. docs/testing.md
# says why, with the numbers.
#
# When a target fails this prints go test's whole report, then every input
# the engine wrote under the package's testdata/fuzz/<target>/ with its
# content and the command that replays it. The input stays in the tree:
# commit it with the fix, and go test runs it from then on. A failure that
# wrote no input is the engine's own trouble (or the target's setup); the
# report says which. Every target runs even after one fails; the exit status
# is 1 when any failed, 2 on a usage error.
set -uo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-30s}

if [ $(($# % 2)) -ne 0 ]; then
  echo "usage: scripts/fuzz.sh [PKG TARGET]...   (e.g. scripts/fuzz.sh ./policy FuzzDecide)" >&2
  exit 2
fi
targets=()
if [ $# -gt 0 ]; then
  while [ $# -gt 0 ]; do targets+=("$1 $2"); shift 2; done
else
  # Every func FuzzX(f *testing.F) of the module, by package folder.
  while IFS=: read -r file name; do
    targets+=("$(dirname "$file") $name")
  done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . |
    grep -v -e '/testdata/' -e '^\./\.tools/' | sed -E 's/:func /:/' | sort)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 2
fi

failed=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  set -- $target
  pkg=$1 name=$2 corpus="$1/testdata/fuzz/$2"
  before=$(ls "$corpus" 2>/dev/null | sort)
  echo "fuzz $name ($pkg) for $t"
  # Minimizing a new input may take long; bound it so the run stays bounded.
  if go test -run '^$' -fuzz "^$name\$" -fuzztime "$t" -fuzzminimizetime 30s "$pkg" >"$log" 2>&1; then
    tail -n 1 "$log"
    continue
  fi
  failed+=("$name ($pkg)")
  echo "fuzz $name ($pkg) FAILED; go test's whole report:"
  sed 's/^/    /' "$log"
  new=$(comm -13 <(echo "$before") <(ls "$corpus" 2>/dev/null | sort) | grep -v '^$' || true)
  if [ -z "$new" ]; then
    echo "fuzz $name: the engine wrote no failing input under $corpus, so the failure above is not a finding"
    echo "  of the target: it is the engine's own trouble or the package's setup (the report says which)."
    echo "  Run it again to see whether it repeats: scripts/fuzz.sh $pkg $name"
    continue
  fi
  for f in $new; do
    echo "fuzz $name: failing input $corpus/$f (kept: commit it with the fix, and go test runs it from then on):"
    sed 's/^/    /' "$corpus/$f"
    echo "  replay it: go test -run '^$name/$f\$' $pkg"
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, $t each, no failure"
