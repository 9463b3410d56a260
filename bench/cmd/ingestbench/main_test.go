package main

import (
	"strings"
	"testing"
	"time"

	"fhirlake/sink"
)

func TestPercentileAndStats(t *testing.T) {
	v := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := percentile(v, 0.5); got != 5 {
		t.Errorf("p50 = %d, want 5", got)
	}
	if got := percentile(v, 0.9); got != 9 {
		t.Errorf("p90 = %d, want 9", got)
	}
	if got := percentile(v, 0.99); got != 10 {
		t.Errorf("p99 = %d, want 10", got)
	}
	s := statsOf([]sink.Object{{Key: "speed/resources/a", Size: 10}, {Key: "speed/patient/b", Size: 30}, {Key: "speed/resources/c", Size: 20}})
	if s.Files != 3 || s.Bytes != 60 || s.P50 != 20 || s.Max != 30 || s.Datasets != 2 {
		t.Errorf("stats = %+v", s)
	}
}

func TestParseEnv(t *testing.T) {
	env := parseEnv([]byte("export A=1\nexport B=\"two words\"   \nexport C=x # comment\n# export D=4\nnot an export\n"))
	if env["A"] != "1" || env["B"] != "two words" || env["C"] != "x" || len(env) != 3 {
		t.Errorf("parseEnv = %v", env)
	}
}

// A record's freshness is measured from the first listing of its own
// tenant's file covering its offset; records of other tenants in the same
// range are not matched to it.
func TestFreshnessOf(t *testing.T) {
	recs := newProduced([]string{"acme", "globex"})
	base := time.Unix(1000, 0)
	recs.add(0, 0, base, "acme", 10)
	recs.add(0, 1, base.Add(time.Second), "globex", 10)
	recs.add(0, 2, base.Add(2*time.Second), "acme", 10)
	recs.add(1, 0, base, "acme", 10) // never written
	app := &appearance{first: map[string]time.Time{}, size: map[string]int64{}}
	app.first["acme\x00speed/resources/date=x/t-0-0-2.parquet"] = base.Add(5 * time.Second)
	app.first["globex\x00speed/resources/date=x/t-0-0-2.parquet"] = base.Add(7 * time.Second)
	lat, missing, files := freshnessOf(recs, app, []string{"acme", "globex"})
	if missing != 1 || len(files) != 2 {
		t.Fatalf("missing %d, files %d", missing, len(files))
	}
	var got []string
	for _, l := range lat {
		got = append(got, l.String())
	}
	if strings.Join(got, " ") != "3s 5s 6s" {
		t.Errorf("latencies %v, want [3s 5s 6s]", got)
	}
}

func TestBenthosConfig(t *testing.T) {
	c, err := benthosConfig(benthosOptions{Brokers: []string{"b:1"}, Topic: "t", Group: "g", Bucket: "bk", Prefix: "/runs/x/", Endpoint: "http://e", Region: "r",
		AccessKey: "a", SecretKey: "s", BatchCount: 10, BatchBytes: 20, BatchPeriod: 5 * time.Second, CheckpointLimit: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"count: 10", "byte_size: 20", "period: 5s", "checkpoint_limit: 30", `path: 'runs/x/speed/resources/`, "reject_errored:", "default_compression: zstd", "        root.offset ="} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}

// The scale-out report's fairness: shares of the records each replica
// read, and Jain's index over them.
func TestFairness(t *testing.T) {
	for _, c := range []struct {
		name                string
		records             []float64
		minS, maxS, wantJai float64
	}{
		{"even", []float64{100, 100, 100}, 1.0 / 3, 1.0 / 3, 1},
		{"one reads all", []float64{300, 0, 0}, 0, 1, 1.0 / 3},
		{"two to one", []float64{200, 100}, 1.0 / 3, 2.0 / 3, 0.9},
		{"nothing read", []float64{0, 0}, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			minS, maxS, jain := fairness(c.records)
			if !near(minS, c.minS) || !near(maxS, c.maxS) || !near(jain, c.wantJai) {
				t.Errorf("fairness(%v) = %.3f, %.3f, %.3f; want %.3f, %.3f, %.3f", c.records, minS, maxS, jain, c.minS, c.maxS, c.wantJai)
			}
		})
	}
}

// The records read again: every replica's count beyond the records
// produced.
func TestScaleReread(t *testing.T) {
	s := scaleResult{Records: 1000, Per: []replicaResult{{Records: 600}, {Records: 450}}}
	if got := s.reread(); got != 50 {
		t.Errorf("reread = %.0f, want 50", got)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestTargets: the report judges both ratios against the targets
// (4× with views, 7× with the raw dataset only) and leaves out a run not
// made.
func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		views, raw float64
		want       string
	}{
		{4.1, 7.2, "[target ≥ 4× with views: met; ≥ 7× with no views: met]"},
		{3.5, 6.9, "[target ≥ 4× with views: MISSED; ≥ 7× with no views: MISSED]"},
		{3.99, 7, "[target ≥ 4× with views: MISSED; ≥ 7× with no views: met]"},
		{4, 0, "[target ≥ 4× with views: met]"},
	} {
		if got := targets(tc.views, tc.raw); got != tc.want {
			t.Errorf("targets(%v, %v) = %q, want %q", tc.views, tc.raw, got, tc.want)
		}
	}
}
