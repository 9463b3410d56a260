package bulk

import (
	"context"
	"path/filepath"
	"testing"

	"fhirlake/internal/testenv"
)

// BenchmarkRead reads the Synthea medium sample's gzipped transaction
// Bundles, parsing every resource once, as Flatten does before evaluating
// the views.
func BenchmarkRead(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(testenv.Shared(b, "data", "synthea-medium", "bundles"), "*.json.gz"))
	if len(files) == 0 {
		b.Skip("no synthea-medium bundles")
	}
	var r Reader
	n := 0
	for b.Loop() {
		for _, f := range files {
			if err := r.Read(context.Background(), f, func(*Item) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n)/float64(b.N), "resources/op")
}
