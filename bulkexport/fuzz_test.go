package bulkexport

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseManifest: any input is refused or gives a manifest whose
// transactionTime is set, whose files are within MaxFiles, each with an
// absolute http(s) URL and, for resources, a resource type.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		`{"transactionTime":"2026-01-01T00:00:00.000+00:00","request":"http://x/$export","requiresAccessToken":true,"output":[{"type":"Patient","url":"http://x/Binary/1","count":3}],"error":[]}`,
		`{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"Patient","url":"/files/1"}],"deleted":[{"type":"Bundle","url":"files/2"}],"error":[{"type":"OperationOutcome","url":"https://x/e"}]}`,
		`{"transactionTime":"2026-01-01","output":[]}`,
		`{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"patient","url":"http://x/1"}]}`,
		`{"transactionTime":"2026-01-01T00:00:00Z","output":[{"type":"Patient","url":"ftp://x/1","count":-1}]}`,
		`{"output":null}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	base, _ := url.Parse("http://fhir.example.org/status/1")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b, base)
		if err != nil {
			if m != nil {
				t.Fatal("a manifest with an error")
			}
			if !utf8.ValidString(err.Error()) && utf8.Valid(b) {
				t.Fatalf("error %q is not UTF-8", err)
			}
			return
		}
		if m.TransactionTime.IsZero() && !strings.Contains(string(b), "0001-01-01") {
			t.Fatal("accepted without a transactionTime")
		}
		if n := len(m.Output) + len(m.Deleted) + len(m.Error); n > MaxFiles {
			t.Fatalf("%d files accepted", n)
		}
		for _, outs := range [][]Output{m.Output, m.Deleted, m.Error} {
			for _, o := range outs {
				u, err := url.Parse(o.URL)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					t.Fatalf("url %q accepted", o.URL)
				}
				if o.Count != nil && *o.Count < 0 {
					t.Fatalf("count %d accepted", *o.Count)
				}
			}
		}
		for _, outs := range [][]Output{m.Output, m.Deleted} {
			for _, o := range outs {
				if !typeName.MatchString(o.Type) {
					t.Fatalf("type %q accepted", o.Type)
				}
			}
		}
	})
}

// FuzzReadOutcomes: an error file of any content gives at most max
// messages, each bounded, and counts every line with content.
func FuzzReadOutcomes(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"x"}]}` + "\n",
		`{"resourceType":"OperationOutcome","issue":[]}` + "\n\n" + `{"resourceType":"Patient"}` + "\n",
		`{"resourceType":"OperationOutcome","issue":[{"details":{"text":"é"}},{},{},{},{},{},{}]}`,
		"not json\r\n", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msgs, lines, err := ReadOutcomes(strings.NewReader(s), 3)
		if len(msgs) > 3 || len(msgs) > lines {
			t.Fatalf("%d messages of %d lines, at most 3", len(msgs), lines)
		}
		for _, m := range msgs {
			if len(m) > maxMessage+len("…") {
				t.Fatalf("a message of %d bytes", len(m))
			}
		}
		if err == nil {
			want := 0
			for _, l := range strings.Split(s, "\n") {
				if strings.TrimSpace(l) != "" {
					want++
				}
			}
			if lines != want {
				t.Fatalf("lines: got %d, want %d", lines, want)
			}
		}
	})
}
