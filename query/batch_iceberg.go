package query

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"

	"fhirlake/lake"
	"fhirlake/sink"
)

// The batch snapshot read through its Iceberg tables (docs/format/iceberg.md, "The
// pointer"). Once the compactor has brought every table of a snapshot to it, it
// writes lake.IcebergKey naming each model's table metadata; a session on S3 with
// the iceberg and avro extensions reads each model of that snapshot with
// iceberg_scan of that exact metadata file, with the tenant's own key and nothing
// else (no catalog: it holds every tenant's namespace). The table applies a merged
// model's position deletes; a pointer behind the snapshot, absent or refused leaves
// the session reading the snapshot's files, as without the extensions.

// readsIceberg reports whether the session may read the snapshot's tables: a lake
// on S3 with both extensions.
func (s *Session) readsIceberg() bool {
	_, onS3 := s.src.(*storeSource)
	return onS3 && s.opts.IcebergExtension != "" && s.opts.AvroExtension != ""
}

// scanTables sets the tables the session reads the snapshot through, and returns the
// snapshot to read: with a valid pointer at lake.IcebergKey, the one it names, whose
// tables hold it whole. That is m, or, while the compactor's commits are behind
// _manifest/batch.json (a run that failed between its publication and its last
// table's commit), an earlier snapshot of m's history, read from its own manifest:
// with Iceberg, the tables' commits publish a snapshot to fhirlake's readers as to any
// engine, and the speed files newer than that snapshot's watermark are read beside
// it. Without a valid pointer, or with one naming a snapshot m does not descend from,
// the session reads m from its files. A pointer that is not valid (a location outside
// the tenant's lake) is logged.
func (s *Session) scanTables(ctx context.Context, m *lake.Manifest) (*lake.Manifest, error) {
	s.tables = nil
	src, ok := s.src.(*storeSource)
	if !ok || m == nil || !s.readsIceberg() {
		return m, nil
	}
	p, err := s.readPointer(ctx, src)
	if err != nil || p == nil {
		return m, err
	}
	at := m
	if p.SnapshotID != m.SnapshotID {
		if !slices.Contains(m.History, p.SnapshotID) {
			return m, nil
		}
		if at, err = src.snapshotManifest(ctx, p.SnapshotID); err != nil {
			slog.Warn("the snapshot is read from its files, not its Iceberg tables", "tenant", s.tenant, "err", err)
			return m, nil
		}
	}
	for _, model := range at.ModelNames() {
		if _, ok := p.Tables[model]; !ok {
			return m, nil
		}
	}
	s.tables = p
	return at, nil
}

// readPointer reads and checks the pointer; nil when there is none or it is refused.
func (s *Session) readPointer(ctx context.Context, src *storeSource) (*lake.IcebergPointer, error) {
	objs, err := src.store.List(ctx, lake.IcebergKey)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lake.IcebergKey, err)
	}
	if !slices.ContainsFunc(objs, func(o sink.Object) bool { return o.Key == lake.IcebergKey }) {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := src.store.Get(ctx, lake.IcebergKey, &buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", lake.IcebergKey, err)
	}
	p, err := lake.DecodeIcebergPointer(buf.Bytes(), src.root)
	if err != nil {
		slog.Warn("the snapshot is read from its files, not its Iceberg tables", "tenant", s.tenant, "err", err)
		return nil, nil
	}
	return p, nil
}

// icebergTable is the metadata file of model's table holding snapshot m, "" when the
// session reads m from its files.
func (s *Session) icebergTable(m *lake.Manifest, model string) string {
	if s.tables == nil || s.tables.SnapshotID != m.SnapshotID {
		return ""
	}
	return s.tables.Tables[model].MetadataLocation
}

// icebergScan reads a table at its metadata file.
func icebergScan(metadata string) string {
	return fmt.Sprintf("iceberg_scan('%s')", sqlString(metadata))
}

// icebergPositionsFrom is a table's rows with the columns positionExpr needs, as
// read_parquet over files (the model's base then delta files, as DuckDB reads
// them) gives them: file_index, the data file's index in files (a file the table
// names and files does not fails the query), and file_row_number. Rows the
// table's position deletes drop are not read.
func icebergPositionsFrom(metadata string, files []string) string {
	return fmt.Sprintf(`(SELECT *, coalesce(list_position(%s, filename) - 1,
					error('Iceberg table ' || %s || ' reads a file the snapshot does not name: ' || filename))::BIGINT AS file_index,
				file_row_number FROM %s)`,
		fileList(files), "'"+sqlString(metadata)+"'", icebergScan(metadata))
}
