package lake

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/flatten"
)

func TestRawSchema(t *testing.T) {
	want := []struct {
		name     string
		typ      arrow.DataType
		nullable bool
	}{
		{ColTenant, arrow.BinaryTypes.String, false},
		{ColResourceType, arrow.BinaryTypes.String, false},
		{ColID, arrow.BinaryTypes.String, false},
		{ColVersionID, arrow.BinaryTypes.String, true},
		{ColLastUpdated, timestampUTC, true},
		{ColOperation, arrow.BinaryTypes.String, false},
		{ColTopic, arrow.BinaryTypes.String, false},
		{ColPartition, arrow.PrimitiveTypes.Int32, false},
		{ColOffset, arrow.PrimitiveTypes.Int64, false},
		{ColIngestTime, timestampUTC, false},
		{ColResource, arrow.BinaryTypes.String, true},
	}
	if RawSchema.NumFields() != len(want) {
		t.Fatalf("fields: got %d, want %d", RawSchema.NumFields(), len(want))
	}
	for i, w := range want {
		f := RawSchema.Field(i)
		if f.Name != w.name || !arrow.TypeEqual(f.Type, w.typ) || f.Nullable != w.nullable {
			t.Errorf("field %d: got %s %s nullable=%v, want %s %s nullable=%v", i, f.Name, f.Type, f.Nullable, w.name, w.typ, w.nullable)
		}
	}
}

func TestRawColumnsSQL(t *testing.T) {
	const want = `"tenant" VARCHAR, "resource_type" VARCHAR, "id" VARCHAR, "version_id" VARCHAR, "last_updated" TIMESTAMPTZ, ` +
		`"operation" VARCHAR, "topic" VARCHAR, "partition" INTEGER, "offset" BIGINT, "ingest_time" TIMESTAMPTZ, "resource" VARCHAR`
	if got := RawColumnsSQL(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSQLType(t *testing.T) {
	for _, tt := range []struct {
		typ  arrow.DataType
		want string
	}{
		{arrow.BinaryTypes.String, "VARCHAR"},
		{arrow.FixedWidthTypes.Boolean, "BOOLEAN"},
		{arrow.PrimitiveTypes.Int32, "INTEGER"},
		{arrow.PrimitiveTypes.Int64, "BIGINT"},
		{arrow.PrimitiveTypes.Float64, "DOUBLE"},
		{arrow.FixedWidthTypes.Date32, "DATE"},
		{arrow.FixedWidthTypes.Time64us, "TIME"},
		{timestampUTC, "TIMESTAMPTZ"},
		{&arrow.TimestampType{Unit: arrow.Microsecond}, "TIMESTAMP"},
		{arrow.ListOf(arrow.BinaryTypes.String), "VARCHAR[]"},
		{&arrow.Decimal128Type{Precision: 38, Scale: 18}, "DECIMAL(38,18)"},
		{arrow.PrimitiveTypes.Uint8, ""},
	} {
		got, err := SQLType(tt.typ)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("%s: got %q %v, want %q", tt.typ, got, err, tt.want)
		}
	}
}

// TestViewSchema: every default view's dataset is the lineage columns, then the
// view's, each with a SQL type.
func TestViewSchema(t *testing.T) {
	views, err := flatten.LoadViews("")
	if err != nil {
		t.Fatal(err)
	}
	lineage := ViewLineageNames()
	if got := strings.Join(lineage, ","); got != "_tenant,_resource_type,_resource_id,_version_id,_last_updated,_topic,_partition,_offset,_ingest_time,_row" {
		t.Errorf("lineage: got %s", got)
	}
	for _, v := range views {
		s := ViewSchema(v)
		if s.NumFields() != len(lineage)+v.Schema().NumFields() {
			t.Fatalf("%s: %d fields", v.Name(), s.NumFields())
		}
		for i, f := range s.Fields() {
			if i < len(lineage) && f.Name != lineage[i] || i >= len(lineage) && f.Name != v.Schema().Field(i-len(lineage)).Name {
				t.Errorf("%s: field %d is %s", v.Name(), i, f.Name)
			}
		}
		if _, err := ColumnsSQL(s); err != nil {
			t.Errorf("%s: %v", v.Name(), err)
		}
	}
}
