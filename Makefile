# The commands the README names. `make test` is what CI runs and what gates
# a change: the tools it needs, the gates, then every test under the race
# detector (every fuzz target's seed corpus among them, as ordinary tests).
# `make fuzz` runs the fuzzing engine and gates nothing: a random search
# belongs beside the gate, with its findings kept (docs/testing.md says why).
GO ?= go
FUZZTIME ?= 30s
TOOLS := $(CURDIR)/.tools/bin

.PHONY: test deps lint unit fuzz build bench
test: deps lint unit

deps:
	scripts/install-deps.sh

# Gates, each failing the build: formatting, vet, staticcheck (pinned by
# scripts/install-deps.sh, configured by staticcheck.conf), tidy modules.
# The architecture test runs with the unit tests (internal/archtest).
lint:
	@files=$$(gofmt -l $$(find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...
	$(GO) mod tidy -diff
	cd k8s && $(GO) mod tidy -diff && $(GO) vet ./... && $(TOOLS)/staticcheck ./...

unit:
	$(GO) test -race -count=1 ./...
	cd k8s && HELM=$(TOOLS)/helm $(GO) test -count=1 ./...

# Every fuzz target under the engine for FUZZTIME (FUZZTIME=10m make fuzz for
# a longer hunt); a failure prints the whole report, the failing input (kept
# under the package's testdata/fuzz/) and the command that replays it.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

build:
	scripts/build.sh bin/portcullis

# The performance contract (docs/design.md §6): the load harness against a
# no-op server, with the micro-benchmarks (the Parallel ones on 1, 2 and 4
# cores) in the same run; it rewrites its section of BENCHMARKS.md.
bench:
	$(GO) run ./bench -update BENCHMARKS.md
