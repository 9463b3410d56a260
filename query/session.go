// Package query opens tenant-scoped DuckDB sessions over a tenant's lake:
// one DuckDB instance per tenant, allowed to read that tenant's files only,
// with one deduplicated view per resource type and per SQL-on-FHIR view.
//
// A lake without a batch snapshot is read from its speed layer alone. Once
// the compactor has published _manifest/batch.json, each view is the
// snapshot's state plus the speed files newer than its watermark: the
// resources changed in those files are ranked when the views are built
// (again only when the lake changes), so a query reads the snapshot's rows
// minus the superseded ones plus the latest versions, and deduplicates
// nothing itself.
package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/duckdb/duckdb-go/v2"

	"fhirlake/lake"
	"fhirlake/sink"
)

// Options bound a session. The zero value is usable.
type Options struct {
	// MemoryLimit such as "1GB"; beyond it DuckDB spills to TempDir, then
	// fails the query. Default: 1GB.
	MemoryLimit string
	// Threads DuckDB may use. Default: 2.
	Threads int
	// Connections bounds the queries that run at once; the others wait for a
	// free connection. Default: 1.
	Connections int
	// QueryTimeout bounds one query, from the statement to its last row;
	// DuckDB is interrupted when it passes and the query fails with
	// ErrQueryTimeout. Default: 0, only the caller's context bounds it.
	QueryTimeout time.Duration
	// SpeedOverlap: with a batch snapshot, the speed files modified up to
	// this long before its watermark are read again, because the compactor
	// re-reads them too (compact.overlap: an upload is dated by when it
	// began). Keep it at least compact.overlap. Re-reading is harmless, only
	// slower. Default: 1h.
	SpeedOverlap time.Duration
	// TempDir is where the session makes its own spill directory (DuckDB
	// writes there when a query outgrows MemoryLimit), removed by Close.
	// Default: os.TempDir().
	TempDir string
	// HTTPFSExtension is the file of DuckDB's httpfs extension
	// (httpfs.duckdb_extension, built for exactly this DuckDB version), loaded
	// by path before the configuration is locked. DuckDB checks its signature
	// (unsigned extensions stay refused) and never downloads one. Only a
	// lake on S3 needs it. Default: "", nothing is loaded.
	HTTPFSExtension string
	// IcebergExtension and AvroExtension are the files of DuckDB's iceberg
	// and avro extensions, loaded by path as HTTPFSExtension is. With both, a
	// lake on S3 reads its batch snapshot through the Iceberg tables the
	// compactor published, when lake.IcebergKey names them at the snapshot
	// (docs/format/iceberg.md, "The pointer"). Default: "", the snapshot's
	// files are read.
	IcebergExtension string
	AvroExtension    string
}

// DefaultSpeedOverlap is the default of Options.SpeedOverlap, the same as
// the compactor's default overlap.
const DefaultSpeedOverlap = time.Hour

func (o Options) withDefaults() Options {
	if o.MemoryLimit == "" {
		o.MemoryLimit = "1GB"
	}
	if o.Threads <= 0 {
		o.Threads = 2
	}
	if o.Connections <= 0 {
		o.Connections = 1
	}
	if o.SpeedOverlap <= 0 {
		o.SpeedOverlap = DefaultSpeedOverlap
	}
	return o
}

// ErrQueryTimeout ends a query that ran past Options.QueryTimeout.
var ErrQueryTimeout = errors.New("query timed out")

// Session is one tenant's sandboxed DuckDB.
type Session struct {
	db      *sql.DB
	tenant  string
	root    string
	src     lakeSource
	opts    Options
	tempDir string

	// mu serialises Refresh and the making of views (ensure); cat is the
	// catalog they made last.
	mu  lock
	cat atomic.Pointer[Catalog]
	// What Refresh learnt from the files, so that it reads each one once:
	// the raw files whose resource types are known (→ size), the snapshots
	// likewise, the types, and each view dataset's resource type.
	scanned      map[string]int64
	snapshots    map[string]bool
	types        map[string]bool
	datasetTypes map[string]string
	// The speed files probed and found good (→ size), and those the views
	// leave out (catalog_quarantine.go).
	good map[string]int64
	bad  map[string]UnreadableFile
	// tables, when set, names the Iceberg tables holding the snapshot of the
	// last scan (batch_iceberg.go).
	tables *lake.IcebergPointer

	pqOnce sync.Once
	pq     *parquetWriter
	pqErr  error

	// Types are the resource types present, sorted, as of Open or the last
	// Refresh; Catalog is the concurrency-safe way to read them.
	Types []string
	// Views are the typed views present, sorted, as of Open or the last
	// Refresh.
	Views []string
}

// Open starts a session over the tenant's lake rooted at the local
// directory root. Before any query runs, DuckDB is limited to that
// directory (and its own spill directory), external access and extension
// loading are switched off, and the configuration is locked; then the
// views are built from what the lake holds.
func Open(ctx context.Context, tenant, root string, o Options) (*Session, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("tenant %s lake: %w", tenant, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	// A local directory needs no extension; its snapshot is read from its files.
	o.HTTPFSExtension, o.IcebergExtension, o.AvroExtension = "", "", ""
	return open(ctx, tenant, dirSource{root: abs}, o, nil)
}

// OpenS3 starts a session over the tenant's lake in its bucket: store
// lists it and reads its manifest, DuckDB reads its files at s3:// URLs
// through httpfs (Options.HTTPFSExtension, required) with an S3 secret
// that holds the tenant's key only and is scoped to the lake's prefix.
// DuckDB may read nothing but that prefix (allowed_directories) and its
// own spill directory, and keeps what it fetched in its caches (file
// contents, Parquet metadata, object metadata) instead of a local copy.
// The secret and the settings are in place before the configuration is
// locked.
func OpenS3(ctx context.Context, tenant string, store sink.Store, a S3Access, o Options) (*Session, error) {
	if o.HTTPFSExtension == "" {
		return nil, fmt.Errorf("tenant %s: an S3 lake is read through DuckDB's httpfs: set serve.httpfs_extension (or $FHIRLAKE_HTTPFS_EXTENSION) to its file", tenant)
	}
	secret, root, err := a.secret(tenant)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return open(ctx, tenant, &storeSource{store: store, root: root}, o, append([]string{
		secret,
		// DuckDB's own caches stand in for a copy of the lake: the
		// contents of remote files, their Parquet footers and their HTTP
		// metadata (size, date) are kept for the life of the session.
		"SET enable_external_file_cache = true",
		"SET parquet_metadata_cache = true",
		"SET enable_http_metadata_cache = true",
	}, a.settings()...))
}

// open starts a session over src; extra runs after the extension is
// loaded and before the sandbox settings.
func open(ctx context.Context, tenant string, src lakeSource, o Options, extra []string) (*Session, error) {
	o = o.withDefaults()
	abs := src.base()
	s := &Session{tenant: tenant, root: abs, src: src, opts: o, scanned: map[string]int64{}, snapshots: map[string]bool{},
		types: map[string]bool{}, datasetTypes: map[string]string{}, good: map[string]int64{}, bad: map[string]UnreadableFile{}}
	var err error
	if o.TempDir != "" {
		if err := os.MkdirAll(o.TempDir, 0o755); err != nil {
			return nil, fmt.Errorf("tenant %s: spill directory: %w", tenant, err)
		}
	}
	if s.tempDir, err = os.MkdirTemp(o.TempDir, "fhirlake-query-"+tenant+"-"); err != nil {
		return nil, fmt.Errorf("tenant %s: spill directory: %w", tenant, err)
	}
	if real, err := filepath.EvalSymlinks(s.tempDir); err == nil {
		s.tempDir = real
	}
	if s.tempDir == abs || strings.HasPrefix(s.tempDir+"/", abs+"/") || strings.HasPrefix(abs+"/", s.tempDir+"/") {
		s.removeTemp()
		return nil, fmt.Errorf("tenant %s: the spill directory %s must not overlap the lake %s", tenant, s.tempDir, abs)
	}
	var setup []string
	if o.HTTPFSExtension != "" {
		// Before external access is switched off: LOAD reads a file.
		setup = append(setup, loadExtension(o.HTTPFSExtension))
	}
	if s.readsIceberg() {
		// avro first: iceberg reads its manifests through it. The exact
		// metadata file is always named (lake.IcebergPointer), never guessed.
		setup = append(setup, loadExtension(o.AvroExtension), loadExtension(o.IcebergExtension),
			"SET unsafe_enable_version_guessing = false")
	}
	setup = append(setup, extra...)
	setup = append(setup,
		fmt.Sprintf("SET memory_limit = '%s'", sqlString(o.MemoryLimit)),
		fmt.Sprintf("SET threads = %d", o.Threads),
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET allow_community_extensions = false",
		// DuckDB allows its spill directory besides allowed_directories; it
		// defaults to ./.tmp, shared by every session of the process, so each
		// session gets its own.
		fmt.Sprintf("SET temp_directory = '%s'", sqlString(s.tempDir)),
		fmt.Sprintf("SET allowed_directories = ['%s/']", sqlString(abs)),
		"SET enable_external_access = false",
	)
	// The settings are global to the database instance: the first
	// connection applies them, later connections of the pool share them
	// (and could not change them once the configuration is locked).
	var configured atomic.Bool
	connector, err := duckdb.NewConnector("", func(execer driver.ExecerContext) error {
		if configured.Load() {
			return nil
		}
		for _, q := range setup {
			if _, err := execer.ExecContext(ctx, q, nil); err != nil {
				if strings.HasPrefix(q, "CREATE") {
					q = "create the S3 secret" // never quote the key
				}
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if _, err := execer.ExecContext(ctx, "SET lock_configuration = true", nil); err != nil {
			return fmt.Errorf("lock configuration: %w", err)
		}
		configured.Store(true)
		return nil
	})
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	s.db = sql.OpenDB(connector)
	s.db.SetMaxOpenConns(o.Connections)
	s.db.SetMaxIdleConns(o.Connections)
	if err := s.db.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	if _, err := s.Refresh(ctx); err != nil {
		s.Close()
		return nil, err
	}
	// The functions a statement may call are read once per process (from
	// the list embedded): the first session pays for it, not its first
	// query.
	if _, err := builtins(); err != nil {
		s.Close()
		return nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	return s, nil
}

// ViewName is the view of a resource type: its name in snake case
// (MedicationRequest → medication_request).
func ViewName(resourceType string) string {
	var b strings.Builder
	for i, r := range resourceType {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func validViewName(n string) bool {
	if n == "" || n[0] < 'a' || n[0] > 'z' || strings.HasSuffix(n, "_all") || strings.HasPrefix(n, "resources") || len(n) > 128 {
		return false
	}
	for _, r := range n {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func validType(t string) bool {
	if t == "" || !unicode.IsUpper(rune(t[0])) || len(t) > 128 {
		return false
	}
	for _, r := range t {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// loadExtension is the statement that loads the extension file at path.
// allow_unsigned_extensions is never set, so DuckDB refuses a file whose
// signature does not verify, and a file built for another DuckDB version.
func loadExtension(path string) string {
	return fmt.Sprintf("LOAD '%s'", sqlString(path))
}

func sqlString(s string) string { return strings.ReplaceAll(s, "'", "''") }

// ErrNotReadOnly refuses a statement that is not a query. It matches
// ErrRefused.
var ErrNotReadOnly error = &refusal{"only SELECT statements are allowed"}

// ErrMultipleStatements refuses a text holding more than one statement. It
// matches ErrRefused.
var ErrMultipleStatements error = &refusal{"send one statement at a time"}

// Query runs one read-only statement (a SELECT) in the session. Anything
// else — COPY, ATTACH, SET, INSTALL, CREATE, EXPLAIN ANALYZE, several
// statements at once — is refused before anything runs, on top of the
// sandbox settings, and so is a SELECT that names a table, a table
// function or a function that is not allowed (allow.go): the refusal
// matches ErrRefused. Options.QueryTimeout bounds it until the rows are
// read.
func (s *Session) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := s.prepare(ctx, q); err != nil {
		return nil, err
	}
	if s.opts.QueryTimeout > 0 {
		// The rows outlive this call, so the deadline cannot be cancelled on
		// return: it fires on its own, at the latest after QueryTimeout.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		time.AfterFunc(s.opts.QueryTimeout, func() { cancel(ErrQueryTimeout) })
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	return rows, nil
}

// Run runs one read-only statement like Query and hands its rows to fn,
// within Options.QueryTimeout; the rows are closed when fn returns. args
// are the values of q's parameters.
func (s *Session) Run(ctx context.Context, q string, fn func(*sql.Rows) error, args ...any) error {
	if err := s.prepare(ctx, q); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	defer rows.Close()
	if err := fn(rows); err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	return nil
}

func (s *Session) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opts.QueryTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, s.opts.QueryTimeout, ErrQueryTimeout)
}

// queryError names a timeout as ErrQueryTimeout instead of DuckDB's
// "Interrupted!".
func queryError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(ctx), ErrQueryTimeout) {
		return ErrQueryTimeout
	}
	return err
}

// ErrViewsNotMade fails a statement whose views could not be made: the
// lake could not be read (catalog_units.go).
var ErrViewsNotMade = errors.New("the views could not be made")

// prepare refuses q unless it is allowed (checkStatement), then makes the
// views it names that are not made yet (ensure), within ctx: the caller's
// deadline, as for the session's refresh, not the query's own timeout.
func (s *Session) prepare(ctx context.Context, q string) error {
	named, err := s.checkNamed(ctx, q)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	return s.ensure(ctx, named)
}

func (s *Session) checkReadOnly(ctx context.Context, q string) error {
	_, err := s.checkNamed(ctx, q)
	return err
}

// checkNamed is checkStatement on a connection of its own; it returns the
// session's views q names.
func (s *Session) checkNamed(ctx context.Context, q string) ([]string, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var named []string
	err = conn.Raw(func(dc any) error {
		var err error
		named, err = s.checkStatement(ctx, dc, q)
		return err
	})
	return named, err
}

// checkStatement refuses q, on the driver connection dc and without running
// it, unless it is a single SELECT that uses only what allow.go allows.
// DuckDB's parser decides what the text holds, as it does when the text
// runs: one statement or several, a SELECT or another (EXPLAIN among them:
// EXPLAIN ANALYZE runs its statement). The text is not prepared as well:
// that binds its views, which costs more than the whole check
// (BenchmarkCheckStatement), and the query binds them again when it runs.
// It returns the session's views q names.
func (s *Session) checkStatement(ctx context.Context, dc any, q string) ([]string, error) {
	c, ok := dc.(driver.Conn)
	if !ok {
		return nil, errors.New("driver cannot prepare statements")
	}
	var tables []Table
	if cat := s.Catalog(); cat != nil {
		tables = cat.Tables
	}
	named, err := allowedViews(ctx, c, q, tables)
	var syntax *syntaxError
	if !errors.As(err, &syntax) {
		return named, err
	}
	// A syntax error is reported as DuckDB's parser words it, with the
	// place. Preparing a text that does not parse runs nothing; the
	// driver's PrepareContext would run every statement but the last of a
	// text that does, so Prepare, which refuses such a text, is used.
	st, perr := c.Prepare(q)
	if perr != nil {
		return nil, perr
	}
	st.Close()
	return nil, err
}

// Close ends the session and removes its spill directory.
func (s *Session) Close() error {
	var err error
	if s.db != nil {
		err = s.db.Close()
	}
	if s.pq != nil {
		err = errors.Join(err, s.pq.Close())
	}
	s.removeTemp()
	return err
}

func (s *Session) removeTemp() {
	if s.tempDir != "" {
		os.RemoveAll(s.tempDir)
	}
}

// Tenant is the tenant the session reads.
func (s *Session) Tenant() string { return s.tenant }

// Root is where the session may read: the lake's directory, or
// s3://bucket/prefix.
func (s *Session) Root() string { return s.root }

// ErrNoLake is returned when a tenant's lake directory does not exist.
var ErrNoLake = errors.New("no lake")

// Exists reports whether root looks like a tenant lake.
func Exists(root string) error {
	if _, err := os.Stat(root); err != nil {
		return fmt.Errorf("%w at %s: %w", ErrNoLake, root, err)
	}
	return nil
}
