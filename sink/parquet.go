package sink

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/duckdb/duckdb-go/v2"
)

// Parquet writes Arrow record batches as zstd-compressed Parquet files with
// DuckDB, which scans the Arrow memory in place (measured faster than
// feeding the same rows through DuckDB's appender; see BenchmarkParquet*).
// It is safe for concurrent use: every Write takes its own connection.
type Parquet struct {
	connector *duckdb.Connector
	seq       atomic.Uint64
	level     int
	rowGroup  int
	groupSize int64
	// idle connections kept for the next Write: opening one costs more
	// than encoding a small file.
	idle chan driver.Conn
}

// maxIdleConns is how many connections the encoder keeps open between
// writes.
const maxIdleConns = 8

// ParquetOptions tune the embedded DuckDB.
type ParquetOptions struct {
	// Threads DuckDB may use; 0 means one per core.
	Threads int
	// MemoryLimit such as "512MB"; empty means DuckDB's default (80% of RAM).
	MemoryLimit string
	// RowGroupSize is the number of rows per Parquet row group. Default: 122880.
	RowGroupSize int
	// RowGroupBytes caps a row group's size in memory: DuckDB holds a whole
	// row group before it writes it, so this bounds an encode's memory (about
	// five times it). Default: DefaultRowGroupBytes.
	RowGroupBytes int64
	// CompressionLevel is the zstd level (1–22). Default: 1, measured 5–10%
	// faster than DuckDB's own default of 3 on notification data, for files
	// 4% larger (BenchmarkFlushEncode in consumer/).
	CompressionLevel int
}

// DefaultCompressionLevel is the zstd level used when none is set.
const DefaultCompressionLevel = 1

// DefaultRowGroupBytes caps a row group in memory when RowGroupBytes is
// not set. Capped at 8 MiB, a 190 MB file of 100,000 rows grew RSS by 37 MB
// instead of 475 MB with row groups of RowGroupSize rows, and was written
// three times faster; at 4 MiB the consumer's peak RSS in a 300k catch-up
// was about 20 MiB lower (448–467 MiB against 466–485 MiB; the memory
// outside Go's, mostly DuckDB's, 60–88 MiB against 77–96 MiB) at the same
// CPU time, for files 0.6 % larger (docs/benchmarks.md, Ingestion).
const DefaultRowGroupBytes = 4 << 20

// NewParquet opens an in-memory DuckDB for writing files.
func NewParquet(o ParquetOptions) (*Parquet, error) {
	c, err := duckdb.NewConnector("", func(execer driver.ExecerContext) error {
		var stmts []string
		if o.Threads > 0 {
			stmts = append(stmts, fmt.Sprintf("SET threads = %d", o.Threads))
		}
		if o.MemoryLimit != "" {
			stmts = append(stmts, fmt.Sprintf("SET memory_limit = '%s'", strings.ReplaceAll(o.MemoryLimit, "'", "")))
		}
		// The writer never needs anything from the network.
		stmts = append(stmts, "SET autoinstall_known_extensions = false", "SET autoload_known_extensions = false",
			// Needed for ROW_GROUP_SIZE_BYTES; a file is one Arrow batch read
			// by one thread, so rows keep their order in practice, and no
			// reader relies on it (lineage columns order the rows).
			"SET preserve_insertion_order = false")
		for _, s := range stmts {
			if _, err := execer.ExecContext(context.Background(), s, nil); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	if o.CompressionLevel <= 0 {
		o.CompressionLevel = DefaultCompressionLevel
	}
	if o.CompressionLevel > 22 {
		return nil, fmt.Errorf("parquet: zstd compression level %d is above 22", o.CompressionLevel)
	}
	if o.RowGroupSize <= 0 {
		o.RowGroupSize = 122880
	}
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = DefaultRowGroupBytes
	}
	return &Parquet{connector: c, level: o.CompressionLevel, rowGroup: o.RowGroupSize, groupSize: o.RowGroupBytes, idle: make(chan driver.Conn, maxIdleConns)}, nil
}

// Close releases DuckDB.
func (p *Parquet) Close() error {
	for {
		select {
		case c := <-p.idle:
			c.Close()
			continue
		default:
		}
		break
	}
	return p.connector.Close()
}

func (p *Parquet) conn(ctx context.Context) (driver.Conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	c, err := p.connector.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("duckdb connect: %w", err)
	}
	return c, nil
}

// put keeps a connection for the next Write, or closes it. A connection
// whose last statement failed is closed: its state is not trusted.
func (p *Parquet) put(c driver.Conn, failed bool) {
	if !failed {
		select {
		case p.idle <- c:
			return
		default:
		}
	}
	c.Close()
}

// Write stores rec at path (a local file) as Parquet with zstd compression.
func (p *Parquet) Write(ctx context.Context, rec arrow.RecordBatch, path string, rowGroupSize int) error {
	return p.WriteBatches(ctx, []arrow.RecordBatch{rec}, path, rowGroupSize)
}

// WriteBatches stores record batches of one schema, in order, as one
// Parquet file at path (a local file) with zstd compression.
func (p *Parquet) WriteBatches(ctx context.Context, recs []arrow.RecordBatch, path string, rowGroupSize int) (err error) {
	if len(recs) == 0 {
		return errors.New("parquet: no record batches to write")
	}
	conn, err := p.conn(ctx)
	if err != nil {
		return err
	}
	defer func() { p.put(conn, err != nil) }()
	ar, err := duckdb.NewArrowFromConn(conn)
	if err != nil {
		return fmt.Errorf("duckdb arrow: %w", err)
	}
	reader, err := array.NewRecordReader(recs[0].Schema(), recs)
	if err != nil {
		return fmt.Errorf("arrow reader: %w", err)
	}
	defer reader.Release()
	// A registered Arrow view can be scanned only once, so every file gets a
	// fresh view that is dropped afterwards. Re-registering one name per
	// connection instead (a statement less per file) failed under
	// concurrent encodes: DuckDB meets the replaced view, whose stream is
	// released (see docs/benchmarks.md, A Parquet file's fixed cost).
	view := fmt.Sprintf("arrow_batch_%d", p.seq.Add(1))
	release, err := ar.RegisterView(reader, view)
	if err != nil {
		return fmt.Errorf("register arrow view: %w", err)
	}
	defer release()
	execer := conn.(driver.ExecerContext)
	if rowGroupSize <= 0 {
		rowGroupSize = p.rowGroup
	}
	// The path is the caller's own temporary file: DuckDB need not write
	// beside it and rename (USE_TMP_FILE), which cost a rename and an inode
	// eviction per file, about 2% of a small file's encode.
	q := fmt.Sprintf("COPY (SELECT * FROM %s) TO '%s' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL %d, ROW_GROUP_SIZE %d, ROW_GROUP_SIZE_BYTES %d, USE_TMP_FILE false)",
		view, strings.ReplaceAll(path, "'", "''"), p.level, rowGroupSize, p.groupSize)
	_, err = execer.ExecContext(ctx, q, nil)
	_, dropErr := execer.ExecContext(context.Background(), "DROP VIEW IF EXISTS "+view, nil)
	if err != nil {
		return fmt.Errorf("write parquet %s: %w", path, err)
	}
	if dropErr != nil {
		return errors.Join(fmt.Errorf("drop view %s", view), dropErr)
	}
	return nil
}
