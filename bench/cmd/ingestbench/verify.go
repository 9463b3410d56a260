package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	_ "github.com/duckdb/duckdb-go/v2"
	"golang.org/x/sync/errgroup"

	"fhirlake/lake"
	"fhirlake/sink"
)

// countRows downloads the raw-dataset files of a run and counts, with
// DuckDB, their rows and the distinct Kafka records they hold: both must
// equal the records produced (one resource per notification).
func countRows(ctx context.Context, stores map[string]*sink.S3, objs map[string][]sink.Object, dir string) (rows, records int64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	n := 0
	for t, list := range objs {
		for _, o := range onlyDataset(list, lake.RawDataset) {
			n++
			dst := filepath.Join(dir, t+"-"+strings.ReplaceAll(path.Base(o.Key), "/", "_"))
			g.Go(func() error {
				f, err := os.Create(dst)
				if err != nil {
					return err
				}
				if err := stores[t].Get(gctx, o.Key, f); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			})
		}
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, 0, nil
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	q := fmt.Sprintf(`SELECT count(*), count(DISTINCT (partition, "offset")) FROM read_parquet('%s')`, filepath.Join(dir, "*.parquet"))
	if err := db.QueryRowContext(ctx, q).Scan(&rows, &records); err != nil {
		return 0, 0, fmt.Errorf("count rows: %w", err)
	}
	return rows, records, nil
}
