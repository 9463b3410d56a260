package compactor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"fhirlake/lake"
	"fhirlake/sink"
)

// Table is a small result to print.
type Table struct {
	Title   string
	Columns []string
	Rows    [][]string
}

// Write prints the table with aligned columns.
func (t *Table) Write(w io.Writer) error {
	if t.Title != "" {
		if _, err := fmt.Fprintln(w, t.Title); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.Columns, "\t"))
	for _, r := range t.Rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// CompactLocalLake compacts every tenant of a local-directory lake (<lake>/<tenant>,
// as `fhirlake demo` writes it) with the dbt that FindDBT finds, runs in workDir, and
// returns the per-tenant results and a summary of the first tenant's encounter_summary
// mart by encounter type. The speed layer must be complete (the consumer stopped):
// nothing is deferred. Without dbt it returns ErrNoDBT.
func CompactLocalLake(ctx context.Context, lake, workDir string, tenants []string, log *slog.Logger) (*Table, []*Result, error) {
	if len(tenants) == 0 {
		return nil, nil, errors.New("no tenants")
	}
	path := FindDBT()
	if path == "" {
		return nil, nil, ErrNoDBT
	}
	runner, err := NewDBT(DBT{Path: path})
	if err != nil {
		return nil, nil, err
	}
	o := DefaultOptions()
	o.WorkDir, o.ConsistencyDelay, o.Expire.SpeedRetention = workDir, 0, 0
	c, err := New(runner, o, nil, log)
	if err != nil {
		return nil, nil, err
	}
	ts := make([]Tenant, len(tenants))
	for i, name := range tenants {
		store, err := sink.NewLocal(filepath.Join(lake, name))
		if err != nil {
			return nil, nil, err
		}
		ts[i] = Tenant{Name: name, Store: store, Lake: store.Root}
	}
	results, err := c.CompactAll(ctx, ts)
	if err != nil {
		return nil, results, err
	}
	first := results[0]
	if first == nil || first.Models["encounter_summary"].Files == nil {
		return nil, results, fmt.Errorf("tenant %s: no encounter_summary in its snapshot", tenants[0])
	}
	from, err := resultModelSQL(ts[0].Lake, first, "encounter_summary")
	if err != nil {
		return nil, results, err
	}
	t, err := encounterSummary(ctx, from)
	if err != nil {
		return nil, results, err
	}
	t.Title = fmt.Sprintf("encounter_summary of %s (batch snapshot %s), by encounter type:", tenants[0], first.SnapshotID)
	return t, results, nil
}

// resultModelSQL is model of the snapshot res published as one relation for DuckDB,
// read as every reader reads it: merged on read when an incremental run wrote it.
func resultModelSQL(root string, res *Result, model string) (string, error) {
	m := &lake.Manifest{SnapshotID: res.SnapshotID, Models: res.Models}
	return m.ModelSQL(root, model)
}

// encounterSummary aggregates the relation from (encounter_summary) the way a
// dashboard tile would.
func encounterSummary(ctx context.Context, from string) (*Table, error) {
	db, err := openDuckDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	q := fmt.Sprintf(`SELECT coalesce(type_display, '(none)'), count(*)::VARCHAR,
		coalesce(round(avg(length_of_stay_hours), 1)::VARCHAR, ''),
		round(avg(observation_count), 1)::VARCHAR,
		round(100.0 * count(*) FILTER (WHERE diagnosis_count > 0) / count(*), 1)::VARCHAR || '%%',
		sum(medication_request_count)::VARCHAR
		FROM %s GROUP BY 1 ORDER BY count(*) DESC, 1`, from)
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read encounter_summary: %w", err)
	}
	defer rows.Close()
	t := &Table{Columns: []string{"encounter type", "encounters", "avg stay (h)", "avg observations", "with diagnosis", "medication orders"}}
	for rows.Next() {
		r := make([]sql.NullString, len(t.Columns))
		ptrs := make([]any, len(r))
		for i := range r {
			ptrs[i] = &r[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(r))
		for i, v := range r {
			row[i] = v.String
		}
		t.Rows = append(t.Rows, row)
	}
	return t, rows.Err()
}
