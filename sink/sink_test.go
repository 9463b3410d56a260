package sink

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"fhirlake/lake"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/duckdb/duckdb-go/v2"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "tenant", Type: arrow.BinaryTypes.String},
	{Name: "id", Type: arrow.BinaryTypes.String},
	{Name: "offset", Type: arrow.PrimitiveTypes.Int64},
	{Name: "last_updated", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "resource", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

func testRecord(tenants []string, n int) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.NewGoAllocator(), testSchema)
	defer b.Release()
	for i := 0; i < n; i++ {
		b.Field(0).(*array.StringBuilder).Append(tenants[i%len(tenants)])
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("p%d", i))
		b.Field(2).(*array.Int64Builder).Append(int64(i))
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro() + int64(i)))
		b.Field(4).(*array.StringBuilder).Append(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","gender":"female","birthDate":"1970-01-01"}`, i))
	}
	return b.NewRecordBatch()
}

func countParquet(t *testing.T, path string) (rows int64, tenants int64) {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(fmt.Sprintf("SELECT count(*), count(DISTINCT tenant) FROM read_parquet('%s')", path)).Scan(&rows, &tenants); err != nil {
		t.Fatal(err)
	}
	return rows, tenants
}

func TestLocalStore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := lake.Key(lake.RawDataset, time.Date(2026, 3, 4, 23, 0, 0, 0, time.UTC), "fhir.notifications", 3, 10, 20)
	if err := s.Put(ctx, key, src); err != nil {
		t.Fatal(err)
	}
	// A redelivery overwrites the same key.
	if err := os.WriteFile(src, []byte("hello again"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, key, src); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "speed/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Key != key || objs[0].Size != int64(len("hello again")) {
		t.Fatalf("list: got %+v, want one object %s of 11 bytes", objs, key)
	}
	var buf bytes.Buffer
	if err := s.Get(ctx, key, &buf); err != nil || buf.String() != "hello again" {
		t.Fatalf("get: got %q, %v", buf.String(), err)
	}
	for _, bad := range []string{"../escape", "/abs", "a/../../b", ""} {
		if err := s.Put(ctx, bad, src); err == nil {
			t.Errorf("put %q: got nil error, want a refusal", bad)
		}
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	ctx := context.Background()
	a, _ := NewLocal(t.TempDir())
	b, _ := NewLocal(t.TempDir())
	w, err := NewWriter(map[string]Store{"acme": a, "globex": b}, WriterOptions{WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	recA := testRecord([]string{"acme"}, 1000)
	recB := testRecord([]string{"globex"}, 10)
	defer recA.Release()
	defer recB.Release()
	written, err := w.Write(ctx, []File{
		{Tenant: "acme", View: "resources", Key: "speed/resources/date=2026-01-02/t-0-0-999.parquet", Records: []arrow.RecordBatch{recA}},
		{Tenant: "globex", View: "resources", Key: "speed/resources/date=2026-01-02/t-0-0-999.parquet", Records: []arrow.RecordBatch{recB}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || written[0].Rows != 1000 || written[1].Rows != 10 {
		t.Fatalf("written: got %+v", written)
	}
	rows, tenants := countParquet(t, filepath.Join(a.Root, "speed/resources/date=2026-01-02/t-0-0-999.parquet"))
	if rows != 1000 || tenants != 1 {
		t.Fatalf("acme file: got %d rows of %d tenants, want 1000 of 1", rows, tenants)
	}
	rows, _ = countParquet(t, filepath.Join(b.Root, "speed/resources/date=2026-01-02/t-0-0-999.parquet"))
	if rows != 10 {
		t.Fatalf("globex file: got %d rows, want 10", rows)
	}
}

// failingStore fails the puts of the keys in fail once each, each only
// after another put has succeeded, so that a failed upload always leaves
// some files durable.
type failingStore struct {
	Store
	mu        sync.Mutex
	fail      map[string]bool
	puts      map[string]int
	succeeded chan struct{} // closed by the first successful put
}

func (f *failingStore) Put(ctx context.Context, key, path string) error {
	f.mu.Lock()
	f.puts[key]++
	failNow := f.fail[key]
	delete(f.fail, key)
	f.mu.Unlock()
	if failNow {
		select {
		case <-f.succeeded:
		case <-ctx.Done():
		}
		return errors.New("store unavailable")
	}
	if err := f.Store.Put(ctx, key, path); err != nil {
		return err
	}
	f.mu.Lock()
	select {
	case <-f.succeeded:
	default:
		close(f.succeeded)
	}
	f.mu.Unlock()
	return nil
}

// TestWriterUploadRetry: files are encoded once; a failed upload is retried
// from the local files after the records are released, without sending
// again the files already durable; Remove leaves nothing behind.
func TestWriterUploadRetry(t *testing.T) {
	ctx := context.Background()
	local, _ := NewLocal(t.TempDir())
	fs := &failingStore{Store: local, fail: map[string]bool{"speed/b.parquet": true}, puts: map[string]int{}, succeeded: make(chan struct{})}
	work := t.TempDir()
	w, err := NewWriter(map[string]Store{"acme": fs}, WriterOptions{WorkDir: work}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	files := []File{
		{Tenant: "acme", View: "resources", Key: "speed/a.parquet", Records: []arrow.RecordBatch{testRecord([]string{"acme"}, 100), testRecord([]string{"acme"}, 50)}},
		{Tenant: "acme", View: "resources", Key: "speed/b.parquet", Records: []arrow.RecordBatch{testRecord([]string{"acme"}, 10)}},
	}
	enc, err := w.Encode(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Release()
	}
	if _, err := w.Upload(ctx, enc); err == nil {
		t.Fatal("upload succeeded although the store refused a file")
	}
	written, err := w.Upload(ctx, enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || written[0].Rows != 150 || written[1].Rows != 10 {
		t.Errorf("written: %+v", written)
	}
	if fs.puts["speed/a.parquet"] != 1 || fs.puts["speed/b.parquet"] != 2 {
		t.Errorf("puts %v: want a.parquet once, b.parquet twice", fs.puts)
	}
	if rows, _ := countParquet(t, filepath.Join(local.Root, "speed/a.parquet")); rows != 150 {
		t.Errorf("a.parquet: %d rows from two record batches, want 150", rows)
	}
	enc.Remove()
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("%d files left in the work directory", len(left))
	}
}

func TestWriterRefusesMixedTenants(t *testing.T) {
	a, _ := NewLocal(t.TempDir())
	w, err := NewWriter(map[string]Store{"acme": a}, WriterOptions{WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mixed := testRecord([]string{"acme", "globex"}, 4)
	defer mixed.Release()
	if _, err := w.Write(context.Background(), []File{{Tenant: "acme", View: "resources", Key: "speed/x.parquet", Records: []arrow.RecordBatch{mixed}}}); err == nil {
		t.Fatal("got nil error, want a refusal to upload rows of two tenants")
	}
	if objs, _ := a.List(context.Background(), ""); len(objs) != 0 {
		t.Fatalf("store holds %d objects, want none", len(objs))
	}
	other := testRecord([]string{"acme"}, 4)
	defer other.Release()
	if _, err := w.Write(context.Background(), []File{{Tenant: "globex", View: "resources", Key: "speed/x.parquet", Records: []arrow.RecordBatch{other}}}); err == nil {
		t.Fatal("got nil error for a tenant without a store")
	}
}

// BenchmarkParquetArrowScan and BenchmarkParquetAppender compare the two ways
// of handing rows to DuckDB before COPY … TO Parquet: scanning the Arrow
// batch in place, or appending row by row into a table first.
func BenchmarkParquetArrowScan(b *testing.B) {
	rec := testRecord([]string{"acme"}, 50_000)
	defer rec.Release()
	pq, err := NewParquet(ParquetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer pq.Close()
	path := filepath.Join(b.TempDir(), "out.parquet")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pq.Write(context.Background(), rec, path, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rec.NumRows()*int64(b.N))/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkParquetAppender(b *testing.B) {
	rec := testRecord([]string{"acme"}, 50_000)
	defer rec.Release()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	path := filepath.Join(b.TempDir(), "out.parquet")
	ctx := context.Background()
	cols := make([]driver.Value, 5)
	db := sql.OpenDB(c)
	defer db.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		conn, err := c.Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(`CREATE OR REPLACE TABLE batch (tenant VARCHAR, id VARCHAR, "offset" BIGINT, last_updated TIMESTAMPTZ, resource VARCHAR)`); err != nil {
			b.Fatal(err)
		}
		app, err := duckdb.NewAppenderFromConn(conn, "", "batch")
		if err != nil {
			b.Fatal(err)
		}
		tenant := rec.Column(0).(*array.String)
		id := rec.Column(1).(*array.String)
		off := rec.Column(2).(*array.Int64)
		ts := rec.Column(3).(*array.Timestamp)
		res := rec.Column(4).(*array.String)
		for r := 0; r < int(rec.NumRows()); r++ {
			cols[0], cols[1], cols[2] = tenant.Value(r), id.Value(r), off.Value(r)
			cols[3], cols[4] = ts.Value(r).ToTime(arrow.Microsecond), res.Value(r)
			if err := app.AppendRow(cols...); err != nil {
				b.Fatal(err)
			}
		}
		if err := app.Close(); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(fmt.Sprintf("COPY batch TO '%s' (FORMAT parquet, COMPRESSION zstd)", path)); err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
	b.ReportMetric(float64(rec.NumRows()*int64(b.N))/b.Elapsed().Seconds(), "rows/s")
}

// TestParquetOptions: the encoder honours its memory limit setting, its
// zstd level and its cap on row-group bytes, and refuses a level zstd does
// not have.
func TestParquetOptions(t *testing.T) {
	if _, err := NewParquet(ParquetOptions{CompressionLevel: 23}); err == nil {
		t.Error("zstd level 23 accepted")
	}
	rec := testRecord([]string{"acme"}, 40_000)
	defer rec.Release()
	dir := t.TempDir()
	groups := func(opts ParquetOptions) (int64, int64) {
		t.Helper()
		pq, err := NewParquet(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer pq.Close()
		path := filepath.Join(dir, fmt.Sprintf("g%d.parquet", opts.RowGroupBytes))
		if err := pq.Write(context.Background(), rec, path, 0); err != nil {
			t.Fatal(err)
		}
		if rows, _ := countParquet(t, path); rows != rec.NumRows() {
			t.Fatalf("%d rows written, want %d", rows, rec.NumRows())
		}
		db, err := sql.Open("duckdb", "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n, compression int64
		if err := db.QueryRow(fmt.Sprintf(`SELECT count(DISTINCT row_group_id), count(*) FILTER (WHERE compression <> 'ZSTD') FROM parquet_metadata('%s')`, path)).Scan(&n, &compression); err != nil {
			t.Fatal(err)
		}
		if compression != 0 {
			t.Errorf("%d column chunks not zstd-compressed", compression)
		}
		return n, rec.NumRows()
	}
	// 40,000 rows of ~110 bytes (about 4.4 MB): two row groups at the
	// default cap of 4 MiB, one when capped at 64 MiB, several at 512 KiB.
	if n, _ := groups(ParquetOptions{MemoryLimit: "128MiB", Threads: 1, CompressionLevel: 3}); n != 2 {
		t.Errorf("default row-group cap: %d row groups, want 2", n)
	}
	if n, _ := groups(ParquetOptions{RowGroupBytes: 64 << 20, Threads: 1}); n != 1 {
		t.Errorf("64 MiB row-group cap: %d row groups, want 1", n)
	}
	if n, _ := groups(ParquetOptions{RowGroupBytes: 512 << 10, Threads: 1}); n < 4 {
		t.Errorf("512 KiB row-group cap: %d row groups, want at least 4", n)
	}
}

func TestFileBytes(t *testing.T) {
	small, large := testRecord([]string{"acme"}, 10), testRecord([]string{"acme"}, 1000)
	defer small.Release()
	defer large.Release()
	s, l := File{Records: []arrow.RecordBatch{small}}.Bytes(), File{Records: []arrow.RecordBatch{large}}.Bytes()
	if s <= 0 || l < 50*s {
		t.Errorf("10 rows: %d bytes, 1000 rows: %d bytes", s, l)
	}
	if both := (File{Records: []arrow.RecordBatch{small, large}}).Bytes(); both != s+l {
		t.Errorf("two records: %d bytes, want %d", both, s+l)
	}
	lb := array.NewListBuilder(memory.DefaultAllocator, arrow.BinaryTypes.String)
	defer lb.Release()
	for i := 0; i < 100; i++ {
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).Append("a value of some length")
	}
	list := lb.NewArray()
	defer list.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "l", Type: list.DataType()}}, nil), []arrow.Array{list}, 100)
	defer rec.Release()
	if n := (File{Records: []arrow.RecordBatch{rec}}).Bytes(); n < 2200 {
		t.Errorf("list column: %d bytes, want the values' 2200 and more", n)
	}
}

type refusingStore struct{ Store }

func (refusingStore) Put(context.Context, string, string) error {
	return fmt.Errorf("put: %w", ErrAccessDenied)
}

// TestWriterUploadNotify: a store that refuses at once neither stops nor
// cancels the other tenants' uploads, and each durable file is reported.
func TestWriterUploadNotify(t *testing.T) {
	ctx := context.Background()
	acme, _ := NewLocal(t.TempDir())
	globex, _ := NewLocal(t.TempDir())
	w, err := NewWriter(map[string]Store{"acme": acme, "globex": refusingStore{globex}}, WriterOptions{WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	files := []File{
		{Tenant: "globex", View: "resources", Key: "speed/g.parquet", Records: []arrow.RecordBatch{testRecord([]string{"globex"}, 10)}},
		{Tenant: "acme", View: "resources", Key: "speed/a.parquet", Records: []arrow.RecordBatch{testRecord([]string{"acme"}, 20000)}},
	}
	enc, err := w.Encode(ctx, files)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Remove()
	for _, f := range files {
		f.Release()
	}
	var mu sync.Mutex
	var reported []int
	_, err = w.UploadNotify(ctx, enc, func(i int) {
		mu.Lock()
		reported = append(reported, i)
		mu.Unlock()
	})
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("upload: %v, want access denied", err)
	}
	if !enc.Durable(1) || enc.Durable(0) {
		t.Errorf("durable: acme %v, globex %v; want acme's file only", enc.Durable(1), enc.Durable(0))
	}
	if len(reported) != 1 || reported[0] != 1 {
		t.Errorf("reported durable: %v, want [1]", reported)
	}
}
