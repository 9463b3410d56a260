package query

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/query/querytest"
)

func builds(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "fhirlake_query_view_builds_total" {
			sum := 0.0
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func patients(t *testing.T, p *Pool) int {
	t.Helper()
	s, release, err := p.Acquire(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var n int
	if err := s.Run(context.Background(), "SELECT count(*) FROM resources WHERE resource_type = 'Patient'", func(r *sql.Rows) error {
		for r.Next() {
			if err := r.Scan(&n); err != nil {
				return err
			}
		}
		return r.Err()
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKeepFresh: a session in use is rebuilt in the background after its
// lake changes, so the next request finds the new view built; a session
// idle for longer than IdleAfter is left alone.
func TestKeepFresh(t *testing.T) {
	for _, idle := range []bool{false, true} {
		root := filepath.Join(t.TempDir(), "acme")
		querytest.WriteRaw(t, root, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}})
		reg := prometheus.NewRegistry()
		o := PoolOptions{RefreshInterval: 40 * time.Millisecond}
		if idle {
			o.IdleAfter = time.Millisecond
		}
		p := NewPool([]Lake{{Tenant: "acme", Root: root}}, o, reg, nil)
		if n := patients(t, p); n != 1 {
			t.Fatalf("%d patients, want 1", n)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.KeepFresh(ctx) }()
		time.Sleep(5 * time.Millisecond)
		// A resource type the lake did not have: its view must be built.
		querytest.WriteRaw(t, root, "acme", "t-0-1-1", []querytest.Row{{Type: "Observation", ID: "o1", Version: "1", Op: "upsert", Offset: 1}})
		wait := 3 * time.Second
		if idle {
			wait = 400 * time.Millisecond // ten refresh intervals
		}
		deadline := time.Now().Add(wait)
		for builds(t, reg) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := builds(t, reg)
		cancel()
		<-done
		if idle {
			if got != 1 {
				t.Errorf("idle session: %v builds, want 1 (no background refresh)", got)
			}
		} else {
			if got < 2 {
				t.Fatalf("the session was not rebuilt in the background (%v builds)", got)
			}
			s, release, err := p.Acquire(context.Background(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			if c := s.Catalog(); !slices.Contains(c.Types, "Observation") {
				t.Errorf("types after the background rebuild: %v, want Observation among them", c.Types)
			}
			release()
		}
		p.Close()
	}
}

// TestRefreshInProgressDoesNotBlock: while a tenant's session is being
// refreshed, a request is served at once by its current views.
func TestRefreshInProgressDoesNotBlock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "acme")
	querytest.WriteRaw(t, root, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}})
	p := NewPool([]Lake{{Tenant: "acme", Root: root}}, PoolOptions{RefreshInterval: time.Millisecond}, nil, nil)
	defer p.Close()
	if n := patients(t, p); n != 1 {
		t.Fatalf("%d patients, want 1", n)
	}
	p.mu.Lock()
	e := p.entries["acme"]
	p.mu.Unlock()
	e.mu.Lock() // a refresh in progress
	time.Sleep(2 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		s, release, err := p.Acquire(ctx, "acme")
		if err == nil {
			if s != e.cur.Load() {
				t.Error("served another session than the tenant's open one")
			}
			release()
		}
		served <- err
	}()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("the request waited for the refresh in progress")
	}
	e.mu.Unlock()
}
