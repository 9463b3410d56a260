package flatten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func collectEntries(data []byte) ([]string, error) {
	var got []string
	err := BundleEntries(data, func(i int, res []byte) error {
		got = append(got, fmt.Sprintf("%d=%s", i, res))
		return nil
	})
	return got, err
}

func TestBundleEntries(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []string
		wantErr string
	}{
		{
			name: "transaction",
			doc: `{"resourceType":"Bundle","type":"transaction","entry":[
				{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"POST"}},
				{"request":{"method":"DELETE","url":"Patient/p2"}},
				{"resource" : { "resourceType" : "Observation", "id":"o1", "valueQuantity":{"value":1.5e3}} }
			]}`,
			want: []string{`0={"resourceType":"Patient","id":"p1"}`, `2={ "resourceType" : "Observation", "id":"o1", "valueQuantity":{"value":1.5e3}}`},
		},
		{
			name: "entry before resourceType, null resource",
			doc:  `{"entry":[{"resource":null},{"resource":{"resourceType":"Patient"}}],"resourceType":"Bundle"}`,
			want: []string{`1={"resourceType":"Patient"}`},
		},
		{
			name: "nested bundle is one resource",
			doc:  `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}}]}`,
			want: []string{`0={"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}`},
		},
		{
			name: "escaped key",
			doc:  `{"resourceType":"Bundle","entr\u0079":[{"re\u0073ource":{"a":"x\"y"}}]}`,
			want: []string{`0={"a":"x\"y"}`},
		},
		{
			name: "entry of the wrong shape is skipped",
			doc:  `{"resourceType":"Bundle","entry":{"resource":{}},"meta":[1,true,null,"s",[{}]]}`,
		},
		{
			name: "no entries",
			doc:  `{"resourceType":"Bundle","type":"history","entry":[]}`,
		},
		{name: "not an object", doc: `[{"resource":{}}]`, wantErr: "not a JSON object"},
		{name: "truncated", doc: `{"resourceType":"Bundle","entry":[{"resource":{"id":"a"}},{"resource":{"id"`, wantErr: "bundle: offset",
			want: []string{`0={"id":"a"}`}},
		{name: "bad literal", doc: `{"entry":[{"resource":{"active":tru}}]}`, wantErr: "invalid literal"},
		{name: "trailing data", doc: `{"entry":[]} x`, wantErr: "unexpected data after the document"},
		{name: "missing comma", doc: `{"a":1 "entry":[]}`, wantErr: "expected ',' or '}'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collectEntries([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got entries\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestBundleEntriesCallbackError(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	err := BundleEntries([]byte(`{"entry":[{"resource":{}},{"resource":{}}]}`), func(int, []byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("got error %v, want the callback's own", err)
	}
	if calls != 1 {
		t.Errorf("got %d calls, want 1", calls)
	}
}

// TestBundleEntriesRealData compares BundleEntries with encoding/json on
// the shared Bundles.
func TestBundleEntriesRealData(t *testing.T) {
	dir := sharedDir(t, "data")
	files, _ := filepath.Glob(filepath.Join(dir, "*", "bundles", "*.json*"))
	notif, _ := filepath.Glob(filepath.Join(dir, "notifications", "examples", "*.json"))
	files = append(files, notif...)
	if testing.Short() || raceEnabled {
		files = files[:min(len(files), 20)]
	}
	for _, f := range files {
		data, err := readMaybeGzip(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var want [][]byte
		for _, e := range b.Entry {
			if len(e.Resource) > 0 && string(e.Resource) != "null" {
				want = append(want, e.Resource)
			}
		}
		var got [][]byte
		if err := BundleEntries(data, func(_ int, res []byte) error {
			got = append(got, res)
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %d resources, want %d", f, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: resource %d differs", f, i)
			}
		}
	}
}

func BenchmarkBundleEntries(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(sharedDir(b, "data/synthea-medium/bundles"), "*.json.gz"))
	var docs [][]byte
	size := 0
	for _, f := range files[:min(len(files), 10)] {
		data, err := readMaybeGzip(f)
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, data)
		size += len(data)
	}
	b.SetBytes(int64(size))
	for b.Loop() {
		for _, d := range docs {
			if err := BundleEntries(d, func(int, []byte) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
}
