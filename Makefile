# The commands the README names. `make test` is what CI runs.
GO ?= go

.PHONY: test build bench
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/portcullis ./cmd/portcullis

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./policy/
