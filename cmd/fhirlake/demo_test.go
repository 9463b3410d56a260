package main

import (
	"bytes"
	"context"
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

	out.Reset()
	root = newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"query", "--tenant", "acme", "--format", "csv", "SELECT count(*) AS n FROM patient"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("query after demo: %v", err)
	}
	if got := strings.TrimSpace(out.String()); got != "n\n10" {
		t.Errorf("query output: got %q, want %q", got, "n\n10")
	}

	root = newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"query", "--tenant", "acme", "SELECT * FROM no_such_view"})
	if err := root.ExecuteContext(context.Background()); err == nil {
		t.Error("a failing query returned no error")
	}
	root = newRoot()
	root.SetArgs([]string{"query", "--tenant", "initech", "SELECT 1"})
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("unknown tenant: got %v, want a not-configured error", err)
	}
}
