package query

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TableInfo is one view with its columns and freshness.
type TableInfo struct {
	Table
	Columns []ColumnInfo `json:"columns"`
	// Freshness is the newest change the view has seen.
	Freshness Freshness `json:"freshness"`
}

// ColumnInfo is one column of a view.
type ColumnInfo struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Freshness is how recent a view's data is: the newest meta.lastUpdated
// and the newest ingest time of the changes of its resource type (all
// types for the resources views), deletes included. A mart is as fresh as
// its snapshot: AsOf is the snapshot's watermark.
type Freshness struct {
	LastUpdated *time.Time `json:"last_updated"`
	IngestTime  *time.Time `json:"ingest_time"`
	AsOf        *time.Time `json:"as_of,omitempty"`
}

// Describe lists the session's views with their columns and freshness.
// It makes every view first (ensure): their columns are DuckDB's.
func (s *Session) Describe(ctx context.Context) ([]TableInfo, error) {
	if err := s.ensureAll(ctx); err != nil {
		return nil, err
	}
	cat := s.Catalog()
	cols := map[string][]ColumnInfo{}
	err := s.internalQuery(ctx, `SELECT table_name, column_name, data_type FROM duckdb_columns()
		WHERE database_name = current_database() AND schema_name = 'main' ORDER BY table_name, column_index`,
		func(rows *sql.Rows) error {
			var table string
			var c ColumnInfo
			if err := rows.Scan(&table, &c.Name, &c.Type); err != nil {
				return err
			}
			cols[table] = append(cols[table], c)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("tenant %s: columns: %w", s.tenant, err)
	}
	byType := map[string]Freshness{}
	var all Freshness
	err = s.internalQuery(ctx, `SELECT resource_type, max(last_updated), max(ingest_time) FROM resources_all GROUP BY ALL`,
		func(rows *sql.Rows) error {
			var t sql.NullString
			var lu, it sql.NullTime
			if err := rows.Scan(&t, &lu, &it); err != nil {
				return err
			}
			f := Freshness{LastUpdated: timePtr(lu), IngestTime: timePtr(it)}
			byType[t.String] = f
			all.LastUpdated = later(all.LastUpdated, f.LastUpdated)
			all.IngestTime = later(all.IngestTime, f.IngestTime)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("tenant %s: freshness: %w", s.tenant, err)
	}
	out := make([]TableInfo, 0, len(cat.Tables))
	for _, t := range cat.Tables {
		info := TableInfo{Table: t, Columns: cols[t.Name]}
		switch {
		case t.Kind == "resources":
			info.Freshness = all
		case t.Kind == "mart":
			if cat.Snapshot != nil {
				wm := cat.Snapshot.Watermark.Modified.UTC()
				info.Freshness.AsOf = &wm
			}
		case t.ResourceType != "":
			info.Freshness = byType[t.ResourceType]
		}
		if info.Columns == nil {
			info.Columns = []ColumnInfo{}
		}
		out = append(out, info)
	}
	return out, nil
}

// internalQuery runs this package's own SQL (never a caller's), calling fn
// for each row.
func (s *Session) internalQuery(ctx context.Context, q string, fn func(*sql.Rows) error) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return queryError(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return queryError(ctx, rows.Err())
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

func later(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.After(*a)) {
		return b
	}
	return a
}
