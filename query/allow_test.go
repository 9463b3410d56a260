package query

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

// allowSession opens a session over a lake with a batch snapshot (so that
// schema lake holds helper tables beside the views), patients changed
// beside it (five live ones, two female) and two observations. It returns the session and the lake's
// root.
func allowSession(t testing.TB) (*Session, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "acme")
	querytest.WriteChanges(t, root, "acme", before)
	publishSnapshot(t, root, "20260101T000000Z-allow1", time.Now().Add(-time.Hour).UTC(), 1)
	querytest.WriteChanges(t, root, "acme", after)
	obs := func(id string, offset int64, patient, code string, value int) change {
		return change{Type: "Observation", ID: id, Version: "1", Offset: offset, Fields: `"status":"final",` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"` + code + `","display":"Heart rate"}]},` +
			`"subject":{"reference":"Patient/` + patient + `"},"effectiveDateTime":"2026-01-01T00:00:00Z",` +
			`"valueQuantity":{"value":` + strconv.Itoa(value) + `}`}
	}
	querytest.WriteChanges(t, root, "acme", []change{obs("o1", 20, "p1", "8867-4", 7), obs("o2", 21, "p4", "2339-0", 9)})
	s, err := Open(context.Background(), "acme", root, Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Root()
}

// runAll runs q through the session as fhirlake query and the server do,
// reading every row.
func runAll(s *Session, q string, args ...any) (int, error) {
	rows, err := s.Query(context.Background(), q, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return n, err
	}
	return n, rows.Close()
}

// lakeFiles lists every file under root with its size and time.
func lakeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %s", p, info.Size(), info.ModTime()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestRefusedStatements: what a hostile tenant tried through the query
// server is refused before it runs, with an error that matches ErrRefused,
// names the function, table or statement (never a path of the lake), and
// leaves the lake and the session as they were.
func TestRefusedStatements(t *testing.T) {
	s, root := allowSession(t)
	before := lakeFiles(t, root)
	for _, c := range []struct{ name, sql, want string }{
		// Table functions that write, log or configure.
		{"enable_logging to a file of the lake", "SELECT * FROM enable_logging(storage = 'file', storage_path = '" + root + "/speed/x.txt')", `table function "enable_logging"`},
		{"enable_profiling over the manifest", "SELECT * FROM enable_profiling(format = 'json', save_location = '" + root + "/_manifest/batch.json')", `table function "enable_profiling"`},
		{"write_log", "SELECT write_log('x', level := 'error', log_type := 'x') FROM range(1000)", `function "write_log"`},
		{"write_log qualified, in upper case", `SELECT "MAIN"."WRITE_LOG"('x')`, `function "main.write_log"`},
		{"write_log in a subquery of a CTE", "WITH c AS (SELECT (SELECT write_log('x')) AS w) SELECT * FROM c", `function "write_log"`},
		{"truncate_duckdb_logs", "SELECT * FROM truncate_duckdb_logs()", `table function "truncate_duckdb_logs"`},
		// What reveals the settings, the catalog and its SQL.
		{"current_setting", "SELECT current_setting('allowed_directories')", `function "current_setting"`},
		{"current_setting qualified by system", "SELECT system.main.current_setting('temp_directory')", `function "system.main.current_setting"`},
		{"current_setting quoted", `SELECT "Current_Setting"('temp_directory')`, `function "current_setting"`},
		{"getvariable", "SELECT getvariable('x')", `function "getvariable"`},
		{"json_serialize_plan of a view", "SELECT json_serialize_plan('SELECT * FROM patient')", `function "json_serialize_plan"`},
		{"duckdb_views()", "SELECT sql FROM duckdb_views()", `table function "duckdb_views"`},
		{"duckdb_views, the view", "SELECT * FROM duckdb_views", `table "duckdb_views"`},
		{"duckdb_settings()", "SELECT * FROM duckdb_settings()", `table function "duckdb_settings"`},
		{"duckdb_tables()", "SELECT * FROM duckdb_tables()", `table function "duckdb_tables"`},
		{"duckdb_secrets()", "SELECT * FROM duckdb_secrets()", `table function "duckdb_secrets"`},
		{"pragma_ table function", "SELECT * FROM pragma_table_info('patient')", `table function "pragma_table_info"`},
		{"information_schema", "SELECT * FROM information_schema.tables", `table "information_schema.tables"`},
		{"pg_catalog", "SELECT * FROM pg_catalog.pg_settings", `table "pg_catalog.pg_settings"`},
		{"sqlite_master", "SELECT * FROM sqlite_master", `table "sqlite_master"`},
		{"current_database through pg_catalog", "SELECT pg_catalog.current_database()", `function "pg_catalog.current_database"`},
		{"a macro over duckdb_views", "SELECT pg_get_viewdef(0)", `function "pg_get_viewdef"`},
		{"a macro over a refused function", "SELECT current_catalog()", `function "current_catalog"`},
		{"a table macro over duckdb_settings", "SELECT * FROM duckdb_profiling_settings()", `table function "duckdb_profiling_settings"`},
		{"a keyword the binder calls", "SELECT current_schema", `function "current_schema"`},
		// Files: listing and reading, whatever the path.
		{"glob of the lake", "SELECT * FROM glob('" + root + "/speed/*')", `table function "glob"`},
		{"glob of the spill directory", "SELECT * FROM glob('.tmp/*')", `table function "glob"`},
		{"read_parquet of an absolute path", "SELECT * FROM read_parquet('" + root + "/speed/resources/*/*.parquet')", `table function "read_parquet"`},
		{"read_parquet of s3 with ..", "SELECT * FROM read_parquet('s3://a/../b/speed/resources/x.parquet')", `table function "read_parquet"`},
		{"read_text", "SELECT * FROM read_text('/etc/hostname')", `table function "read_text"`},
		{"read_blob", "SELECT * FROM read_blob('" + root + "/_manifest/batch.json')", `table function "read_blob"`},
		{"read_csv in a scalar subquery", "SELECT (SELECT count(*) FROM read_csv('/etc/passwd'))", `table function "read_csv"`},
		{"a file name as a table", "SELECT * FROM 'speed/resources/x.parquet'", `table "speed/resources/x.parquet"`},
		{"query()", "SELECT * FROM query('SELECT 1')", `table function "query"`},
		{"query_table()", "SELECT * FROM query_table('lake.drop_patient')", `table function "query_table"`},
		// The catalog's helper tables.
		{"a lake helper table", "SELECT count(*) FROM lake.drop_patient", `table "lake.drop_patient"`},
		{"a lake helper table quoted", `SELECT * FROM "LAKE"."batch_patient"`, `table "lake.batch_patient"`},
		{"a lake helper table in a join", "SELECT count(*) FROM patient JOIN lake.winners w USING (id)", `table "lake.winners"`},
		{"SUMMARIZE of a lake helper table", "SUMMARIZE lake.changed", `table "lake.changed"`},
		// CTE names are in scope only where DuckDB binds them.
		{"a CTE's body naming itself", "WITH duckdb_views AS (SELECT * FROM duckdb_views) SELECT * FROM duckdb_views", `table "duckdb_views"`},
		{"a CTE out of its scope", "SELECT * FROM (WITH duckdb_views AS (SELECT 1 AS one) SELECT * FROM duckdb_views), duckdb_views", `table "duckdb_views"`},
		{"a CTE naming a later one", "WITH a AS (SELECT * FROM duckdb_tables), duckdb_tables AS (SELECT 1) SELECT * FROM a", `table "duckdb_tables"`},
		// Statements other than one SELECT.
		{"CREATE SECRET", "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')", "only SELECT"},
		{"DROP SECRET", "DROP SECRET IF EXISTS s", "only SELECT"},
		{"SET", "SET threads = 8", "only SELECT"},
		{"RESET", "RESET memory_limit", "only SELECT"},
		{"PRAGMA", "PRAGMA enable_profiling", "only SELECT"},
		{"ATTACH", "ATTACH ':memory:' AS m", "only SELECT"},
		{"COPY", "COPY (SELECT 1) TO '" + root + "/speed/out.csv'", "only SELECT"},
		{"CALL", "CALL pragma_version()", "only SELECT"},
		{"EXPLAIN ANALYZE", "EXPLAIN ANALYZE SELECT 1", "only SELECT"},
		{"SHOW TABLES", "SHOW TABLES", `statement "SHOW"`},
		{"SHOW ALL TABLES", "SHOW ALL TABLES", `statement "SHOW"`},
		{"two statements", "SELECT 1; SELECT 2", "one statement"},
		{"a COPY before a SELECT", "COPY (SELECT 1) TO '" + root + "/speed/out.csv'; SELECT 1", "only SELECT"},
		{"a comment only", "-- the panel's query", "empty statement"},
		{"a block comment only", "/* nothing */", "empty statement"},
		{"spaces only", " \n\t", "empty statement"},
		{"empty", "", "empty statement"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := runAll(s, c.sql)
			if err == nil {
				t.Fatalf("%s: got %d rows, want a refusal", c.sql, n)
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%s: got %v, want ErrRefused", c.sql, err)
			}
			var re *RefusedError
			if errors.As(err, &re) && !errors.Is(err, ErrNotReadOnly) {
				t.Errorf("%s: a RefusedError does not match ErrNotReadOnly", c.sql)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(strings.ReplaceAll(msg, c.sql, ""), root) {
				t.Errorf("%s: got %q, want it to say %s and no path of the lake", c.sql, msg, c.want)
			}
		})
	}
	if got := lakeFiles(t, root); !slices.Equal(got, before) {
		t.Errorf("the lake changed under the refusals:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 5 {
		t.Errorf("after the refusals: got %d patients, want 5", got)
	}
}

// TestRefusedLogging: the refused enable_logging (which, run, broke the
// session and aborted the process when it closed) leaves the session
// answering, and closing it cleanly.
func TestRefusedLogging(t *testing.T) {
	s, root := allowSession(t)
	for range 2 {
		if _, err := runAll(s, "SELECT * FROM enable_logging(storage = 'file', storage_path = '"+root+"/speed/x.txt')"); !errors.Is(err, ErrRefused) {
			t.Fatalf("got %v, want a refusal", err)
		}
		if got := count(t, s, "SELECT count(*) FROM observation"); got != 2 {
			t.Fatalf("got %d observations, want 2", got)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "speed", "x.txt")); err == nil {
		t.Error("the log file was written")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAllowedStatements: dashboard queries pass the check and run, through
// Query and, in Arrow, through Export.
func TestAllowedStatements(t *testing.T) {
	s, _ := allowSession(t)
	cases := []struct{ name, sql string }{
		{"join of views", "SELECT p.id, count(o.id) AS n FROM patient p LEFT JOIN observation o ON o.patient_id = p.id GROUP BY ALL ORDER BY ALL"},
		{"view in schema main, any case", "SELECT count(*) FROM MAIN.Patient"},
		{"marts and raw views", "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM resources_all), (SELECT count(*) FROM patient_all)"},
		{"CTEs", "WITH f AS (SELECT * FROM patient WHERE gender = 'female'), g AS (SELECT id FROM f) SELECT count(*) FROM g"},
		{"a CTE named like DuckDB's views", "WITH duckdb_views AS (SELECT 1 AS one) SELECT one FROM (SELECT * FROM duckdb_views)"},
		{"recursive CTE", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT sum(i) FROM n"},
		{"window functions", "SELECT id, row_number() OVER (PARTITION BY gender ORDER BY id) AS rn, lag(id) OVER w AS prev, sum(1) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM patient WINDOW w AS (ORDER BY id)"},
		{"QUALIFY", "SELECT id, gender FROM patient QUALIFY row_number() OVER (PARTITION BY gender ORDER BY id) = 1"},
		{"date_trunc and strftime", "SELECT strftime(date_trunc('month', effective), '%Y-%m') AS month, count(*) FROM observation GROUP BY 1"},
		{"list functions and lambdas", "SELECT list_sum([1, 2, 3]), list_transform([1, 2], x -> x * 2), list_filter(list(id), lambda x: x LIKE 'p%'), list_sort(list(gender)), len(list_distinct(list(gender))), [x * 2 FOR x IN [1, 2] IF x > 1] FROM patient"},
		{"range", "SELECT d::DATE AS day FROM range(TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-08', INTERVAL 1 DAY) t(d)"},
		{"unnest and generate_series", "SELECT * FROM generate_series(1, 3) s(i), unnest(['a', 'b']) u(c)"},
		{"unnest in the select list", "SELECT unnest([1, 2, 3]) AS x, unlist(['a', 'b', 'c']) AS y"},
		{"JSON of resources", "SELECT resource->>'gender' AS gender, count(*) FILTER (WHERE resource->>'$.gender' = 'female') AS f, json_extract_string(resource, '$.id') IS NOT NULL FROM resources WHERE resource_type = 'Patient' GROUP BY ALL"},
		{"json_each over a resource", "SELECT j.key, count(*) FROM resources r, json_each(r.resource) j WHERE r.resource_type = 'Patient' GROUP BY 1"},
		{"PIVOT", "PIVOT patient ON gender IN ('male', 'female') USING count(*)"},
		{"UNPIVOT in FROM", "SELECT * FROM (UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v)"},
		{"VALUES", "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(n, s)"},
		{"FROM first", "FROM patient SELECT count(*)"},
		{"FROM alone", "FROM patient LIMIT 1"},
		{"set operations", "SELECT id FROM patient UNION ALL SELECT id FROM observation EXCEPT SELECT 'p9' INTERSECT SELECT 'p1'"},
		{"LATERAL", "SELECT p.id, o.n FROM patient p, LATERAL (SELECT count(*) AS n FROM observation WHERE patient_id = p.id) o"},
		{"subqueries", "SELECT id FROM patient WHERE id IN (SELECT patient_id FROM observation) AND EXISTS (SELECT 1 FROM observation) AND gender = ANY (SELECT gender FROM patient)"},
		{"COLUMNS", "SELECT min(COLUMNS(c -> c LIKE '%id')), max(COLUMNS(* EXCLUDE (effective, issued, value_date_time, _ingest_time, _last_updated))) FROM observation"},
		{"built-in macros", "SELECT nullif(gender, 'male'), ifnull(gender, '?'), list_max([1, 2]), array_to_string(['a', 'b'], ','), split_part('a,b', ',', 2), ago(INTERVAL 1 DAY) < now(), date_add(DATE '2026-01-01', INTERVAL 1 DAY) FROM patient"},
		{"JSON aggregate macros", "SELECT json_group_array(id), json_group_object(id, gender) FROM patient"},
		{"clocks and random", "SELECT now() > TIMESTAMPTZ '2020-01-01', current_date, current_timestamp, localtimestamp, today(), random() < 2, gen_random_uuid() IS NOT NULL, uuidv7() IS NOT NULL, user, current_user"},
		{"built-ins qualified", "SELECT main.upper('a'), system.main.lower('B'), pg_catalog.pg_typeof(1)"},
		{"casts", "SELECT CAST(value_quantity AS DOUBLE), value_quantity::DECIMAL(10, 2), TRY_CAST('x' AS INT), [1, 2]::INT[], {'a': 1}::STRUCT(a INT), '{\"a\":1}'::JSON->>'a' FROM observation"},
		{"aggregates", "SELECT histogram(gender), mode(gender), approx_count_distinct(p.id), quantile_cont(value_quantity, 0.5), arg_max(o.id, effective), string_agg(p.id, ',' ORDER BY p.id) FROM patient p, observation o"},
		{"strings", "SELECT regexp_extract(id, '[0-9]+'), concat_ws('-', id, gender), format('{}:{}', id, gender), md5(id), lower(gender) COLLATE nocase FROM patient"},
		{"DESCRIBE", "DESCRIBE patient"},
		{"SUMMARIZE", "SUMMARIZE SELECT gender FROM patient"},
		{"LIMIT, OFFSET and ORDER BY", "SELECT DISTINCT ON (gender) gender, id FROM patient ORDER BY gender, id DESC NULLS LAST LIMIT 10 OFFSET 0"},
		{"GROUPING SETS", "SELECT gender, count(*), grouping(gender) FROM patient GROUP BY ROLLUP (gender)"},
		{"a comment before the SELECT", "-- the panel\nSELECT 1 /* one */"},
	}
	for _, q := range dashboardQueries {
		cases = append(cases, struct{ name, sql string }{"dashboard: " + q.name, q.sql})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := runAll(s, c.sql); err != nil {
				t.Fatalf("%s: %v", c.sql, err)
			}
			if _, err := s.Export(context.Background(), io.Discard, c.sql, "arrow", ExportOptions{}); err != nil {
				t.Fatalf("%s as Arrow: %v", c.sql, err)
			}
		})
	}
	t.Run("parameters", func(t *testing.T) {
		if n, err := runAll(s, "SELECT id FROM patient WHERE gender = ? AND id <> ?", "female", "p0"); err != nil || n != 2 {
			t.Fatalf("got %d rows, %v; want 2", n, err)
		}
	})
}

// TestSyntaxError: a text DuckDB cannot parse fails with DuckDB's own
// message, not as a refusal.
func TestSyntaxError(t *testing.T) {
	s, _ := allowSession(t)
	_, err := runAll(s, "SELEC 1")
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "Parser Error") {
		t.Fatalf("got %v, want DuckDB's parser error", err)
	}
}

// TestBuiltinFunctions: the functions DuckDB has built in are allowed by
// the rule, those that write, log, sleep, or read settings, the catalog or
// the session are not, and a macro is as allowed as its body.
// testdata/allowed_functions.txt lists every function allowed, so that a
// DuckDB upgrade shows what it adds (go test -update rewrites it).
func TestBuiltinFunctions(t *testing.T) {
	allowed, err := loadBuiltins(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"write_log", "current_setting", "getvariable", "version", "current_database", "current_schema",
		"current_schemas", "current_query", "current_connection_id", "txid_current", "in_search_path",
		"json_serialize_plan", "json_serialize_sql", "sleep_ms", "setseed", "nextval", "stats",
		// Macros over refused functions or catalog functions.
		"pg_sleep", "current_catalog", "pg_get_viewdef", "format_type", "get_block_size",
		// Table functions are not called in expressions.
		"enable_logging", "enable_profiling", "glob", "read_parquet", "duckdb_views", "query",
	} {
		if allowed[name] {
			t.Errorf("%s is allowed, want it refused", name)
		}
	}
	for _, name := range []string{
		"date_trunc", "strftime", "list_transform", "->>", "json_extract_string", "count_star", "row_number",
		"arg_max", "now", "current_date", "get_current_timestamp", "random", "gen_random_uuid", "error",
		// Macros over allowed functions.
		"nullif", "list_sum", "ago", "user", "json_group_object", "pg_typeof",
	} {
		if !allowed[name] {
			t.Errorf("%s is refused, want it allowed", name)
		}
	}
	var names []string
	for name, ok := range allowed {
		if ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	got := strings.Join(names, "\n") + "\n"
	golden := filepath.Join("testdata", "allowed_functions.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("the allowed functions changed (review the diff, then go test -update):\n%s", lineDiff(string(want), got))
	}
	// Sessions check statements against the list embedded in the binary,
	// which must be the rule's answer for the DuckDB linked in.
	embedded, err := builtins()
	if err != nil {
		t.Fatal(err)
	}
	var inBinary []string
	for name := range embedded {
		inBinary = append(inBinary, name)
	}
	sort.Strings(inBinary)
	if !slices.Equal(inBinary, names) && !*update {
		t.Errorf("the sessions' list differs from the rule's answer:\n%s", lineDiff(strings.Join(inBinary, "\n"), strings.Join(names, "\n")))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// BenchmarkCheckStatement measures what the check costs a query: DuckDB's
// parse and the allowlist on a connection (allow), the same with a
// connection taken from the session's pool and given back, as a query pays
// it (check), and, to compare, preparing the statement (prepare), which is
// what the check did before the allowlist.
func BenchmarkCheckStatement(b *testing.B) {
	s, _ := allowSession(b)
	ctx := context.Background()
	if _, err := builtins(); err != nil {
		b.Fatal(err)
	}
	for _, q := range dashboardQueries {
		b.Run("allow/"+q.name, func(b *testing.B) {
			onConn(b, s, func(c driver.Conn) {
				for b.Loop() {
					if err := checkAllowed(ctx, c, q.sql, s.Catalog().Tables); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("prepare/"+q.name, func(b *testing.B) {
			onConn(b, s, func(c driver.Conn) {
				for b.Loop() {
					st, err := c.Prepare(q.sql)
					if err != nil {
						b.Fatal(err)
					}
					st.Close()
				}
			})
		})
		b.Run("check/"+q.name, func(b *testing.B) {
			for b.Loop() {
				if err := s.checkReadOnly(ctx, q.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func onConn(b *testing.B, s *Session, fn func(driver.Conn)) {
	b.Helper()
	conn, err := s.db.Conn(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error { fn(dc.(driver.Conn)); return nil }); err != nil {
		b.Fatal(err)
	}
}
