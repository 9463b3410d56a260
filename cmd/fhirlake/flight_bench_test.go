package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/query/querytest"
)

// flightDashboards are the five dashboard panels of the query benchmark
// (query/dashboard_bench_test.go), asked through Flight SQL.
var flightDashboards = []string{
	`SELECT code, code_display, count(*) AS n FROM observation GROUP BY ALL ORDER BY n DESC LIMIT 10`,
	`SELECT patient_id, arg_max(value_quantity, effective) AS bpm FROM observation WHERE code = '8867-4' GROUP BY 1 ORDER BY 1 LIMIT 100`,
	`SELECT date_trunc('month', effective) AS month, count(*) AS n FROM observation GROUP BY 1 ORDER BY 1`,
	`SELECT gender, (date_diff('year', birth_date, TIMESTAMP '2025-01-06') // 10) * 10 AS age, count(*) AS n FROM patient GROUP BY ALL ORDER BY ALL`,
	`SELECT p.gender, count(*) AS n, avg(o.value_quantity) AS mean FROM observation o JOIN patient p ON p._resource_id = o.patient_id WHERE o.code = '2339-0' AND o.value_quantity > 100 GROUP BY 1 ORDER BY 1`,
}

// flightAddr is a free address for a Flight SQL endpoint in a test: in
// FHIRLAKE_FLIGHT_TEST_PORTS (first-last, default 27300-27399) so that
// worktrees that test side by side keep to their own ports.
func flightAddr(t *testing.T) string {
	t.Helper()
	lo, hi := 27300, 27399
	if v := envOrDefault("FHIRLAKE_FLIGHT_TEST_PORTS", ""); v != "" {
		if _, err := fmt.Sscanf(v, "%d-%d", &lo, &hi); err != nil {
			t.Fatalf("FHIRLAKE_FLIGHT_TEST_PORTS=%q: want first-last", v)
		}
	}
	for p := lo; p <= hi; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			addr := ln.Addr().String()
			ln.Close()
			return addr
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return ""
}

// TestFlightBenchmark measures `fhirlake serve` through Flight SQL (the
// ADBC driver) beside its HTTP API (Arrow IPC): the p50/p95 latency of the
// five dashboard queries, and the time to stream 1 M rows of observation.
// The lake is the query benchmark's (make bench-query builds it), or, when
// there is none, a speed layer of FHIRLAKE_BENCH_PATIENTS synthetic
// patients built once into .cache/bench-flight/. `make bench-flight` runs
// it; it needs the ADBC driver (FHIRLAKE_FLIGHT_PYTHON, from the local
// stack's environment) and is skipped otherwise.
func TestFlightBenchmark(t *testing.T) {
	if os.Getenv("FHIRLAKE_BENCH_FLIGHT") == "" {
		t.Skip("set FHIRLAKE_BENCH_FLIGHT=1 (make bench-flight) to run the Flight SQL benchmark")
	}
	python := os.Getenv("FHIRLAKE_FLIGHT_PYTHON")
	if python == "" {
		t.Skip(`no ADBC driver: deploy/local/stack install, then eval "$(deploy/local/stack env)"`)
	}
	patients := envOrDefault("FHIRLAKE_BENCH_PATIENTS", "84000")
	root, err := filepath.Abs(filepath.Join(envOrDefault("FHIRLAKE_BENCH_QUERY_DIR", filepath.Join("..", "..", ".cache", "bench-query")), "lake-p"+patients, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	lakeKind := "the query benchmark's lake (snapshot + speed tail)"
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), ".ready")); err != nil {
		dir, _ := filepath.Abs(filepath.Join("..", "..", ".cache", "bench-flight", "lake-p"+patients))
		root, lakeKind = filepath.Join(dir, "acme"), "a speed layer only"
		if _, err := os.Stat(filepath.Join(dir, ".ready")); err != nil {
			n, _ := strconv.Atoi(patients)
			start := time.Now()
			_ = os.RemoveAll(dir)
			events, err := querytest.SynthLake(context.Background(), root, "acme", querytest.SynthOptions{Patients: n, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ".ready"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("built a speed layer of %d events (%s patients) in %s", events, patients, time.Since(start).Round(time.Second))
		}
	}
	work := t.TempDir()
	addr, faddr, key := freeAddr(t), flightAddr(t), "acme-bench-key"
	// Kafka is not read: no completeness, and no other stack's broker asked.
	cfg := fmt.Sprintf(`work_dir: %s
kafka: {brokers: ["127.0.0.1:1"]}
tenants:
  - {name: acme, store: {type: local, path: %s}}
serve:
  listen: %s
  flight: {listen: %s}
  query_timeout: 300s
  max_result_bytes: 8GiB
  worker_memory_limit: 6GiB
  memory_limit: 4GB
  api_keys:
    - {tenant: acme, name: bench, key_sha256: %s}
`, filepath.Join(work, "work"), root, addr, faddr, config.HashAPIKey(key))
	cfgPath := filepath.Join(work, "fhirlake.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(os.Args[0], "serve", "--config", cfgPath, "--log-level", "warn")
	srv.Env = append(os.Environ(), "FHIRLAKE_TEST_COMMAND=1")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	waitHealthy(t, "http://"+addr)
	queries, _ := json.Marshal(flightDashboards)
	cmd := exec.Command(python, filepath.Join("testdata", "flight", "bench.py"), "grpc://"+faddr, "http://"+addr, key, "acme",
		envOrDefault("FHIRLAKE_BENCH_ROUNDS", "30"), string(queries), "SELECT * FROM observation LIMIT 1000000")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench.py: %v", err)
	}
	t.Logf("lake: %s, %s patients\n%s", lakeKind, patients, out)
}
