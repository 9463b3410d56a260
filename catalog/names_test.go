package catalog_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	icecat "github.com/apache/iceberg-go/catalog"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	"github.com/apache/iceberg-go/table"
	"github.com/uptrace/bun/driver/sqliteshim"

	"fhirlake/catalog"
	"fhirlake/lake"
)

// icebergReserved are the names Iceberg gives its metadata columns (Java's
// MetadataColumns): an engine reads the metadata column where a table's own column
// bears one of them, and Spark refuses the table.
var icebergReserved = []string{"_file", "_pos", "_deleted", "_spec_id", "_partition",
	"_row_id", "_last_updated_sequence_number", "_change_type", "_change_ordinal", "_commit_snapshot_id"}

// patientSchema is a view dataset's schema: the lineage columns and one view column.
var patientSchema = arrow.NewSchema(append(lake.ViewLineage(),
	arrow.Field{Name: "gender", Type: arrow.BinaryTypes.String, Nullable: true}), nil)

// writeView writes a patient view speed file of n rows on Kafka partition 3 through
// DuckDB, as the consumer does: its lineage column is named _partition.
func (l *lakeDir) writeView(first, n int) catalog.File {
	l.t.Helper()
	key := lake.Key("patient", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "fhir.notifications", 3, int64(first), int64(first+n-1))
	path := filepath.Join(l.root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		l.t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf(`COPY (SELECT 'acme' AS _tenant, 'Patient' AS _resource_type, 'p' || i AS _resource_id,
		'1' AS _version_id, TIMESTAMPTZ '2026-01-02 00:00:00+00' AS _last_updated,
		'fhir.notifications' AS _topic, 3::INTEGER AS _partition, i::BIGINT AS _offset,
		TIMESTAMPTZ '2026-01-02 00:00:01+00' AS _ingest_time, 0::INTEGER AS _row, 'female' AS gender
		FROM range(%d, %d) t(i)) TO '%s' (FORMAT parquet, COMPRESSION zstd)`, first, first+n, path)
	if _, err := db.Exec(q); err != nil {
		l.t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		l.t.Fatal(err)
	}
	return catalog.File{Location: path, Size: st.Size(), Modified: st.ModTime()}
}

// kafkaPartition is the view tables' name of the lineage column _partition.
const kafkaPartition = "_kafka_partition"

// partitions scans the table with iceberg-go and returns its _kafka_partition values.
func partitions(t *testing.T, tbl *table.Table) []int32 {
	t.Helper()
	at, err := tbl.Scan(table.WithSelectedFields(kafkaPartition)).ToArrowTable(context.Background())
	if err != nil {
		t.Fatalf("scan %s: %v", tbl.Identifier(), err)
	}
	defer at.Release()
	var out []int32
	for _, chunk := range at.Column(0).Data().Chunks() {
		col := chunk.(*array.Int32)
		for i := 0; i < col.Len(); i++ {
			if col.IsNull(i) {
				t.Fatalf("%s: a null %s, want the files' _partition", tbl.Identifier(), kafkaPartition)
			}
			out = append(out, col.Value(i))
		}
	}
	return out
}

func TestTableSchemasHaveNoReservedNames(t *testing.T) {
	ctx := context.Background()
	c := newLake(t).open(ctx)
	for name, s := range map[string]*arrow.Schema{lake.RawDataset: lake.RawSchema, "patient": patientSchema} {
		tbl, err := c.Table(ctx, name, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range tbl.Schema().Fields() {
			if slices.Contains(icebergReserved, f.Name) {
				t.Errorf("table %s: column %d is named %s, which Iceberg reserves", name, f.ID, f.Name)
			}
		}
	}
}

// TestViewFileReadsUnderTheTableName: a view file as the consumer writes it (with
// _partition) registers, and its Kafka partition reads back as _kafka_partition.
func TestViewFileReadsUnderTheTableName(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	tbl, err := l.open(ctx).Table(ctx, "patient", patientSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, tbl, err = catalog.Sync(ctx, tbl, []catalog.File{l.writeView(0, 3)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := partitions(t, tbl); fmt.Sprint(got) != "[3 3 3]" {
		t.Fatalf("%s read back %v, want [3 3 3]", kafkaPartition, got)
	}
}

// TestTableWithReservedNameIsRenamed: a view table made before the rename, holding a
// file, is given the new name when loaded, keeps reading its file and registers more.
func TestTableWithReservedNameIsRenamed(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	old := l.open(ctx) // makes the namespace
	old.Close()

	// the table as an earlier fhirlake made it: the lake's names, files added by name
	cat, err := icecat.Load(ctx, "fhirlake", iceberg.Properties{
		"type": "sql", "uri": l.db, sqlcat.DriverKey: sqliteshim.ShimName, sqlcat.DialectKey: string(sqlcat.SQLite),
		sqlcat.SchemaVersionKey: sqlcat.SchemaVersionV1, "warehouse": filepath.Join(l.root, "_iceberg"),
	})
	if err != nil {
		t.Fatal(err)
	}
	nullable := make([]arrow.Field, 0, patientSchema.NumFields())
	for _, f := range patientSchema.Fields() {
		f.Nullable = true
		nullable = append(nullable, f)
	}
	sc, err := table.ArrowSchemaToIcebergWithFreshIDs(arrow.NewSchema(nullable, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.CreateTable(ctx, table.Identifier{"acme", "patient"}, sc,
		icecat.WithLocation(filepath.Join(l.root, "_iceberg", "acme", "patient")),
		icecat.WithProperties(iceberg.Properties{"format-version": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	a := l.writeView(0, 2)
	txn := tbl.NewTransaction()
	if err := txn.AddFiles(ctx, []string{a.Location}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	cat.(interface{ Close() error }).Close()

	tbl, err = l.open(ctx).Table(ctx, "patient", patientSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tbl.Schema().Fields() {
		if slices.Contains(icebergReserved, f.Name) {
			t.Errorf("loaded table: column %d is still named %s", f.ID, f.Name)
		}
	}
	if got := partitions(t, tbl); fmt.Sprint(got) != "[3 3]" {
		t.Fatalf("renamed table read back %v, want [3 3]", got)
	}
	if _, tbl, err = catalog.Sync(ctx, tbl, []catalog.File{a, l.writeView(2, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := partitions(t, tbl); fmt.Sprint(got) != "[3 3 3]" {
		t.Fatalf("after another file: %v, want [3 3 3]", got)
	}
}
