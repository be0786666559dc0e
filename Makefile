# The commands the README names. `make test` is what CI runs.
GO ?= go
FUZZTIME ?= 10s

.PHONY: test deps unit fuzz build bench
test: deps unit fuzz

deps:
	scripts/install-deps.sh

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	cd k8s && $(GO) vet ./... && HELM=$(CURDIR)/.tools/bin/helm $(GO) test -count=1 ./...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

build:
	scripts/build.sh bin/portcullis

# The performance contract (DESIGN.md §6): micro-benchmarks, then the load
# harness against a no-op server. BENCHMARKS.md records the latest results.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./policy/
	$(GO) run ./bench
