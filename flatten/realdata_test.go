package flatten

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// sampleResources calls fn with every FHIR resource under dir: NDJSON
// lines, single-resource JSON files, and the entries of Bundles (plain or
// gzipped), recursively. With every > 1 only every n-th file is read.
func sampleResources(t testing.TB, dir string, every int, fn func(file string, raw []byte)) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if !strings.HasSuffix(name, ".json") && !strings.HasSuffix(name, ".json.gz") && !strings.HasSuffix(name, ".ndjson") {
			return nil
		}
		n++
		if every > 1 && n%every != 0 {
			return nil
		}
		data, err := readMaybeGzip(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(name, ".ndjson") {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 64<<20)
			for sc.Scan() {
				if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
					fn(path, bytes.Clone(line))
				}
			}
			return sc.Err()
		}
		splitResource(path, data, fn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// splitResource calls fn with data and, for a Bundle, each entry's resource.
func splitResource(file string, data []byte, fn func(string, []byte)) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(data, &b) != nil || b.ResourceType == "" {
		return
	}
	if b.ResourceType != "Bundle" {
		fn(file, data)
		return
	}
	for _, e := range b.Entry {
		if len(e.Resource) > 0 {
			splitResource(file, e.Resource, fn)
		}
	}
}

func readMaybeGzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		r = gz
	}
	return io.ReadAll(r)
}

// TestRealData flattens every resource of the shared sample data through
// every default view: no resource may fail.
func TestRealData(t *testing.T) {
	dir := sharedDir(t, "data")
	views, err := DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	batches := map[string][]*Batch{}
	for _, v := range views {
		b := v.NewBatch(memory.NewGoAllocator())
		defer b.Release()
		batches[v.Resource()] = append(batches[v.Resource()], b)
	}
	every := 1
	if raceEnabled || testing.Short() {
		every = 7 // the race detector slows evaluation tenfold
	}
	rows := map[string]int{}
	resources, errs := 0, 0
	var r Resource
	sampleResources(t, dir, every, func(file string, raw []byte) {
		if err := r.Parse(raw); err != nil {
			errs++
			t.Errorf("%s: %v", file, err)
			return
		}
		resources++
		for _, b := range batches[r.ResourceType()] {
			n, err := b.Append(&r)
			if err != nil {
				errs++
				if errs < 20 {
					t.Errorf("%s: %v", file, err)
				}
				continue
			}
			rows[b.View().Name()] += n
			if b.Rows() > 4096 {
				b.NewRecordBatch().Release()
			}
		}
	})
	names := make([]string, 0, len(rows))
	for name := range rows {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Logf("%-24s %7d rows", name, rows[name])
	}
	t.Logf("%d resources, %d errors", resources, errs)
	if errs != 0 {
		t.Errorf("got %d errors, want 0", errs)
	}
	for _, v := range views {
		if rows[v.Name()] == 0 && every == 1 {
			t.Errorf("view %s: got 0 rows, want some", v.Name())
		}
	}
}
