package lake

import (
	"strings"
	"testing"
	"time"
)

func TestExportsRoundTripAndValidate(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	src := func(req string) ExportSource {
		return ExportSource{Request: req, TransactionTime: at, NextSince: at, Loaded: at.Add(time.Minute), Files: 3, Resources: 40}
	}
	e := &Exports{Version: ExportsVersion, Tenant: "acme"}
	e.Record(src("https://fhir.example.org/$export"))
	e.Record(src("https://fhir.example.org/Group/g1/$export"))
	later := src("https://fhir.example.org/$export")
	later.TransactionTime, later.NextSince = at.Add(time.Hour), at.Add(time.Hour)
	e.Record(later)
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeExports(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sources) != 2 {
		t.Fatalf("sources: got %d, want 2 (a second record of a request replaces the first)", len(got.Sources))
	}
	if s, ok := got.Last("https://fhir.example.org/$export"); !ok || !s.TransactionTime.Equal(at.Add(time.Hour)) {
		t.Fatalf("last system export: got %+v %v, want transaction time %s", s, ok, at.Add(time.Hour))
	}
	if _, ok := got.Last("https://other.example.org/$export"); ok {
		t.Fatal("a request never recorded was found")
	}

	tests := []struct {
		name   string
		change func(e *Exports)
		err    string
	}{
		{"a newer version", func(e *Exports) { e.Version = ExportsVersion + 1 }, "version 2"},
		{"no request", func(e *Exports) { e.Sources[0].Request = "" }, "no request"},
		{"a request twice", func(e *Exports) { e.Sources[1].Request = e.Sources[0].Request }, "recorded twice"},
		{"no transaction time", func(e *Exports) { e.Sources[0].TransactionTime = time.Time{} }, "transaction_time"},
		{"no next since", func(e *Exports) { e.Sources[0].NextSince = time.Time{} }, "next_since"},
		{"next since after the transaction time", func(e *Exports) { e.Sources[0].NextSince = e.Sources[0].TransactionTime.Add(time.Second) }, "next_since after"},
		{"a negative count", func(e *Exports) { e.Sources[0].Files = -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := DecodeExports(b)
			tc.change(e)
			if _, err := e.Encode(); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error containing %q", err, tc.err)
			}
		})
	}
	if _, err := DecodeExports([]byte("{not json")); err == nil || !strings.Contains(err.Error(), ExportsKey) {
		t.Fatalf("bad JSON: got %v, want an error naming %s", err, ExportsKey)
	}
}
