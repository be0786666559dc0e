#!/usr/bin/env bash
# Installs the real tools the checks and tests drive: staticcheck and helm
# (from the Go module proxy, at pinned versions, into .tools/bin), nginx
# (Debian's nginx-light, with the auth_request module) for the forward-auth
# end-to-end tests, PostgreSQL (Debian's postgresql) for the key store's, and
# Chromium (Debian's chromium) for the token page's browser tests. Safe to
# run again: it installs only what is missing.
# Without root or apt-get it says what to install; the tests that need it
# then fail under CI and are skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
HELM_VERSION=v3.22.0
staticcheck=.tools/bin/staticcheck
if ! { [ -x "$staticcheck" ] && go version -m "$staticcheck" 2>/dev/null | grep -q "honnef.co/go/tools[[:space:]]*$STATICCHECK_VERSION"; }; then
  echo "install-deps: building staticcheck $STATICCHECK_VERSION from the Go module proxy"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

helm=.tools/bin/helm
# The module version recorded in the binary says which helm it is.
if ! { [ -x "$helm" ] && go version -m "$helm" 2>/dev/null | grep -q "helm.sh/helm/v3[[:space:]]*$HELM_VERSION"; }; then
  echo "install-deps: building helm $HELM_VERSION from the Go module proxy (a few minutes, once)"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
# PostgreSQL's server binaries, for the key store's tests (each starts a
# throwaway cluster of its own; the package's own cluster is never started).
have_postgresql() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
# Headless Chromium, for the token page's browser tests (chromedp).
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

need=()
have_nginx || need+=(nginx-light)
have_postgresql || need+=(postgresql)
have_chromium || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: please install: ${need[*]} (Debian/Ubuntu: apt-get install ${need[*]})" >&2
  exit 0
fi
echo "install-deps: installing ${need[*]}"
# Do not let the package start a system nginx on port 80.
cleanup=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  cleanup=/usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ -n "$cleanup" ] && rm -f "$cleanup"
have_nginx
have_postgresql
have_chromium
