package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the demo on a small stream in a temporary directory and then
// queries the lake it left, as a user would.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)

	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"demo", "--quiet", "--patients", "10", "--log-level", "error"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"tenant acme", "tenant globex", "reconciliation:", "sample query"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("demo reports a mismatch:\n%s", out.String())
	}

	// fhirlake query confines its own process: it runs in a child.
	got, err := runCommand("query", "--tenant", "acme", "--format", "csv", "SELECT count(*) AS n FROM patient")
	if err != nil {
		t.Fatalf("query after demo: %v", err)
	}
	if got := strings.TrimSpace(got); got != "n\n10" {
		t.Errorf("query output: got %q, want %q", got, "n\n10")
	}
	if _, err := runCommand("query", "--tenant", "acme", "SELECT * FROM no_such_view"); err == nil {
		t.Error("a failing query returned no error")
	}
	if _, err := runCommand("query", "--tenant", "initech", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("unknown tenant: got %v, want a not-configured error", err)
	}

	// The trail fhirlake.yaml names: each tenant's compaction (when dbt
	// ran), then the two queries of a known tenant.
	var kinds []string
	for _, r := range readTrail(t, filepath.Join("demo-lake", "audit.log")) {
		kinds = append(kinds, r.Kind+":"+r.Tenant+":"+r.Status)
	}
	want := []string{"query:acme:ok", "query:acme:statement_refused"}
	if !strings.Contains(out.String(), "batch layer skipped") {
		want = append([]string{"compaction:acme:published", "compaction:globex:published"}, want...)
	}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("audit trail: got %v, want %v", kinds, want)
	}
}

// runCommand runs fhirlake with args in a child process (the test binary,
// see runWorkerIfAsked) and returns its stdout; its error includes its
// stderr.
func runCommand(args ...string) (string, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FHIRLAKE_TEST_COMMAND=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), nil
}
