package sink

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// wideRecord returns n rows of a view-like schema: cols columns, strings,
// integers and timestamps in turn, as the observation view has about 40.
func wideRecord(cols, n int) arrow.RecordBatch {
	fields := make([]arrow.Field, cols)
	for c := range fields {
		var dt arrow.DataType = arrow.BinaryTypes.String
		switch c % 3 {
		case 1:
			dt = arrow.PrimitiveTypes.Int64
		case 2:
			dt = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
		}
		fields[c] = arrow.Field{Name: fmt.Sprintf("c%d", c), Type: dt, Nullable: true}
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), arrow.NewSchema(fields, nil))
	defer b.Release()
	for i := 0; i < n; i++ {
		for c := range fields {
			switch fb := b.Field(c).(type) {
			case *array.StringBuilder:
				fb.Append(fmt.Sprintf("value-%d-%d", c, i%97))
			case *array.Int64Builder:
				fb.Append(int64(i))
			case *array.TimestampBuilder:
				fb.Append(arrow.Timestamp(1_700_000_000_000_000 + int64(i)))
			}
		}
	}
	return b.NewRecordBatch()
}

// BenchmarkParquetPerFile writes one file per iteration at the sizes a
// flush produces: a tenant's view of a few rows up to a full buffer. The
// time of the smallest files is the fixed cost of a file (connection,
// Arrow view, COPY's planning, the Parquet footer).
func BenchmarkParquetPerFile(b *testing.B) {
	pq, err := NewParquet(ParquetOptions{Threads: 1}) // as sink.Writer sets it
	if err != nil {
		b.Fatal(err)
	}
	defer pq.Close()
	for _, cols := range []int{5, 40} {
		for _, n := range []int{1, 100, 1_000, 10_000} {
			b.Run(fmt.Sprintf("cols=%d/rows=%d", cols, n), func(b *testing.B) {
				rec := wideRecord(cols, n)
				defer rec.Release()
				path := filepath.Join(b.TempDir(), "out.parquet")
				b.ResetTimer()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					if err := pq.Write(context.Background(), rec, path, 0); err != nil {
						b.Fatal(err)
					}
				}
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/file")
				}
			})
		}
	}
}
