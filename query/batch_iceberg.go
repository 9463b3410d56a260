package query

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

	"fhirlake/lake"
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

// scanTables sets the tables the session reads the snapshot m through: the pointer
// at lake.IcebergKey when it names m's snapshot and every model of it, else none.
// A pointer that is not valid (a location outside the tenant's lake) is logged and
// left unread.
func (s *Session) scanTables(ctx context.Context, m *lake.Manifest) error {
	s.tables = nil
	src, ok := s.src.(*storeSource)
	if !ok || m == nil || !s.readsIceberg() {
		return nil
	}
	objs, err := src.store.List(ctx, lake.IcebergKey)
	if err != nil {
		return fmt.Errorf("read %s: %w", lake.IcebergKey, err)
	}
	found := false
	for _, o := range objs {
		found = found || o.Key == lake.IcebergKey
	}
	if !found {
		return nil
	}
	var buf bytes.Buffer
	if err := src.store.Get(ctx, lake.IcebergKey, &buf); err != nil {
		return fmt.Errorf("read %s: %w", lake.IcebergKey, err)
	}
	p, err := lake.DecodeIcebergPointer(buf.Bytes(), src.root)
	if err != nil {
		slog.Warn("the snapshot is read from its files, not its Iceberg tables", "tenant", s.tenant, "err", err)
		return nil
	}
	if p.SnapshotID != m.SnapshotID {
		return nil // the tables are behind: the next compaction brings them up
	}
	for _, model := range m.ModelNames() {
		if _, ok := p.Tables[model]; !ok {
			return nil
		}
	}
	s.tables = p
	return nil
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
