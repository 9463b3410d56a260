package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"fhirlake/lake"
)

// File is one Parquet file to make durable in one tenant's store.
type File struct {
	Tenant string
	View   string
	Key    string
	// Records are the file's rows, one schema, written in order.
	Records []arrow.RecordBatch
}

// Rows is the number of rows in the file.
func (f File) Rows() int64 {
	var n int64
	for _, r := range f.Records {
		n += r.NumRows()
	}
	return n
}

// Bytes is the size of the file's Arrow buffers.
func (f File) Bytes() int64 {
	var n int64
	for _, r := range f.Records {
		n += RecordBytes(r)
	}
	return n
}

// RecordBytes is the size of the Arrow buffers rec's columns reference
// (their children's and dictionaries' included). A slice shares its
// batch's buffers, and counts them whole.
func RecordBytes(rec arrow.RecordBatch) int64 {
	var n int64
	for _, c := range rec.Columns() {
		n += dataBytes(c.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int64 {
	var n int64
	for _, b := range d.Buffers() {
		if b != nil {
			n += int64(b.Len())
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	if d.DataType().ID() == arrow.DICTIONARY {
		n += dataBytes(d.Dictionary())
	}
	return n
}

// Release releases the records.
func (f File) Release() {
	for _, r := range f.Records {
		r.Release()
	}
}

// Written describes a durable file.
type Written struct {
	Tenant, View, Key string
	Rows, Bytes       int64
}

// TenantColumns are the names of the tenant column every speed-layer record
// carries (the raw dataset's, and the one among a view's lineage columns);
// Writer checks it before any upload so a file can only ever hold one
// tenant's rows.
var TenantColumns = []string{lake.ColTenant, lake.ViewColTenant}

// Writer makes files durable in their tenant's store.
type Writer struct {
	pq          *Parquet
	stores      map[string]Store
	workDir     string
	parallelism int
	// encodes bounds Parquet encodes across every concurrent Write: they
	// are CPU-bound, and more of them than cores only adds memory.
	encodes chan struct{}
	metrics *Metrics
}

// WriterOptions configures a Writer.
type WriterOptions struct {
	// WorkDir holds Parquet files until they are durable.
	WorkDir string
	// Parallelism bounds the files of one Write in progress at once
	// (encoding or uploading). Default: 8.
	Parallelism int
	// Encodes bounds Parquet encodes in progress across all Writes.
	// Default: GOMAXPROCS.
	Encodes int
	// Parquet tunes the encoder. Threads defaults to 1 here: the writer
	// runs Encodes files at once, and one thread per file measured 1.5×
	// faster than DuckDB's threads competing for the cores
	// (BenchmarkFlushEncode in consumer/).
	Parquet ParquetOptions
}

// NewWriter returns a writer for the given tenant stores.
func NewWriter(stores map[string]Store, o WriterOptions, reg prometheus.Registerer) (*Writer, error) {
	if o.WorkDir == "" {
		return nil, errors.New("sink: work dir is required")
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("sink work dir: %w", err)
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	if o.Encodes <= 0 {
		o.Encodes = runtime.GOMAXPROCS(0)
	}
	if o.Parquet.Threads <= 0 {
		o.Parquet.Threads = 1
	}
	pq, err := NewParquet(o.Parquet)
	if err != nil {
		return nil, err
	}
	return &Writer{pq: pq, stores: stores, workDir: o.WorkDir, parallelism: o.Parallelism, encodes: make(chan struct{}, o.Encodes), metrics: NewMetrics(reg)}, nil
}

// Close releases the embedded DuckDB.
func (w *Writer) Close() error { return w.pq.Close() }

// Store returns the tenant's store.
func (w *Writer) Store(tenant string) (Store, bool) {
	s, ok := w.stores[tenant]
	return s, ok
}

// Write encodes and uploads every file; it returns nil only when all of
// them are durable. On error some may be durable and others not: the caller
// must not commit, and a retry overwrites the same keys.
func (w *Writer) Write(ctx context.Context, files []File) ([]Written, error) {
	enc, err := w.Encode(ctx, files)
	if err != nil {
		return nil, err
	}
	defer enc.Remove()
	return w.Upload(ctx, enc)
}

// Encoded is a batch of files encoded to local Parquet files and not yet
// all uploaded. Its Arrow records are no longer needed: a caller may release
// them and retry Upload alone until it succeeds, then Remove the files.
type Encoded struct {
	files []encodedFile
	// durable[i] is set once files[i] is uploaded (read while other
	// uploads go on).
	durable []atomic.Bool
}

type encodedFile struct {
	Written
	path string
}

// Encode checks that each file holds only its tenant's rows and writes it
// as a local Parquet file, at most Encodes at a time across the process. On
// error nothing is left on disk.
func (w *Writer) Encode(ctx context.Context, files []File) (*Encoded, error) {
	enc := &Encoded{files: make([]encodedFile, len(files)), durable: make([]atomic.Bool, len(files))}
	// Largest first, one per encode slot: a large file started last would
	// run alone while the other cores wait for it.
	order := make([]int, len(files))
	size := make([]int64, len(files))
	for i, f := range files {
		order[i], size[i] = i, f.Bytes()
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(size[b], size[a]) })
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(min(w.parallelism, cap(w.encodes)))
	for _, i := range order {
		f := files[i]
		g.Go(func() error {
			ef, err := w.encodeOne(gctx, f)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", f.Tenant, err)
			}
			enc.files[i] = ef
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		enc.Remove()
		return nil, err
	}
	return enc, nil
}

// Durable reports whether the i-th file (in the order given to Encode) is
// uploaded. It may be called while an Upload goes on.
func (e *Encoded) Durable(i int) bool { return e.durable[i].Load() }

// Upload puts every encoded file not yet uploaded into its tenant's store;
// it returns nil only when all of them are durable. A failed Upload may be
// retried: files already durable are not sent again.
func (w *Writer) Upload(ctx context.Context, enc *Encoded) ([]Written, error) {
	return w.UploadNotify(ctx, enc, nil)
}

// UploadNotify is Upload calling durable(i) as soon as the i-th file is
// uploaded. One file failing does not stop the others: the files of a
// tenant whose store refuses do not hold back other tenants' files.
func (w *Writer) UploadNotify(ctx context.Context, enc *Encoded, durable func(i int)) ([]Written, error) {
	var g errgroup.Group
	g.SetLimit(w.parallelism)
	var mu sync.Mutex
	var errs []error
	for i := range enc.files {
		ef := &enc.files[i]
		if enc.durable[i].Load() {
			continue
		}
		g.Go(func() error {
			if err := w.uploadOne(ctx, ef); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("tenant %s: %w", ef.Tenant, err))
				mu.Unlock()
				return nil
			}
			enc.durable[i].Store(true)
			if durable != nil {
				durable(i)
			}
			return nil
		})
	}
	// Every upload returns nil: its error goes into errs, where all of them
	// are counted, instead of Wait keeping only the first.
	_ = g.Wait()
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, fmt.Errorf("%w (and %d more files failed)", errs[0], len(errs)-1)
	}
	out := make([]Written, len(enc.files))
	for i, ef := range enc.files {
		out[i] = ef.Written
	}
	return out, nil
}

// Remove deletes the local files.
func (e *Encoded) Remove() {
	if e == nil {
		return
	}
	for _, ef := range e.files {
		if ef.path != "" {
			os.Remove(ef.path)
		}
	}
}

func (w *Writer) encodeOne(ctx context.Context, f File) (encodedFile, error) {
	if _, ok := w.stores[f.Tenant]; !ok {
		return encodedFile{}, fmt.Errorf("no store configured for tenant %q", f.Tenant)
	}
	for _, rec := range f.Records {
		if err := CheckTenant(rec, f.Tenant); err != nil {
			return encodedFile{}, err
		}
	}
	tmp, err := os.CreateTemp(w.workDir, "flush-*.parquet")
	if err != nil {
		return encodedFile{}, fmt.Errorf("temp file: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	select {
	case w.encodes <- struct{}{}:
	case <-ctx.Done():
		os.Remove(tmpPath)
		return encodedFile{}, ctx.Err()
	}
	err = w.pq.WriteBatches(ctx, f.Records, tmpPath, 0)
	<-w.encodes
	if err != nil {
		os.Remove(tmpPath)
		return encodedFile{}, err
	}
	info, err := os.Stat(tmpPath)
	if err != nil {
		os.Remove(tmpPath)
		return encodedFile{}, err
	}
	return encodedFile{Written: Written{Tenant: f.Tenant, View: f.View, Key: f.Key, Rows: f.Rows(), Bytes: info.Size()}, path: tmpPath}, nil
}

func (w *Writer) uploadOne(ctx context.Context, ef *encodedFile) error {
	store := w.stores[ef.Tenant]
	start := time.Now()
	if err := store.Put(ctx, ef.Key, ef.path); err != nil {
		class := "other"
		switch {
		case errors.Is(err, ErrAccessDenied):
			class = "access_denied"
		case errors.Is(err, ErrUntrusted):
			class = "tls_untrusted"
		case ctx.Err() != nil:
			class = "canceled"
		}
		w.metrics.storeErrors.WithLabelValues(ef.Tenant, class).Inc()
		return err
	}
	w.metrics.uploadSeconds.WithLabelValues(ef.Tenant).Observe(time.Since(start).Seconds())
	w.metrics.files.WithLabelValues(ef.Tenant, ef.View).Inc()
	w.metrics.rows.WithLabelValues(ef.Tenant, ef.View).Add(float64(ef.Rows))
	w.metrics.bytes.WithLabelValues(ef.Tenant, ef.View).Add(float64(ef.Bytes))
	w.metrics.fileSize.WithLabelValues(ef.View).Observe(float64(ef.Bytes))
	return nil
}

// CheckTenant verifies that every row of rec belongs to tenant.
func CheckTenant(rec arrow.RecordBatch, tenant string) error {
	var idx []int
	var name string
	for _, name = range TenantColumns {
		if idx = rec.Schema().FieldIndices(name); len(idx) == 1 {
			break
		}
	}
	if len(idx) != 1 {
		return fmt.Errorf("record has no tenant column (%v); refusing to upload rows of unknown tenant", TenantColumns)
	}
	col, ok := rec.Column(idx[0]).(*array.String)
	if !ok {
		return fmt.Errorf("column %q is %s, want string", name, rec.Column(idx[0]).DataType())
	}
	for i := 0; i < col.Len(); i++ {
		if col.IsNull(i) || col.Value(i) != tenant {
			return fmt.Errorf("row %d belongs to tenant %q, not %q; refusing to upload a file that mixes tenants", i, col.Value(i), tenant)
		}
	}
	return nil
}

// TempDir returns the work directory, for callers that stage their own files.
func (w *Writer) TempDir() string { return filepath.Clean(w.workDir) }
