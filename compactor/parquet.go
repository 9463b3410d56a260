package compactor

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// parquetRows returns the row count of each local Parquet file, read from the
// footers. An unreadable or truncated file is an error.
func parquetRows(ctx context.Context, paths []string) (map[string]int64, error) {
	if len(paths) == 0 {
		return map[string]int64{}, nil
	}
	db, err := openDuckDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	quoted := make([]string, len(paths))
	for i, p := range paths {
		quoted[i] = sqlString(p)
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf(
		"SELECT file_name, sum(num_rows) FROM parquet_file_metadata([%s]) GROUP BY file_name", strings.Join(quoted, ", ")))
	if err != nil {
		return nil, fmt.Errorf("read parquet footers: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int64, len(paths))
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range paths {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("%s: no parquet metadata", p)
		}
	}
	return out, nil
}

// openDuckDB opens an in-memory DuckDB that loads no extension.
func openDuckDB() (*sql.DB, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false"); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
