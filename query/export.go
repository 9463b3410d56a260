package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/duckdb/duckdb-go/v2"

	"fhirlake/sink"
)

// ExportOptions bound an export.
type ExportOptions struct {
	// MaxRows cuts the result after this many rows; 0: no limit.
	MaxRows int
	// MaxBytes cuts the result once about this many bytes are out; 0: no
	// limit. It is checked between rows: text formats count what they
	// wrote (give or take one buffer), Arrow and Parquet the Arrow size of
	// the batches passed on, the last one cut to fit.
	MaxBytes int64
	// Args are the values of the statement's parameters (? or $n), bound
	// by DuckDB: data, never SQL.
	Args []any
}

// ExportResult describes what Export wrote.
type ExportResult struct {
	Rows int
	// Truncated is set when the result was cut by MaxRows or MaxBytes.
	Truncated bool
}

// Export runs one read-only statement like Query and writes its result to w
// in format, one of Formats: an aligned table, CSV with a header, JSON lines
// (one object per row), an Arrow IPC stream, or a Parquet file (zstd).
// Options.QueryTimeout bounds it as a whole.
func (s *Session) Export(ctx context.Context, w io.Writer, q, format string, o ExportOptions) (ExportResult, error) {
	switch format {
	case "arrow", "parquet":
	default:
		if !validFormat(format) {
			return ExportResult{}, fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
		}
		var res ExportResult
		err := s.Run(ctx, q, func(rows *sql.Rows) error {
			n, truncated, err := write(w, rows, format, o)
			res = ExportResult{Rows: n, Truncated: truncated}
			return err
		}, o.Args...)
		return res, err
	}
	var res ExportResult
	err := s.Arrow(ctx, q, func(r array.RecordReader) error {
		lr := &limitReader{RecordReader: r, max: int64(o.MaxRows), maxBytes: o.MaxBytes}
		defer lr.done()
		var err error
		if format == "arrow" {
			err = writeArrow(w, lr)
		} else {
			err = s.writeParquet(ctx, w, lr)
		}
		res = ExportResult{Rows: int(lr.rows), Truncated: lr.truncated}
		return err
	}, o.Args...)
	return res, err
}

// Arrow runs one read-only statement like Query and hands its result to fn
// as Arrow record batches, within Options.QueryTimeout. The reader is valid
// until fn returns. args are the values of q's parameters.
func (s *Session) Arrow(ctx context.Context, q string, fn func(array.RecordReader) error, args ...any) error {
	if err := s.prepare(ctx, q); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		dconn, ok := dc.(driver.Conn)
		if !ok {
			return errors.New("driver connection has no Arrow interface")
		}
		ar, err := duckdb.NewArrowFromConn(dconn)
		if err != nil {
			return err
		}
		r, err := ar.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer r.Release()
		if err := fn(r); err != nil {
			return err
		}
		return r.Err()
	})
	if err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	return nil
}

func writeArrow(w io.Writer, r array.RecordReader) error {
	iw := ipc.NewWriter(w, ipc.WithSchema(r.Schema()), ipc.WithAllocator(memory.DefaultAllocator))
	for r.Next() {
		if err := iw.Write(r.RecordBatch()); err != nil {
			iw.Close()
			return err
		}
	}
	if err := r.Err(); err != nil {
		iw.Close()
		return err
	}
	return iw.Close()
}

// writeParquet writes the batches as one Parquet file: DuckDB writes it to
// the session's spill directory, from where it is copied to w and removed.
// The writing DuckDB is a second, private instance that only ever runs this
// package's COPY over an Arrow stream, never a caller's SQL.
func (s *Session) writeParquet(ctx context.Context, w io.Writer, r array.RecordReader) error {
	s.pqOnce.Do(func() { s.pq, s.pqErr = newParquetWriter(ctx, s.tempDir) })
	if s.pqErr != nil {
		return s.pqErr
	}
	f, err := os.CreateTemp(s.pq.dir, "export-*.parquet")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	if err := s.pq.write(ctx, r, path); err != nil {
		return err
	}
	f, err = os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// parquetWriter is an in-memory DuckDB that writes Arrow streams as Parquet
// files into its own directory, and can reach nothing else.
type parquetWriter struct {
	db  *sql.DB
	dir string
	seq atomic.Uint64
}

func newParquetWriter(ctx context.Context, parent string) (*parquetWriter, error) {
	dir, err := os.MkdirTemp(parent, "export-")
	if err != nil {
		return nil, fmt.Errorf("parquet export: %w", err)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	connector, err := duckdb.NewConnector("", func(execer driver.ExecerContext) error {
		for _, q := range []string{
			"SET threads = 1",
			"SET memory_limit = '256MB'",
			"SET autoinstall_known_extensions = false",
			"SET autoload_known_extensions = false",
			fmt.Sprintf("SET temp_directory = '%s'", sqlString(dir)),
			fmt.Sprintf("SET allowed_directories = ['%s/']", sqlString(dir)),
			"SET enable_external_access = false",
			"SET lock_configuration = true",
		} {
			if _, err := execer.ExecContext(ctx, q, nil); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parquet export: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	return &parquetWriter{db: db, dir: dir}, nil
}

func (p *parquetWriter) write(ctx context.Context, r array.RecordReader, path string) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		ar, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		if err != nil {
			return err
		}
		// A registered Arrow view can be scanned once: a fresh one per file.
		view := fmt.Sprintf("export_%d", p.seq.Add(1))
		release, err := ar.RegisterView(r, view)
		if err != nil {
			return err
		}
		defer release()
		execer := dc.(driver.ExecerContext)
		_, err = execer.ExecContext(ctx, fmt.Sprintf("COPY (SELECT * FROM %s) TO '%s' (FORMAT parquet, COMPRESSION zstd)", view, sqlString(path)), nil)
		_, dropErr := execer.ExecContext(context.Background(), "DROP VIEW IF EXISTS "+view, nil)
		return errors.Join(err, dropErr)
	})
}

func (p *parquetWriter) Close() error {
	err := p.db.Close()
	os.RemoveAll(p.dir)
	return err
}

// limitReader passes on at most max rows and about maxBytes bytes of
// Arrow memory (0: no limit), and counts them.
type limitReader struct {
	array.RecordReader
	max, maxBytes int64
	rows, bytes   int64
	truncated     bool
	cur           arrow.RecordBatch
}

func (l *limitReader) Next() bool {
	if l.cur != nil {
		l.cur.Release()
		l.cur = nil
	}
	if (l.max > 0 && l.rows >= l.max) || (l.maxBytes > 0 && l.bytes >= l.maxBytes) {
		if l.RecordReader.Next() && l.RecordReader.RecordBatch().NumRows() > 0 {
			l.truncated = true
		}
		return false
	}
	if !l.RecordReader.Next() {
		return false
	}
	rec := l.RecordReader.RecordBatch()
	n := rec.NumRows()
	keep := n
	if l.max > 0 && l.rows+keep > l.max {
		keep = l.max - l.rows
	}
	size := sink.RecordBytes(rec)
	if l.maxBytes > 0 && n > 0 && l.bytes+size > l.maxBytes {
		// The rows that fit at this batch's mean row size, at least one.
		keep = min(keep, max(1, (l.maxBytes-l.bytes)*n/size))
	}
	if keep < n {
		l.truncated = true
		l.cur = rec.NewSlice(0, keep)
		size = size * keep / n // a slice shares its batch's buffers
	} else {
		rec.Retain()
		l.cur = rec
	}
	l.rows += keep
	l.bytes += size
	return true
}

func (l *limitReader) RecordBatch() arrow.RecordBatch { return l.cur }
func (l *limitReader) Record() arrow.RecordBatch      { return l.cur }

// Retain and Release count references to the reader underneath, which an
// exported Arrow stream holds while DuckDB scans it.
func (l *limitReader) Retain()  { l.RecordReader.Retain() }
func (l *limitReader) Release() { l.RecordReader.Release() }

// done releases the current batch.
func (l *limitReader) done() {
	if l.cur != nil {
		l.cur.Release()
		l.cur = nil
	}
}
