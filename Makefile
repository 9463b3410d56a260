# fhirlake — build, demo, tests, linters and benchmarks. `make help` lists the targets.
#
#   make demo    run the whole pipeline on embedded defaults (no services needed)
#   make test    install what is missing, start the local stack, run every test, stop the stack

SHELL := /bin/bash
GO    ?= go
TAGS  := duckdb_arrow
BIN   := bin/fhirlake
PKGS  := ./...
export CGO_ENABLED := 1

# golangci-lint runs go vet, staticcheck and the linters of .golangci.yml; it is
# built once from the Go module proxy into .cache/tools/ (about 6 minutes with
# an empty Go build cache).
GOLANGCI_VERSION := v2.15.0
GOLANGCI := .cache/tools/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint

.PHONY: help build demo test unit integration stack-up stack-down fuzz bench bench-parquet vet lint fmt clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/fhirlake
	$(GO) build -tags $(TAGS) -o $(BIN) ./cmd/fhirlake

demo: build ## the whole pipeline on embedded defaults, no services needed
	./$(BIN) demo

# Installs Kafka, versitygw and the dbt virtualenv into .cache/ when missing,
# starts them on loopback, runs the unit tests (with -race) and the
# integration tests against the real services, and stops the stack, also
# when a test fails.
test: ## install what is missing, start the local stack, lint, run every test, stop the stack
	deploy/local/test

unit: ## unit tests with -race (no services needed)
	$(GO) test -race -tags $(TAGS) -count=1 $(PKGS)

# Needs a running stack: eval "$$(deploy/local/stack env)" first.
integration: ## integration tests against a running local stack
	$(GO) test -tags $(TAGS),integration -count=1 -timeout 30m -v ./cmd/fhirlake/ ./query/ -run Integration

vet: ## go vet, both build tag sets
	$(GO) vet -tags $(TAGS) $(PKGS)
	$(GO) vet -tags $(TAGS),integration ./cmd/fhirlake/

$(GOLANGCI):
	GOBIN="$(abspath $(dir $(GOLANGCI)))" $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

lint: $(GOLANGCI) ## go vet, staticcheck and the linters of .golangci.yml, on every module
	$(GOLANGCI) run --allow-parallel-runners ./...
	cd bench && ../$(GOLANGCI) run --allow-parallel-runners --config ../.golangci.yml ./...
	cd deploy/tools && ../../$(GOLANGCI) run --allow-parallel-runners --config ../../.golangci.yml ./...

fmt: $(GOLANGCI) ## gofmt and goimports (local prefix fhirlake), in place
	$(GOLANGCI) fmt ./...
	cd bench && ../$(GOLANGCI) fmt --config ../.golangci.yml ./...
	cd deploy/tools && ../../$(GOLANGCI) fmt --config ../../.golangci.yml ./...

stack-up: ## start the local stack (Kafka, versitygw), installing what is missing
	deploy/local/stack up

stack-down: ## stop the local stack
	deploy/local/stack down

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./notification/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./notification/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./notification/
	$(GO) test -run XXX -fuzz '^FuzzParseFHIRPath$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzEvaluate$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzParseJSON$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -run XXX -fuzz '^FuzzBundleEntries$$' -fuzztime $(FUZZTIME) ./flatten/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./bulk/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./bulkexport/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzReadOutcomes$$' -fuzztime $(FUZZTIME) ./bulkexport/
	$(GO) test -tags $(TAGS) -run XXX -fuzz '^FuzzDecodeIcebergPointer$$' -fuzztime $(FUZZTIME) ./lake/

# Opt-in, never part of `make test`: PySpark (PyPI) with Iceberg's Spark runtime (Maven
# Central) reads each tenant's Iceberg tables through the stack's REST catalog and the SQL
# catalog on PostgreSQL and must agree with `fhirlake query` (TestInteropSpark). Starts
# the local stack when it is down, and stops it again. See docs/operations.md.
.PHONY: interop
interop: ## opt-in: Apache Spark reads the tenants' Iceberg tables, compared with fhirlake query
	deploy/local/iceberg/interop

bench-parquet: ## Arrow batches to Parquet through DuckDB
	$(GO) test -tags $(TAGS) -run XXX -bench Parquet -benchtime 10x ./sink/

bench: bench-parquet ## the benchmarks that need no services

clean: ## remove bin/ and the work directory .fhirlake/
	rm -rf bin .fhirlake

# The flatten engine on the Synthea medium sample (100 patients, 36,593
# resources) against encoding/json and github.com/gofhir/fhirpath, plus every
# default view with Parquet output. It lives in the bench/ module so that the
# reference engines never enter go.mod. Data: FHIRLAKE_BENCH_DATA=DIR or
# BENCH_FLAGS="-data DIR"; BENCHTIME is the minimum time per figure.
BENCHTIME   ?= 2s
BENCH_FLAGS ?=
.PHONY: bench-flatten
bench-flatten: ## the flatten engine against encoding/json and gofhir/fhirpath
	cd bench && $(GO) run -tags $(TAGS) ./cmd/flattenbench -time $(BENCHTIME) $(BENCH_FLAGS)

# `fhirlake compact` on one tenant of BENCH_COMPACT_PATIENTS patients (≈ 18 resources
# each): a full rebuild, then an incremental run after 1 % of the resources changed
# (new versions and a few deletes, loaded by `fhirlake backfill`). It reports both times,
# their ratio against the target (incremental ≤ 15 % of full) and each run's peak RSS
# (compactor, dbt and DuckDB) against compact.memory_limit (BENCH_COMPACT_MEMORY_LIMIT).
# The default, 280000 patients, is the target's size: ≥ 5 M resources, whose lake takes
# about ten minutes to make the first time; BENCH_COMPACT_PATIENTS=56000 measures a
# million, 3000 checks the harness in a minute. Each lake is made once (`fhirlake
# generate` into `fhirlake backfill`) and kept in .cache/bench-compact/p<patients>/;
# only the dbt virtualenv is needed (deploy/local/stack install).
BENCH_COMPACT_PATIENTS     ?= 280000
BENCH_COMPACT_MEMORY_LIMIT ?= 4GiB
# A binary built elsewhere to measure instead of this tree's (an absolute path), to
# compare two builds on the same lake; empty: the tree's.
BENCH_COMPACT_BINARY       ?=
.PHONY: bench-compact
bench-compact: ## a full and an incremental (1 % changed) compaction of 5 M resources
	FHIRLAKE_BENCH_COMPACT_PATIENTS=$(BENCH_COMPACT_PATIENTS) FHIRLAKE_BENCH_COMPACT_MEMORY_LIMIT=$(BENCH_COMPACT_MEMORY_LIMIT) \
		FHIRLAKE_TEST_BINARY=$(BENCH_COMPACT_BINARY) $(GO) test -tags $(TAGS),integration -count=1 -timeout 180m -v \
		-run '^TestIntegrationCompactBenchmark$$' ./cmd/fhirlake/

# p50/p95 latency of five dashboard queries over one tenant of 1M+ observations
# (84,000 synthetic patients): a batch snapshot built by the compactor (needs the
# dbt virtualenv: deploy/local/stack install) plus a fresh speed-layer tail, read
# from a local directory and, when the local stack's environment is set
# (eval "$$(deploy/local/stack env)"), from S3 directly through httpfs: cold (the
# first query of a new session) and warm. The lake is built once into .cache/bench-query/.
# Then `fhirlake serve` over that lake (acme) and a small one (globex), a worker per
# tenant: the first answer of a new worker, and globex's p50/p99 alone and while acme
# runs four expensive queries.
.PHONY: bench-query
bench-query: ## five dashboard queries over 1M+ observations
	FHIRLAKE_BENCH_QUERY=1 $(GO) test -tags $(TAGS) -count=1 -timeout 60m -run '^TestDashboardBenchmark$$' -v ./query/
	FHIRLAKE_BENCH_QUERY=1 $(GO) test -tags $(TAGS) -count=1 -timeout 30m -run '^TestServeBenchmark$$' -v ./cmd/fhirlake/

# `fhirlake backfill --from-server` against the local HAPI FHIR server (the stack
# must run with it: deploy/local/stack up hapi, and its environment evaluated):
# BENCH_EXPORT_PATIENTS generated patients (12 resources each, loaded into HAPI
# once per start of it), exported at system level into a tenant's S3 lake, three
# rounds. See docs/benchmarks.md.
BENCH_EXPORT_PATIENTS ?= 500
.PHONY: bench-export
bench-export: ## Bulk Data export from HAPI FHIR into a tenant's lake
	FHIRLAKE_BENCH_EXPORT_PATIENTS=$(BENCH_EXPORT_PATIENTS) $(GO) test -tags $(TAGS),integration -count=1 -timeout 60m -v \
		-run '^TestIntegrationExportBenchmark$$' ./cmd/fhirlake/

# `fhirlake receive` on the local stack (eval "$$(deploy/local/stack env)" first):
# calls per second and latency from an HTTP call to Kafka's acknowledgement, classic
# PUTs and R4 Backport Bundles, by 1 and 16 clients on loopback; with the stack's HAPI
# server (deploy/local/stack up hapi), the end-to-end latency from a HAPI write to its
# row in the tenant's bucket. BENCH_RECEIVE_CALLS calls per round.
BENCH_RECEIVE_CALLS ?= 20000
.PHONY: bench-receive
bench-receive: ## fhirlake receive: calls/s and p99 to Kafka's ack; HAPI write → lake latency
	FHIRLAKE_BENCH_RECEIVE=$(BENCH_RECEIVE_CALLS) $(GO) test -tags $(TAGS),integration -count=1 -timeout 30m -v \
		-run '^TestIntegrationReceiveBenchmark$$' ./cmd/fhirlake/

# The five dashboard queries through Flight SQL (the ADBC driver, from the local stack's
# virtualenv: deploy/local/stack install; eval "$$(deploy/local/stack env)") beside the
# HTTP API, and 1 M rows of observation streamed both ways, from `fhirlake serve` over
# the query benchmark's lake (make bench-query) or else a speed layer of 84,000 synthetic
# patients built once into .cache/bench-flight/.
.PHONY: bench-flight
bench-flight: ## dashboard queries and 1M rows through Flight SQL (ADBC) beside the HTTP API
	FHIRLAKE_BENCH_FLIGHT=1 $(GO) test -tags $(TAGS) -count=1 -timeout 60m -run '^TestFlightBenchmark$$' -v ./cmd/fhirlake/

# End-to-end ingestion on the local stack (started when down, and stopped
# again afterwards): `fhirlake consume` over 300k pre-produced notifications
# (throughput, files written, peak RSS), the same consumer and sink with no
# views, the same records through a Benthos v4.27.0 pipeline, and freshness
# at 20k resources/s for 60 s. Everything runs in its own topics, groups and
# bucket prefix, removed at the end. The harness lives in bench/ so that
# Benthos never enters go.mod. INGEST_FLAGS="-records 1000000 -runs
# fhirlake,benthos" and the like; -h lists them.
INGEST_FLAGS ?=
.PHONY: bench-ingest
bench-ingest: build ## fhirlake consume against Benthos on the local stack, two and three replicas in one group, and freshness
	cd bench && $(GO) build -tags $(TAGS) -ldflags=-checklinkname=0 -o ../bin/ingestbench ./cmd/ingestbench
	bin/ingestbench -fhirlake $(BIN) -stack deploy/local/stack $(INGEST_FLAGS)

# Deployment: the image, the Helm chart, the dashboard and the alert rules
# (docs/operations.md). `make check-deploy` runs deploy/check: helm lint and
# helm template with every values file in deploy/helm/fhirlake/ci/ and the
# rendered configuration through `fhirlake config validate`, promtool check
# rules and test rules, the Grafana dashboard, BuildKit's Dockerfile linter,
# and the image's build steps outside a container. helm and promtool are
# built once from the Go module proxy into .cache/tools/.
# `make release-build` builds bin/fhirlake as the image does (-trimpath,
# version, commit and date for `fhirlake version`).
IMAGE ?= fhirlake:dev
.PHONY: check-deploy release-build image image-archive test-image
check-deploy: ## chart, alert rules, dashboard, Dockerfile and release build checks
	deploy/check

release-build: ## bin/fhirlake as the image builds it
	OUT=$(BIN) deploy/image/build-fhirlake

# The image is built with Docker when its daemon answers, else with podman (installed from
# Debian when missing, with base images made locally): see deploy/image/.
image: ## the container image, built and run (version, demo, config validate)
	FHIRLAKE_IMAGE=$(IMAGE) deploy/image/build

IMAGE_ARCHIVE ?= bin/fhirlake-image.tar
image-archive: ## the image as one OCI archive for kind load, ctr import, skopeo copy
	FHIRLAKE_IMAGE=$(IMAGE) deploy/image/build --no-run
	FHIRLAKE_IMAGE=$(IMAGE) deploy/image/archive $(IMAGE_ARCHIVE)

test-image: ## build the image, run it, the chart's commands in it, archive, registry push and pull
	FHIRLAKE_IMAGE=$(IMAGE) deploy/image/test
