package bulk

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRead checks the format detection and line splitting on any input:
// reading never panics nor stops early; gzip changes nothing; every line
// reported exists; what a single line yields, the same line twice yields
// twice, as NDJSON; and a compact JSON object is always taken as a whole
// line of NDJSON.
func FuzzRead(f *testing.F) {
	for _, seed := range []string{
		patientA + "\n" + patientB + "\n",
		"\r\n" + patientA + "\r\n\r\n  " + patientB,
		"{\n  \"resourceType\": \"Patient\",\n  \"id\": \"p\"\n}\n",
		transaction,
		notificationBundle,
		record(notificationBundle) + "\n",
		`{"payload":{"operationType":"DELETE","payloadId":"Patient/b/_history/3"}}`,
		"\xef\xbb\xbf" + patientA,
		patientA + "\nthis is not JSON\n{\"a\":\"}\\\"{\"}\n",
		`{"resourceType":"Bundle","entry":[null,{"request":{"method":"DELETE","url":"Patient/x"}},{"resource":{"resourceType":"Bundle","entry":[]}}]}`,
		"",
		"{}",
	} {
		f.Add([]byte(seed))
	}
	// A worker runs one input at a time: the reader and the compressor,
	// whose buffers are most of an input's cost, serve them all.
	r := &Reader{MaxBytes: 1 << 16}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		got := readChecked(t, r, data)
		zipped.Reset()
		zw.Reset(&zipped)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if gz := readChecked(t, r, zipped.Bytes()); !slices.Equal(gz, got) {
			t.Fatalf("gzipped: got\n%q\nwant the same as plain\n%q", gz, got)
		}

		magic := bytes.HasPrefix(data, []byte{0x1f, 0x8b}) || bytes.HasPrefix(data, []byte("\xef\xbb\xbf"))
		line := bytes.TrimSpace(data)
		if magic || len(line) == 0 || bytes.ContainsAny(data, "\r\n") {
			return
		}
		if json.Valid(line) && line[0] == '{' && !wholeObject(line) {
			t.Fatalf("the compact object %q is not taken as a whole line", line)
		}
		if !wholeObject(line) {
			return
		}
		twice := readChecked(t, r, append(append(slices.Clip(data), '\n'), data...))
		want := append(relocate(got, 1), relocate(got, 2)...)
		if !slices.Equal(twice, want) {
			t.Fatalf("a line twice: got\n%q\nwant\n%q", twice, want)
		}
	})
}

// readChecked reads data and describes what it yields; the location of a
// line is written "@N:" so that relocate can move a document to a line.
func readChecked(t *testing.T, r *Reader, data []byte) []string {
	t.Helper()
	lines := bytes.Count(data, []byte("\n")) + 1
	if len(data) > 1 && data[0] == 0x1f && data[1] == 0x8b {
		lines = -1 // the lines are those of the decompressed content
	}
	var got []string
	where := func(at Location) string {
		if lines > 0 && at.Line > lines {
			t.Fatalf("line %d reported in %d lines", at.Line, lines)
		}
		return fmt.Sprintf("@%d:%v", at.Line, at.Entries)
	}
	r.Bad = func(at Location, err error) {
		got = append(got, where(at)+" bad")
	}
	err := r.ReadStream(context.Background(), "f", bytes.NewReader(data), func(it *Item) error {
		if it.Kind != KindEvent {
			raw := bytes.TrimSpace(it.Raw)
			if utf8.Valid(raw) && !json.Valid(raw) {
				t.Fatalf("resource %q is not JSON", raw)
			}
			got = append(got, fmt.Sprintf("%s %s %s/%s", where(it.At), it.Kind, it.Resource.ResourceType(), it.Resource.ID()))
			return nil
		}
		got = append(got, fmt.Sprintf("%s event %s %s/%s", where(it.At), it.Event.Operation, it.Event.ResourceType, it.Event.ID))
		return nil
	})
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	return got
}

// relocate moves what a one-line document yielded to the given line.
func relocate(items []string, line int) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = strings.Replace(s, "@0:", fmt.Sprintf("@%d:", line), 1)
	}
	return out
}
