package main

import (
	"fmt"
	"net"
	"testing"
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
