# fhirlake — build, demo, tests and benchmarks.
#
#   make demo    run the whole pipeline on embedded defaults (no services needed)
#   make test    install what is missing, start the local stack, run every test, stop the stack

SHELL := /bin/bash
GO    ?= go
TAGS  := duckdb_arrow
BIN   := bin/fhirlake
PKGS  := ./...
export CGO_ENABLED := 1

.PHONY: build demo test unit integration stack-up stack-down fuzz bench bench-parquet vet clean

build:
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/fhirlake

demo: build
	./$(BIN) demo

# Installs Kafka, versitygw and the dbt virtualenv into .cache/ when missing,
# starts them on loopback, runs the unit tests (with -race) and the
# integration tests against the real services, and stops the stack, also
# when a test fails.
test:
	deploy/local/test

unit:
	$(GO) test -race -tags $(TAGS) -count=1 $(PKGS)

# Needs a running stack: eval "$$(deploy/local/stack env)" first.
integration:
	$(GO) test -tags $(TAGS),integration -count=1 -timeout 30m -v ./cmd/fhirlake/ -run Integration

vet:
	$(GO) vet -tags $(TAGS) $(PKGS)

stack-up:
	deploy/local/stack up

stack-down:
	deploy/local/stack down

FUZZTIME ?= 30s
fuzz:
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./consumer/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./consumer/
	$(GO) test -run XXX -fuzz '^FuzzParseFHIRPath$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzEvaluate$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzParseJSON$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzBundleEntries$$' -fuzztime $(FUZZTIME) ./flatten/

bench-parquet:
	$(GO) test -tags $(TAGS) -run XXX -bench Parquet -benchtime 10x ./sink/

bench: bench-parquet

clean:
	rm -rf bin .fhirlake

# The flatten engine on the Synthea medium sample (100 patients, 36,593
# resources) against encoding/json and github.com/gofhir/fhirpath, plus every
# default view with Parquet output. It lives in the bench/ module so that the
# reference engines never enter go.mod. Data: FHIRLAKE_BENCH_DATA=DIR or
# BENCH_FLAGS="-data DIR"; BENCHTIME is the minimum time per figure.
BENCHTIME   ?= 2s
BENCH_FLAGS ?=
.PHONY: bench-flatten
bench-flatten:
	cd bench && $(GO) run -tags $(TAGS) ./cmd/flattenbench -time $(BENCHTIME) $(BENCH_FLAGS)
