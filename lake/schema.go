package lake

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/flatten"
)

// RawDataset is the speed dataset holding every change with its lineage and the
// resource JSON, from which the batch layer can re-derive any column
// (docs/format/raw.md).
const RawDataset = "resources"

// Columns of the raw dataset, in order.
const (
	ColTenant       = "tenant"
	ColResourceType = "resource_type"
	ColID           = "id"
	ColVersionID    = "version_id"
	ColLastUpdated  = "last_updated"
	ColOperation    = "operation"
	ColTopic        = "topic"
	ColPartition    = "partition"
	ColOffset       = "offset"
	ColIngestTime   = "ingest_time"
	ColResource     = "resource"
)

// timestampUTC is every timestamp column of the speed layer: microseconds, UTC.
var timestampUTC = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// RawSchema is the Arrow schema of RawDataset (docs/format/raw.md).
var RawSchema = arrow.NewSchema([]arrow.Field{
	{Name: ColTenant, Type: arrow.BinaryTypes.String},
	{Name: ColResourceType, Type: arrow.BinaryTypes.String},
	{Name: ColID, Type: arrow.BinaryTypes.String},
	{Name: ColVersionID, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ColLastUpdated, Type: timestampUTC, Nullable: true},
	{Name: ColOperation, Type: arrow.BinaryTypes.String},
	{Name: ColTopic, Type: arrow.BinaryTypes.String},
	{Name: ColPartition, Type: arrow.PrimitiveTypes.Int32},
	{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColIngestTime, Type: timestampUTC},
	{Name: ColResource, Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// RawColumnsSQL is RawSchema as a DuckDB column list, `"tenant" VARCHAR, …`, for a
// reader that needs the raw dataset's columns without a file to read them from.
func RawColumnsSQL() string {
	cols, err := ColumnsSQL(RawSchema)
	if err != nil {
		// RawSchema holds only types SQLType knows; TestRawColumnsSQL keeps it so.
		panic(err)
	}
	return cols
}

// View datasets start with lineage columns, with a leading underscore so that they
// never collide with a view's own columns (every default view has an "id")
// (docs/format/view.md).
const (
	ViewColTenant       = "_tenant"
	ViewColResourceType = "_resource_type"
	ViewColResourceID   = "_resource_id"
	ViewColVersionID    = "_version_id"
	ViewColLastUpdated  = "_last_updated"
	ViewColTopic        = "_topic"
	ViewColPartition    = "_partition"
	ViewColOffset       = "_offset"
	ViewColIngestTime   = "_ingest_time"
	// ViewColRow numbers the rows one resource version yields in one view (a
	// forEach yields several), so readers can drop replayed copies.
	ViewColRow = "_row"
)

// ViewLineage are the lineage fields every view dataset starts with, in order.
func ViewLineage() []arrow.Field {
	return []arrow.Field{
		{Name: ViewColTenant, Type: arrow.BinaryTypes.String},
		{Name: ViewColResourceType, Type: arrow.BinaryTypes.String},
		{Name: ViewColResourceID, Type: arrow.BinaryTypes.String},
		{Name: ViewColVersionID, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: ViewColLastUpdated, Type: timestampUTC, Nullable: true},
		{Name: ViewColTopic, Type: arrow.BinaryTypes.String},
		{Name: ViewColPartition, Type: arrow.PrimitiveTypes.Int32},
		{Name: ViewColOffset, Type: arrow.PrimitiveTypes.Int64},
		{Name: ViewColIngestTime, Type: timestampUTC},
		{Name: ViewColRow, Type: arrow.PrimitiveTypes.Int32},
	}
}

// ViewLineageNames are the names of ViewLineage, in order.
func ViewLineageNames() []string {
	fields := ViewLineage()
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	return names
}

// ViewSchema is the schema of a view's speed dataset: the lineage columns followed
// by the view's own columns (docs/format/view.md).
func ViewSchema(v *flatten.View) *arrow.Schema {
	return arrow.NewSchema(append(ViewLineage(), v.Schema().Fields()...), nil)
}

// ColumnsSQL turns a schema into a DuckDB column list, `"name" TYPE, …`, each name
// quoted.
func ColumnsSQL(s *arrow.Schema) (string, error) {
	cols := make([]string, s.NumFields())
	for i, f := range s.Fields() {
		typ, err := SQLType(f.Type)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", f.Name, err)
		}
		cols[i] = `"` + strings.ReplaceAll(f.Name, `"`, `""`) + `" ` + typ
	}
	return strings.Join(cols, ", "), nil
}

// SQLType is the DuckDB type a Parquet column of Arrow type t reads as.
func SQLType(t arrow.DataType) (string, error) {
	switch t := t.(type) {
	case *arrow.StringType, *arrow.LargeStringType:
		return "VARCHAR", nil
	case *arrow.BooleanType:
		return "BOOLEAN", nil
	case *arrow.Int32Type:
		return "INTEGER", nil
	case *arrow.Int64Type:
		return "BIGINT", nil
	case *arrow.Float64Type:
		return "DOUBLE", nil
	case *arrow.Date32Type:
		return "DATE", nil
	case *arrow.Time64Type:
		return "TIME", nil
	case *arrow.TimestampType:
		if t.TimeZone != "" {
			return "TIMESTAMPTZ", nil
		}
		return "TIMESTAMP", nil
	case arrow.DecimalType:
		return fmt.Sprintf("DECIMAL(%d,%d)", t.GetPrecision(), t.GetScale()), nil
	case *arrow.ListType:
		elem, err := SQLType(t.Elem())
		if err != nil {
			return "", err
		}
		return elem + "[]", nil
	}
	return "", fmt.Errorf("no SQL type for Arrow type %s", t)
}
