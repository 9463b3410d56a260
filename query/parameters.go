package query

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"github.com/duckdb/duckdb-go/v2"
)

// Parameter is one parameter of a statement: its name (the position, 1
// for the first ?, or the n of $n) and the type DuckDB infers for it from
// its place in the statement ("" when the statement does not say, as in
// SELECT ?).
type Parameter struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Parameters checks q like Query and lists its parameters, without running
// it: what a client binds before it runs q with values (ExportOptions.Args).
func (s *Session) Parameters(ctx context.Context, q string) ([]Parameter, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := s.prepare(ctx, q); err != nil {
		return nil, err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	defer conn.Close()
	var out []Parameter
	err = conn.Raw(func(dc any) error {
		st, err := dc.(driver.Conn).Prepare(q)
		if err != nil {
			return err
		}
		defer st.Close()
		ds, ok := st.(*duckdb.Stmt)
		if !ok {
			return errors.New("driver statement has no parameter types")
		}
		out = make([]Parameter, ds.NumInput())
		for i := range out {
			name, err := ds.ParamName(i + 1)
			if err != nil || name == "" {
				name = strconv.Itoa(i + 1)
			}
			t, err := ds.ParamType(i + 1)
			if err != nil {
				return err
			}
			out[i] = Parameter{Name: name, Type: typeNames[t]}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", s.tenant, queryError(ctx, err))
	}
	return out, nil
}

// typeNames are DuckDB's names of the parameter types a client can bind;
// any other type is named "".
var typeNames = map[duckdb.Type]string{
	duckdb.TYPE_BOOLEAN: "BOOLEAN", duckdb.TYPE_TINYINT: "TINYINT", duckdb.TYPE_SMALLINT: "SMALLINT",
	duckdb.TYPE_INTEGER: "INTEGER", duckdb.TYPE_BIGINT: "BIGINT", duckdb.TYPE_UTINYINT: "UTINYINT",
	duckdb.TYPE_USMALLINT: "USMALLINT", duckdb.TYPE_UINTEGER: "UINTEGER", duckdb.TYPE_UBIGINT: "UBIGINT",
	duckdb.TYPE_FLOAT: "FLOAT", duckdb.TYPE_DOUBLE: "DOUBLE", duckdb.TYPE_DECIMAL: "DECIMAL",
	duckdb.TYPE_VARCHAR: "VARCHAR", duckdb.TYPE_DATE: "DATE", duckdb.TYPE_TIMESTAMP: "TIMESTAMP",
	duckdb.TYPE_TIMESTAMP_S: "TIMESTAMP", duckdb.TYPE_TIMESTAMP_MS: "TIMESTAMP", duckdb.TYPE_TIMESTAMP_NS: "TIMESTAMP",
	duckdb.TYPE_TIMESTAMP_TZ: "TIMESTAMP WITH TIME ZONE",
}
