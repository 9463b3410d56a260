package synth

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkGenerate measures the generator as a load source: one op is one
// record, and the reported rates are per core.
func BenchmarkGenerate(b *testing.B) {
	for _, k := range []int{1, 10} {
		b.Run("events_per_notification="+strconv.Itoa(k), func(b *testing.B) {
			o := Options{
				Tenants:                  []string{"acme", "globex"},
				Patients:                 2000,
				Seed:                     1,
				UpdateRatio:              0.2,
				DeleteRatio:              0.05,
				Formats:                  []Format{FormatR4Backport, FormatR5, FormatR4BHistory},
				ResourcesPerNotification: k,
				Controls:                 10,
				Malformed:                10,
				Unroutable:               10,
			}
			g, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			var bytes, records int64
			start := time.Now()
			for b.Loop() {
				r, ok := g.Next()
				if !ok {
					if g, err = New(o); err != nil {
						b.Fatal(err)
					}
					r, _ = g.Next()
				}
				bytes += int64(len(r.Value))
				records++
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(float64(records)/sec, "records/s")
			b.ReportMetric(float64(bytes)/sec/1e6, "MB/s")
			b.ReportMetric(float64(bytes)/float64(records), "B/record")
		})
	}
}
