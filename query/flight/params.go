package flight

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fhirlake/query"
)

// paramType is the Arrow type a client binds for a parameter DuckDB
// typed as name (query.Parameter.Type); a parameter DuckDB cannot type
// from its place (SELECT ?) is a string, which DuckDB casts.
func paramType(name string) arrow.DataType {
	switch name {
	case "BOOLEAN":
		return arrow.FixedWidthTypes.Boolean
	case "TINYINT":
		return arrow.PrimitiveTypes.Int8
	case "SMALLINT":
		return arrow.PrimitiveTypes.Int16
	case "INTEGER":
		return arrow.PrimitiveTypes.Int32
	case "BIGINT":
		return arrow.PrimitiveTypes.Int64
	case "UTINYINT":
		return arrow.PrimitiveTypes.Uint8
	case "USMALLINT":
		return arrow.PrimitiveTypes.Uint16
	case "UINTEGER":
		return arrow.PrimitiveTypes.Uint32
	case "UBIGINT":
		return arrow.PrimitiveTypes.Uint64
	case "FLOAT":
		return arrow.PrimitiveTypes.Float32
	case "DOUBLE", "DECIMAL":
		return arrow.PrimitiveTypes.Float64
	case "DATE":
		return arrow.FixedWidthTypes.Date32
	case "TIMESTAMP":
		return &arrow.TimestampType{Unit: arrow.Microsecond}
	case "TIMESTAMP WITH TIME ZONE":
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	}
	return arrow.BinaryTypes.String
}

// paramSchema is the parameter schema of a prepared statement.
func paramSchema(params []query.Parameter) *arrow.Schema {
	fields := make([]arrow.Field, len(params))
	for i, p := range params {
		fields[i] = arrow.Field{Name: p.Name, Type: paramType(p.Type), Nullable: true}
	}
	return arrow.NewSchema(fields, nil)
}

// readArgs reads the values a client binds to a prepared statement: one
// row of as many columns as the statement has parameters. Each value goes
// to the worker as JSON (a number, a string, a boolean or null) and is
// bound by DuckDB as data, never spliced into the SQL; dates, timestamps
// and decimals travel as strings, which DuckDB casts to the parameter's
// type.
func readArgs(r flight.MessageReader, want int) ([]any, error) {
	var args []any
	rows := int64(0)
	for r.Next() {
		rec := r.RecordBatch()
		if rec.NumRows() == 0 {
			continue
		}
		rows += rec.NumRows()
		if rows > 1 {
			return nil, status.Error(codes.InvalidArgument, "bind one row of parameter values per execution (fhirlake runs no batches of executions)")
		}
		if int(rec.NumCols()) != want {
			return nil, status.Errorf(codes.InvalidArgument, "the statement has %d parameters; %d values were bound", want, rec.NumCols())
		}
		args = make([]any, want)
		for i := range want {
			v, err := value(rec.Column(i), 0)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "parameter %d: %v", i+1, err)
			}
			args[i] = v
		}
	}
	if err := r.Err(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "read the parameter values: %v", err)
	}
	if rows == 0 && want > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "the statement has %d parameters; no values were bound", want)
	}
	return args, nil
}

// value is the JSON value of arr[i].
func value(arr arrow.Array, i int) (any, error) {
	if arr.IsNull(i) {
		return nil, nil
	}
	switch a := arr.(type) {
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Int8:
		return int64(a.Value(i)), nil
	case *array.Int16:
		return int64(a.Value(i)), nil
	case *array.Int32:
		return int64(a.Value(i)), nil
	case *array.Int64:
		return a.Value(i), nil
	case *array.Uint8:
		return uint64(a.Value(i)), nil
	case *array.Uint16:
		return uint64(a.Value(i)), nil
	case *array.Uint32:
		return uint64(a.Value(i)), nil
	case *array.Uint64:
		return a.Value(i), nil
	case *array.Float32:
		return float64(a.Value(i)), nil
	case *array.Float64:
		return a.Value(i), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.StringView:
		return a.Value(i), nil
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale), nil
	case *array.Decimal256:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal256Type).Scale), nil
	case *array.Date32:
		return a.Value(i).ToTime().Format(time.DateOnly), nil
	case *array.Date64:
		return a.Value(i).ToTime().Format(time.DateOnly), nil
	case *array.Timestamp:
		t := a.DataType().(*arrow.TimestampType)
		ts := a.Value(i).ToTime(t.Unit)
		if t.TimeZone == "" {
			// A timestamp without a zone is a wall-clock time.
			return ts.Format("2006-01-02 15:04:05.999999999"), nil
		}
		return ts.Format(time.RFC3339Nano), nil
	}
	return nil, fmt.Errorf("values of type %s cannot be bound (use numbers, strings, booleans, decimals, dates or timestamps)", arr.DataType())
}
