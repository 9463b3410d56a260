package rows

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/notification"
	"fhirlake/sink"
	"fhirlake/synth"
)

// flushBuffer decodes n synthetic notifications of three tenants into a
// buffer with every default view, as one partition's flush would hold them.
func flushBuffer(tb testing.TB, n int) *Buffer {
	tb.Helper()
	opts := synth.DefaultOptions()
	opts.Patients = n/18/3 + 1
	opts.Tenants = []string{"acme", "globex", "initech"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	gen, err := synth.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	views, err := flatten.DefaultViews()
	if err != nil {
		tb.Fatal(err)
	}
	buf := NewBuffer(memory.NewGoAllocator(), views, nil)
	now := time.Now()
	for i := 0; i < n; i++ {
		r, ok := gen.Next()
		if !ok {
			break
		}
		var tenant string
		for _, h := range r.Headers {
			if h.Key == "fhir-tenant" {
				tenant = string(h.Value)
			}
		}
		note, err := notification.DecodeRecord(r.Value, nil)
		if err != nil || tenant == "" {
			continue
		}
		for j := range note.Events {
			buf.Add(tenant, &note.Events[j], Coordinates{Topic: "t", Partition: 0, Offset: int64(i)}, now)
		}
	}
	return buf
}

// BenchmarkFlushEncode encodes one partition's flush (20,000 notifications,
// three tenants, the raw dataset and every default view) to Parquet files
// at several zstd levels, one file after another.
func BenchmarkFlushEncode(b *testing.B) {
	for _, c := range []struct{ level, threads int }{{1, 1}, {3, 1}, {1, 0}, {3, 0}} {
		b.Run(fmt.Sprintf("zstd=%d/threads=%d", c.level, c.threads), func(b *testing.B) {
			pq, err := sink.NewParquet(sink.ParquetOptions{CompressionLevel: c.level, Threads: c.threads})
			if err != nil {
				b.Fatal(err)
			}
			defer pq.Close()
			dir := b.TempDir()
			buf := flushBuffer(b, 20_000)
			defer buf.Release()
			fs, err := buf.Files(func(view string) string { return view })
			if err != nil {
				b.Fatal(err)
			}
			var rows, bytes int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for k, f := range fs {
					path := filepath.Join(dir, fmt.Sprintf("%d.parquet", k))
					if err := pq.WriteBatches(context.Background(), f.Records, path, 0); err != nil {
						b.Fatal(err)
					}
					if i == 0 {
						st, err := os.Stat(path)
						if err != nil {
							b.Fatal(err)
						}
						rows += f.Rows()
						bytes += st.Size()
					}
				}
			}
			b.StopTimer()
			for _, f := range fs {
				f.Release()
			}
			files := len(fs)
			b.ReportMetric(float64(rows*int64(b.N))/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(bytes), "file-bytes")
			b.ReportMetric(float64(files), "files")
		})
	}
}
