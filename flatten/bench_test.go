package flatten

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// benchPatients returns the Patients of the shared Synthea samples.
func benchPatients(b *testing.B) [][]byte {
	b.Helper()
	var out [][]byte
	for _, sub := range []string{"data/synthea-small", "data/synthea-medium/bundles"} {
		sampleResources(b, sharedDir(b, sub), 1, func(_ string, raw []byte) {
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if json.Unmarshal(raw, &head) == nil && head.ResourceType == "Patient" {
				out = append(out, raw)
			}
		})
	}
	if len(out) == 0 {
		b.Skip("no Patient resources in the shared data")
	}
	return out
}

// meter measures a benchmark's throughput in wall-clock time and in CPU
// time: resources per CPU-second is the rate per core, which stays
// meaningful when other work shares the machine.
type meter struct {
	wall time.Time
	cpu  time.Duration
}

func startMeter() meter { return meter{wall: time.Now(), cpu: cpuTime()} }

func reportRate(b *testing.B, m meter, n int) {
	b.ReportMetric(float64(n)/time.Since(m.wall).Seconds(), "resources/s")
	if cpu := cpuTime() - m.cpu; cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "resources/cpu-s")
	}
}

// BenchmarkParsePatient measures the one-pass parser alone.
func BenchmarkParsePatient(b *testing.B) {
	pats := benchPatients(b)
	var r Resource
	b.ReportAllocs()
	b.ResetTimer()
	start := startMeter()
	n := 0
	for i := 0; b.Loop(); i++ {
		if err := r.Parse(pats[i%len(pats)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportRate(b, start, n)
}

// BenchmarkDecodeMapPatient is the baseline: encoding/json into map[string]any.
func BenchmarkDecodeMapPatient(b *testing.B) {
	pats := benchPatients(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := startMeter()
	n := 0
	for i := 0; b.Loop(); i++ {
		var m map[string]any
		if err := json.Unmarshal(pats[i%len(pats)], &m); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportRate(b, start, n)
}

func benchView(b *testing.B, def []byte) {
	pats := benchPatients(b)
	v, err := Compile(def)
	if err != nil {
		b.Fatal(err)
	}
	batch := v.NewBatch(memory.NewGoAllocator())
	defer batch.Release()
	var r Resource
	b.ReportAllocs()
	b.ResetTimer()
	start := startMeter()
	n := 0
	for i := 0; b.Loop(); i++ {
		if err := r.Parse(pats[i%len(pats)]); err != nil {
			b.Fatal(err)
		}
		if _, err := batch.Append(&r); err != nil {
			b.Fatal(err)
		}
		if batch.Rows() >= 8192 {
			batch.NewRecordBatch().Release()
		}
		n++
	}
	reportRate(b, start, n)
}

// BenchmarkPatient14 parses each Patient and appends it to a 14-column view.
func BenchmarkPatient14(b *testing.B) {
	def, err := os.ReadFile("testdata/patient14.json")
	if err != nil {
		b.Fatal(err)
	}
	benchView(b, def)
}

// BenchmarkPatientDefault parses each Patient and appends it to the default
// patient view.
func BenchmarkPatientDefault(b *testing.B) {
	def, err := DefaultViewDefinition("patient")
	if err != nil {
		b.Fatal(err)
	}
	benchView(b, def)
}

// BenchmarkEvalPatient14 measures evaluation and Arrow appends alone, over
// resources parsed beforehand.
func BenchmarkEvalPatient14(b *testing.B) {
	def, err := os.ReadFile("testdata/patient14.json")
	if err != nil {
		b.Fatal(err)
	}
	v, err := Compile(def)
	if err != nil {
		b.Fatal(err)
	}
	var parsed []*Resource
	for _, raw := range benchPatients(b) {
		r, err := Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		parsed = append(parsed, r)
	}
	batch := v.NewBatch(memory.NewGoAllocator())
	defer batch.Release()
	b.ReportAllocs()
	b.ResetTimer()
	start := startMeter()
	n := 0
	for i := 0; b.Loop(); i++ {
		if _, err := batch.Append(parsed[i%len(parsed)]); err != nil {
			b.Fatal(err)
		}
		if batch.Rows() >= 8192 {
			batch.NewRecordBatch().Release()
		}
		n++
	}
	reportRate(b, start, n)
}

// BenchmarkAllViews parses every resource of the small Synthea export
// (NDJSON, all types) once and appends it to every default view of its
// type, as the consumer does.
func BenchmarkAllViews(b *testing.B) {
	var docs [][]byte
	sampleResources(b, sharedDir(b, "data/synthea-small"), 1, func(_ string, raw []byte) {
		docs = append(docs, raw)
	})
	views, err := DefaultViews()
	if err != nil {
		b.Fatal(err)
	}
	batches := map[string][]*Batch{}
	for _, v := range views {
		batch := v.NewBatch(memory.NewGoAllocator())
		defer batch.Release()
		batches[v.Resource()] = append(batches[v.Resource()], batch)
	}
	var r Resource
	b.ReportAllocs()
	b.ResetTimer()
	start := startMeter()
	n, rows := 0, 0
	for i := 0; b.Loop(); i++ {
		if err := r.Parse(docs[i%len(docs)]); err != nil {
			b.Fatal(err)
		}
		for _, batch := range batches[r.ResourceType()] {
			k, err := batch.Append(&r)
			if err != nil {
				b.Fatal(err)
			}
			rows += k
			if batch.Rows() >= 8192 {
				batch.NewRecordBatch().Release()
			}
		}
		n++
	}
	reportRate(b, start, n)
	b.ReportMetric(float64(rows)/float64(n), "rows/resource")
}
