package rows

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/notification"
	"fhirlake/synth"
)

// syntheticResources returns the resources of n synthetic notifications
// (the ingest benchmark's stream), parsed.
func syntheticResources(tb testing.TB, n int) []*flatten.Resource {
	tb.Helper()
	opts := synth.DefaultOptions()
	opts.Patients = n/18 + 1
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	gen, err := synth.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*flatten.Resource
	for i := 0; i < n; i++ {
		r, ok := gen.Next()
		if !ok {
			break
		}
		note, err := notification.DecodeRecord(r.Value, nil)
		if err != nil {
			continue
		}
		for _, ev := range note.Events {
			if ev.Operation != notification.OpUpsert || ev.Resource == nil {
				continue
			}
			res, err := flatten.Parse(ev.Resource)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, res)
		}
	}
	return out
}

// BenchmarkViews appends the resources of the synthetic stream to every
// default view of their type: "plan" through the views' plans, as the
// consumer does, "alone" through a batch of each view on its own. It
// reports CPU time per resource; the batches are emptied every 20,000.
func BenchmarkViews(b *testing.B) {
	const perBatch = 20_000
	res := syntheticResources(b, perBatch)
	views, err := flatten.DefaultViews()
	if err != nil {
		b.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	byType := map[string][]*flatten.Batch{}
	for _, mode := range []string{"plan", "alone"} {
		clear(byType)
		if mode == "plan" {
			for _, p := range flatten.Plans(views) {
				byType[p.Resource()] = p.NewBatches(mem)
			}
		} else {
			for _, v := range views {
				byType[v.Resource()] = append(byType[v.Resource()], v.NewBatch(mem))
			}
		}
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				r := res[i%len(res)]
				for _, bt := range byType[r.ResourceType()] {
					if _, err := bt.Append(r); err != nil {
						b.Fatal(err)
					}
				}
				if i%perBatch == perBatch-1 {
					for _, bts := range byType {
						for _, bt := range bts {
							bt.Reset()
						}
					}
				}
			}
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/resource")
			}
		})
	}
}
