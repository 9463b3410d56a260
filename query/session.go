// Package query opens tenant-scoped DuckDB sessions over a tenant's lake:
// one DuckDB instance per tenant, allowed to read that tenant's files only,
// with one deduplicated view per resource type.
package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/duckdb/duckdb-go/v2"
)

// Options bound a session.
type Options struct {
	// MemoryLimit such as "1GB". Default: 1GB.
	MemoryLimit string
	// Threads DuckDB may use. Default: 2.
	Threads int
}

// Session is one tenant's sandboxed DuckDB.
type Session struct {
	db     *sql.DB
	tenant string
	root   string
	// Types are the resource types present, sorted.
	Types []string
	// Views are the typed views present in the speed layer, sorted.
	Views []string
}

// RawGlob is where the raw-resource dataset lives inside a tenant root.
const RawGlob = "speed/resources/**/*.parquet"

// Open starts a session over the tenant's lake rooted at the local
// directory root. Before any query runs, DuckDB is limited to that
// directory, external access and extension loading are switched off, and
// the configuration is locked.
func Open(ctx context.Context, tenant, root string, o Options) (*Session, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("tenant %s lake: %w", tenant, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if o.MemoryLimit == "" {
		o.MemoryLimit = "1GB"
	}
	if o.Threads <= 0 {
		o.Threads = 2
	}
	hasData := false
	if matches, _ := filepath.Glob(filepath.Join(abs, "speed", "resources", "*", "*.parquet")); len(matches) > 0 {
		hasData = true
	}
	setup := []string{
		fmt.Sprintf("SET memory_limit = '%s'", sqlString(o.MemoryLimit)),
		fmt.Sprintf("SET threads = %d", o.Threads),
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET allow_community_extensions = false",
		fmt.Sprintf("SET allowed_directories = ['%s/']", sqlString(abs)),
		"SET enable_external_access = false",
	}
	connector, err := duckdb.NewConnector("", func(execer driver.ExecerContext) error {
		for _, s := range setup {
			if _, err := execer.ExecContext(ctx, s, nil); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	db := sql.OpenDB(connector)
	// One connection: the session's settings and views live on it.
	db.SetMaxOpenConns(1)
	s := &Session{db: db, tenant: tenant, root: abs}
	if err := s.createViews(ctx, hasData); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "SET lock_configuration = true"); err != nil {
		db.Close()
		return nil, fmt.Errorf("lock configuration: %w", err)
	}
	return s, nil
}

// rawColumns is the raw dataset's schema, used when the lake is still empty
// so that queries find their views and return no rows.
const rawColumns = `tenant VARCHAR, resource_type VARCHAR, id VARCHAR, version_id VARCHAR,
	last_updated TIMESTAMPTZ, operation VARCHAR, topic VARCHAR, "partition" INTEGER,
	"offset" BIGINT, ingest_time TIMESTAMPTZ, resource VARCHAR`

func (s *Session) createViews(ctx context.Context, hasData bool) error {
	var raw string
	if hasData {
		raw = fmt.Sprintf("CREATE VIEW resources_all AS SELECT * EXCLUDE (date) FROM read_parquet('%s/%s', hive_partitioning = true, union_by_name = true)",
			sqlString(s.root), RawGlob)
	} else {
		raw = "CREATE TABLE resources_all (" + rawColumns + ")"
	}
	stmts := []string{
		raw,
		// The latest version of each resource: by versionId (numerically when
		// it is a number), then lastUpdated, then Kafka offset. Duplicates from
		// a replayed range collapse here too.
		`CREATE VIEW resources_latest AS
		 SELECT * FROM resources_all
		 QUALIFY row_number() OVER (
		   PARTITION BY resource_type, id
		   ORDER BY TRY_CAST(version_id AS BIGINT) DESC NULLS LAST, version_id DESC NULLS LAST,
		            last_updated DESC NULLS LAST, "offset" DESC) = 1`,
		`CREATE VIEW resources AS SELECT * FROM resources_latest WHERE operation <> 'delete'`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("tenant %s: create view: %w", s.tenant, err)
		}
	}
	rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT resource_type FROM resources_all ORDER BY 1")
	if err != nil {
		return fmt.Errorf("tenant %s: resource types: %w", s.tenant, err)
	}
	var types []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		if validType(t) {
			types = append(types, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Strings(types)
	typed := map[string]bool{}
	for _, v := range s.viewDatasets() {
		// Rows of the latest version of each resource: the raw dataset
		// decides which version is latest (and whether it is deleted); the
		// view keeps that version's rows, one copy each.
		stmts := []string{
			fmt.Sprintf("CREATE VIEW %s_all AS SELECT * EXCLUDE (date) FROM read_parquet('%s/speed/%s/*/*.parquet', hive_partitioning = true, union_by_name = true)",
				v, sqlString(s.root), v),
			fmt.Sprintf(`CREATE VIEW %[1]s AS SELECT v.* FROM %[1]s_all v
			 JOIN resources_latest l ON l.resource_type = v._resource_type AND l.id = v._resource_id
			  AND l.operation = 'upsert' AND l.topic = v._topic AND l."partition" = v._partition
			  AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			 QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1`, v),
		}
		for _, q := range stmts {
			if _, err := s.db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("tenant %s: view %s: %w", s.tenant, v, err)
			}
		}
		typed[v] = true
		s.Views = append(s.Views, v)
	}
	for _, t := range types {
		if typed[ViewName(t)] {
			continue
		}
		q := fmt.Sprintf(`CREATE VIEW %s AS SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = '%s'`, ViewName(t), t)
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("tenant %s: view %s: %w", s.tenant, ViewName(t), err)
		}
	}
	s.Types = types
	return nil
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

// viewDatasets lists the view datasets under speed/ that hold files.
func (s *Session) viewDatasets() []string {
	entries, err := os.ReadDir(filepath.Join(s.root, "speed"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == "resources" || !validViewName(name) {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(s.root, "speed", name, "*", "*.parquet")); len(m) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func validViewName(n string) bool {
	if n == "" || n[0] < 'a' || n[0] > 'z' || strings.HasSuffix(n, "_all") || strings.HasPrefix(n, "resources") {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func validType(t string) bool {
	if t == "" || !unicode.IsUpper(rune(t[0])) {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func sqlString(s string) string { return strings.ReplaceAll(s, "'", "''") }

// ErrNotReadOnly refuses a statement that is not a query.
var ErrNotReadOnly = errors.New("only SELECT statements are allowed")

// Query runs one read-only statement (a SELECT) in the session. Anything
// else — COPY, ATTACH, SET, INSTALL, CREATE, EXPLAIN ANALYZE, several
// statements at once — is refused before it runs, on top of the sandbox
// settings.
func (s *Session) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := s.checkReadOnly(ctx, q); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	return rows, nil
}

func (s *Session) checkReadOnly(ctx context.Context, q string) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("driver cannot prepare statements")
		}
		st, err := pc.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return errors.New("driver returned an unknown statement type")
		}
		typ, err := ds.StatementType()
		if err != nil {
			return err
		}
		// EXPLAIN is refused too: EXPLAIN ANALYZE runs its statement.
		if typ != duckdb.STATEMENT_TYPE_SELECT {
			return ErrNotReadOnly
		}
		return nil
	})
}

// Close ends the session.
func (s *Session) Close() error { return s.db.Close() }

// Root is the directory the session may read.
func (s *Session) Root() string { return s.root }

// ErrNoLake is returned when a tenant's lake directory does not exist.
var ErrNoLake = errors.New("no lake")

// Exists reports whether root looks like a tenant lake.
func Exists(root string) error {
	if _, err := os.Stat(root); err != nil {
		return fmt.Errorf("%w at %s: %v", ErrNoLake, root, err)
	}
	return nil
}
