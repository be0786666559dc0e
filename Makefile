# The commands the README names. `make test` is what CI runs: the gates,
# every test under the race detector, then every fuzz target briefly.
GO ?= go
FUZZTIME ?= 10s
TOOLS := $(CURDIR)/.tools/bin

.PHONY: test deps lint unit fuzz build bench
test: deps lint unit fuzz

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

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

build:
	scripts/build.sh bin/portcullis

# The performance contract (docs/design.md §6): the load harness against a
# no-op server, with the micro-benchmarks (the Parallel ones on 1, 2 and 4
# cores) in the same run; it rewrites its section of BENCHMARKS.md.
bench:
	$(GO) run ./bench -update BENCHMARKS.md
