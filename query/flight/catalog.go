package flight

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql/schema_ref"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fhirlake/query"
)

// A tenant sees one schema, main, of views, and no catalog: statements
// name views unqualified or as main.view (the statement check refuses a
// catalog's name).
const (
	schemaName = "main"
	tableType  = "VIEW"
)

// metadataInfo answers a catalog command: its ticket is the command.
func metadataInfo(desc *flight.FlightDescriptor, schema *arrow.Schema) *flight.FlightInfo {
	return &flight.FlightInfo{FlightDescriptor: desc, Endpoint: []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: desc.Cmd}}},
		Schema: flight.SerializeSchema(schema, memory.DefaultAllocator), TotalRecords: -1, TotalBytes: -1}
}

// one streams a single batch.
func one(rec arrow.RecordBatch) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	ch := make(chan flight.StreamChunk, 1)
	ch <- flight.StreamChunk{Data: rec}
	close(ch)
	return rec.Schema(), ch, nil
}

// strings builds a batch of string columns (nil: null), then the rest.
func (s *Server) batch(schema *arrow.Schema, rows [][]any) arrow.RecordBatch {
	b := array.NewRecordBuilder(s.Alloc, schema)
	defer b.Release()
	for _, row := range rows {
		for i, v := range row {
			switch f := b.Field(i).(type) {
			case *array.StringBuilder:
				if v == nil {
					f.AppendNull()
				} else {
					f.Append(v.(string))
				}
			case *array.BinaryBuilder:
				f.Append(v.([]byte))
			}
		}
	}
	return b.NewRecordBatch()
}

// GetFlightInfoCatalogs: see DoGetCatalogs.
func (s *Server) GetFlightInfoCatalogs(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return metadataInfo(desc, schema_ref.Catalogs), nil
}

// DoGetCatalogs lists no catalog: the views are in schema main alone.
func (s *Server) DoGetCatalogs(context.Context) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	return one(s.batch(schema_ref.Catalogs, nil))
}

// GetFlightInfoSchemas: see DoGetDBSchemas.
func (s *Server) GetFlightInfoSchemas(_ context.Context, _ flightsql.GetDBSchemas, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return metadataInfo(desc, schema_ref.DBSchemas), nil
}

// DoGetDBSchemas lists schema main when it matches the filters.
func (s *Server) DoGetDBSchemas(_ context.Context, cmd flightsql.GetDBSchemas) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	var rows [][]any
	if noCatalog(cmd.GetCatalog()) && like(cmd.GetDBSchemaFilterPattern(), schemaName) {
		rows = append(rows, []any{nil, schemaName})
	}
	return one(s.batch(schema_ref.DBSchemas, rows))
}

// GetFlightInfoTableTypes: see DoGetTableTypes.
func (s *Server) GetFlightInfoTableTypes(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return metadataInfo(desc, schema_ref.TableTypes), nil
}

// DoGetTableTypes lists VIEW, the only kind of table a tenant has.
func (s *Server) DoGetTableTypes(context.Context) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	return one(s.batch(schema_ref.TableTypes, [][]any{{tableType}}))
}

// GetFlightInfoTables: see DoGetTables.
func (s *Server) GetFlightInfoTables(_ context.Context, cmd flightsql.GetTables, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	if cmd.GetIncludeSchema() {
		return metadataInfo(desc, schema_ref.TablesWithIncludedSchema), nil
	}
	return metadataInfo(desc, schema_ref.Tables), nil
}

// DoGetTables lists the tenant's views (GET /v1/tenants/{tenant}/tables
// in its worker) that match the filters, with each view's Arrow schema
// when asked: the schema of SELECT * FROM view LIMIT 0, run like any
// statement.
func (s *Server) DoGetTables(ctx context.Context, cmd flightsql.GetTables) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	c := callerOf(ctx)
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.QueryTimeout, query.ErrQueryTimeout)
	defer cancel()
	rec := Record{Kind: "tables", Tenant: c.key.Tenant, Key: c.key.Name, Remote: c.remote}
	names, err := s.tables(ctx, c.key.Tenant, &rec)
	schema := schema_ref.Tables
	if cmd.GetIncludeSchema() {
		schema = schema_ref.TablesWithIncludedSchema
	}
	var rows [][]any
	wantType := len(cmd.GetTableTypes()) == 0
	for _, t := range cmd.GetTableTypes() {
		wantType = wantType || strings.EqualFold(t, tableType)
	}
	if err == nil && wantType && noCatalog(cmd.GetCatalog()) && like(cmd.GetDBSchemaFilterPattern(), schemaName) {
		for _, n := range names {
			if !like(cmd.GetTableNameFilterPattern(), n) {
				continue
			}
			row := []any{nil, schemaName, n, tableType}
			if cmd.GetIncludeSchema() {
				var vs *arrow.Schema
				if vs, err = s.viewSchema(ctx, c.key.Tenant, n); err != nil {
					break
				}
				row = append(row, flight.SerializeSchema(vs, s.Alloc))
			}
			rows = append(rows, row)
		}
	}
	rec.Time, rec.Duration, rec.Rows, rec.Status = time.Now(), time.Since(start), int64(len(rows)), "ok"
	if err != nil {
		rec.Status = status.Code(err).String()
	}
	s.audit(rec)
	if err != nil {
		return nil, nil, err
	}
	return one(s.batch(schema, rows))
}

// tables lists the tenant's views by name.
func (s *Server) tables(ctx context.Context, tenant string, rec *Record) ([]string, error) {
	cl, id, err := s.start(ctx, tenant, "GET", "/tables", nil, nil)
	rec.RequestID = id
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out struct {
		Tables []struct {
			Name string `json:"name"`
		} `json:"tables"`
	}
	if err := json.NewDecoder(io.LimitReader(cl.body, 64<<20)).Decode(&out); err != nil {
		return nil, status.Errorf(codes.Internal, "read the tenant's views: %v (request id %s)", err, id)
	}
	names := make([]string, len(out.Tables))
	for i, t := range out.Tables {
		names[i] = t.Name
	}
	return names, nil
}

// viewSchema is the Arrow schema of a view's rows.
func (s *Server) viewSchema(ctx context.Context, tenant, view string) (*arrow.Schema, error) {
	q := `SELECT * FROM "` + strings.ReplaceAll(view, `"`, `""`) + `" LIMIT 0`
	cl, id, err := s.start(ctx, tenant, "POST", "/query", map[string][]string{"format": {"arrow"}}, map[string]any{"sql": q})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	r, err := ipc.NewReader(cl.body, ipc.WithAllocator(s.Alloc))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the schema of %s: %v (request id %s)", view, err, id)
	}
	defer r.Release()
	for r.Next() {
	}
	return r.Schema(), nil
}

// noCatalog says whether a catalog filter admits tables without one.
func noCatalog(c *string) bool { return c == nil || *c == "" }

// like matches s against a SQL LIKE pattern (% any run, _ one character,
// \ escapes); a nil pattern matches everything.
func like(pattern *string, s string) bool {
	if pattern == nil {
		return true
	}
	var b strings.Builder
	b.WriteString("(?s)^")
	esc := false
	for _, r := range *pattern {
		switch {
		case esc:
			b.WriteString(regexp.QuoteMeta(string(r)))
			esc = false
		case r == '\\':
			esc = true
		case r == '%':
			b.WriteString(".*")
		case r == '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(s)
}
