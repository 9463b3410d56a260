// Command flattenbench measures the flatten engine on a set of FHIR files
// (by default the 100-patient Synthea sample, as per-patient Bundles) and
// prints a table: per default view, resources and megabytes per second and
// per CPU-second (one core); encoding/json decoding the same resources into
// map[string]any; the Patient views evaluated by github.com/gofhir/fhirpath
// over the same columns, on the resources as stored (pretty-printed in the
// Synthea Bundles) and as compact JSON; and every default view plus writing
// Parquet, against encoding/json alone.
//
// Every measurement runs on one goroutine over resources already in memory,
// so that files and decompression are not part of it. gofhir reads each
// resource once (one evaluation context for all its columns), which is the
// fastest way its API allows; getResourceKey(), which it lacks, reads id.
//
// It lives in a module of its own so that the reference engines never enter
// the product's dependencies. Run it with `make bench-flatten`, or:
//
//	cd bench && go run -tags duckdb_arrow ./cmd/flattenbench [-data DIR] [-time 2s]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/sink"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "flattenbench:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	data       string
	minTime    time.Duration
	batchRows  int
	cpuProfile string
	only       string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("flattenbench", flag.ContinueOnError)
	fs.StringVar(&o.data, "data", defaultData(), "directory of FHIR files (*.json, *.json.gz, *.ndjson); env FHIRLAKE_BENCH_DATA")
	fs.DurationVar(&o.minTime, "time", 2*time.Second, "minimum duration of each measurement")
	fs.IntVar(&o.batchRows, "batch-rows", 100_000, "rows per record batch (and Parquet file)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.StringVar(&o.only, "only", "", "run only this group: views, patient, all")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.data == "" {
		return o, errors.New("no data directory: pass -data DIR or set FHIRLAKE_BENCH_DATA or FHIRLAKE_SHARED")
	}
	return o, nil
}

// defaultData finds the Synthea medium sample: $FHIRLAKE_BENCH_DATA, else
// under $FHIRLAKE_SHARED, else the shared directory beside the repository.
func defaultData() string {
	if d := os.Getenv("FHIRLAKE_BENCH_DATA"); d != "" {
		return d
	}
	sub := filepath.Join("data", "synthea-medium", "bundles")
	if s := os.Getenv("FHIRLAKE_SHARED"); s != "" {
		return filepath.Join(s, sub)
	}
	for _, up := range []string{"..", filepath.Join("..", ".."), filepath.Join("..", "..", "..")} {
		d := filepath.Join(up, "shared", sub)
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return ""
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	c, err := loadCorpus(o.data)
	if err != nil {
		return fmt.Errorf("load %s: %w", o.data, err)
	}
	views, err := flatten.DefaultViews()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "data: %s: %d files, %d resources, %.1f MB as stored in the files\n",
		o.data, c.files, len(c.docs), float64(c.bytes)/1e6)
	fmt.Fprintf(out, "machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s; each figure over >= %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version(), o.minTime)
	fmt.Fprintln(out, "resources/CPU-s and MB/CPU-s are per core (process CPU time, all threads); MB = 10^6 bytes of input")

	b := &bench{o: o, c: c, views: views}
	var s summary
	if o.only == "" || o.only == "views" {
		if s.views, err = b.perView(); err != nil {
			return err
		}
		printTable(out, "Per default view: parse + evaluate + Arrow append, one goroutine", s.views)
	}
	if o.only == "" || o.only == "patient" {
		if s.patient, s.ratios, err = b.patient(out); err != nil {
			return err
		}
		printTable(out, "Patient: flatten vs github.com/gofhir/fhirpath v1.4.0 (same columns, each resource read once)", s.patient)
	}
	if o.only == "" || o.only == "all" {
		if s.all, err = b.all(ctx); err != nil {
			return err
		}
		printTable(out, "All resources", s.all)
	}
	s.print(out)
	return nil
}

type bench struct {
	o     options
	c     *corpus
	views []*flatten.View
}

// viewPass parses each doc and appends it to the batch, emptying the batch
// every batchRows rows as a writer would.
func (b *bench) viewPass(v *flatten.View, docs [][]byte, size int64) (pass, func()) {
	batch := v.NewBatch(memory.NewGoAllocator())
	var r flatten.Resource
	return func() (work, error) {
		w := work{resources: len(docs), bytes: size}
		for _, doc := range docs {
			if err := r.Parse(doc); err != nil {
				return w, err
			}
			n, err := batch.Append(&r)
			if err != nil {
				return w, fmt.Errorf("%s: %w", r.ID(), err)
			}
			w.rows += n
			if batch.Rows() >= b.o.batchRows {
				batch.NewRecordBatch().Release()
			}
		}
		return w, nil
	}, batch.Release
}

func (b *bench) perView() ([]result, error) {
	var rs []result
	for _, v := range b.views {
		docs, size := b.c.subset(v.Resource())
		if len(docs) == 0 {
			continue
		}
		p, release := b.viewPass(v, docs, size)
		r, err := measure(fmt.Sprintf("%s (%d cols)", v.Name(), len(v.Columns())), b.o.minTime, p)
		release()
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// patient compares the two engines on the default Patient view and on the
// 14-column view, over the same Patients and the same column expressions:
// first as stored in the files, then re-encoded as compact JSON, the form
// NDJSON exports and most servers send.
func (b *bench) patient(out io.Writer) ([]result, []ratio, error) {
	stored, size := b.c.subset("Patient")
	if len(stored) == 0 {
		return nil, nil, errors.New("no Patient resources")
	}
	var compact [][]byte
	var compactSize int64
	for _, doc := range stored {
		var buf bytes.Buffer
		if err := json.Compact(&buf, doc); err != nil {
			return nil, nil, err
		}
		compact = append(compact, buf.Bytes())
		compactSize += int64(buf.Len())
	}
	defs := []struct {
		label string
		def   []byte
	}{
		{"patient", mustDefault("patient")},
		{"patient14", patient14},
	}
	inputs := []struct {
		label string
		docs  [][]byte
		size  int64
	}{
		{"", stored, size},
		{", compact", compact, compactSize},
	}
	var rs []result
	var ratios []ratio
	for _, in := range inputs {
		for _, d := range defs {
			v, err := flatten.Compile(d.def)
			if err != nil {
				return nil, nil, err
			}
			g, err := compileGofhir(d.def)
			if err != nil {
				return nil, nil, fmt.Errorf("gofhir %s: %w", d.label, err)
			}
			if in.label == "" {
				same, cells, diffs := agreement(v, g, in.docs)
				fmt.Fprintf(out, "\n%s: the engines agree on %d of %d cells", d.label, same, cells)
				for _, x := range diffs {
					fmt.Fprintf(out, "\n  differs: %s", x)
				}
				fmt.Fprintln(out)
			}
			name := fmt.Sprintf("%s (%d cols)%s", d.label, len(v.Columns()), in.label)
			p, release := b.viewPass(v, in.docs, in.size)
			ours, err := measure(name+" flatten", b.o.minTime, p)
			release()
			if err != nil {
				return nil, nil, err
			}
			row := make([]string, len(g.exprs))
			docs := in.docs
			theirs, err := measure(name+" gofhir", b.o.minTime, func() (work, error) {
				for _, doc := range docs {
					if err := g.row(doc, row); err != nil {
						return work{}, err
					}
				}
				return work{resources: len(docs), rows: len(docs), bytes: in.size}, nil
			})
			if err != nil {
				return nil, nil, err
			}
			rs = append(rs, ours, theirs)
			ratios = append(ratios, ratio{name: name + ": flatten / gofhir", num: ours, den: theirs, target: targetVsGofhir, atLeast: true})
		}
		dec, err := measure("Patient encoding/json map"+in.label, b.o.minTime, decodePass(in.docs, in.size))
		if err != nil {
			return nil, nil, err
		}
		rs = append(rs, dec)
	}
	return rs, ratios, nil
}

// decodePass decodes every doc into map[string]any with encoding/json.
func decodePass(docs [][]byte, size int64) pass {
	return func() (work, error) {
		for _, doc := range docs {
			var m map[string]any
			if err := json.Unmarshal(doc, &m); err != nil {
				return work{}, err
			}
		}
		return work{resources: len(docs), bytes: size}, nil
	}
}

// all runs every resource through encoding/json, through every default view
// of its type, and through every default view plus Parquet files.
func (b *bench) all(ctx context.Context) ([]result, error) {
	dec, err := measure("encoding/json map (all)", b.o.minTime, decodePass(b.c.docs, b.c.bytes))
	if err != nil {
		return nil, err
	}
	flat, err := b.allViews(ctx, nil)
	if err != nil {
		return nil, err
	}
	pq, err := sink.NewParquet(sink.ParquetOptions{})
	if err != nil {
		return nil, err
	}
	defer pq.Close()
	withParquet, err := b.allViews(ctx, pq)
	if err != nil {
		return nil, err
	}
	return []result{dec, flat, withParquet}, nil
}

// allViews parses each resource once and appends it to every default view
// of its type; with pq, every batch of batchRows rows and what is left at
// the end of a pass is written as a Parquet file.
func (b *bench) allViews(ctx context.Context, pq *sink.Parquet) (result, error) {
	name := "all default views"
	dir := ""
	if pq != nil {
		name += " + Parquet"
		var err error
		if dir, err = os.MkdirTemp("", "flattenbench-"); err != nil {
			return result{}, err
		}
		defer os.RemoveAll(dir)
	}
	batches := map[string][]*flatten.Batch{}
	for _, v := range b.views {
		batch := v.NewBatch(memory.NewGoAllocator())
		defer batch.Release()
		batches[v.Resource()] = append(batches[v.Resource()], batch)
	}
	files := 0
	flush := func(batch *flatten.Batch) error {
		rec := batch.NewRecordBatch()
		defer rec.Release()
		if pq == nil || rec.NumRows() == 0 {
			return nil
		}
		files++
		path := filepath.Join(dir, fmt.Sprintf("%s-%d.parquet", batch.View().Name(), files%64))
		return pq.Write(ctx, rec, path, 0)
	}
	var r flatten.Resource
	return measure(name, b.o.minTime, func() (work, error) {
		w := work{resources: len(b.c.docs), bytes: b.c.bytes}
		for i, doc := range b.c.docs {
			if err := r.Parse(doc); err != nil {
				return w, fmt.Errorf("resource %d: %w", i, err)
			}
			for _, batch := range batches[r.ResourceType()] {
				n, err := batch.Append(&r)
				if err != nil {
					return w, fmt.Errorf("%s/%s: %w", r.ResourceType(), r.ID(), err)
				}
				w.rows += n
				if batch.Rows() >= b.o.batchRows {
					if err := flush(batch); err != nil {
						return w, err
					}
				}
			}
		}
		for _, bs := range batches {
			for _, batch := range bs {
				if err := flush(batch); err != nil {
					return w, err
				}
			}
		}
		return w, nil
	})
}

func mustDefault(name string) []byte {
	def, err := flatten.DefaultViewDefinition(name)
	if err != nil {
		panic(err) // embedded in the flatten package: cannot be missing
	}
	return def
}
