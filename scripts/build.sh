#!/usr/bin/env bash
# Builds the static portcullis binary. `make build` and the Dockerfile both
# call this, so the image holds exactly what a local build makes.
set -euo pipefail
out=${1:-bin/portcullis}
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o "$out" ./cmd/portcullis
