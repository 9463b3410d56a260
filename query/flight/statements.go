package flight

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fhirlake/query"
)

// CreatePreparedStatement has the tenant's worker check the statement and
// type its parameters (POST /v1/tenants/{tenant}/parameters), and keeps it
// under a new handle. Its values are bound by DuckDB when it runs, so the
// statement the worker checks is the statement that runs.
func (s *Server) CreatePreparedStatement(ctx context.Context, req flightsql.ActionCreatePreparedStatementRequest) (flightsql.ActionCreatePreparedStatementResult, error) {
	var res flightsql.ActionCreatePreparedStatementResult
	q := req.GetQuery()
	if err := s.checkStatement(q, req.GetTransactionId()); err != nil {
		return res, err
	}
	c := callerOf(ctx)
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.QueryTimeout, query.ErrQueryTimeout)
	defer cancel()
	cl, _, err := s.start(ctx, c.key.Tenant, "POST", "/parameters", nil, map[string]any{"sql": q})
	if err != nil {
		return res, err
	}
	defer cl.Close()
	var out struct {
		Parameters []query.Parameter `json:"parameters"`
	}
	if err := json.NewDecoder(io.LimitReader(cl.body, 1<<20)).Decode(&out); err != nil {
		return res, status.Errorf(codes.Internal, "read the statement's parameters: %v", err)
	}
	cl.Close()
	schema := paramSchema(out.Parameters)
	dataset, err := s.resultSchema(ctx, c.key.Tenant, q, len(out.Parameters))
	if err != nil {
		return res, err
	}
	h, err := s.prepared.add(&prepared{tenant: c.key.Tenant, sql: q, params: schema}, time.Now())
	if err != nil {
		return res, err
	}
	notUpdate := false
	return flightsql.ActionCreatePreparedStatementResult{Handle: []byte(h), DatasetSchema: dataset, ParameterSchema: schema, IsUpdate: &notUpdate}, nil
}

// resultSchema is the Arrow schema of q's rows, asked of the worker as
// the schema of SELECT * FROM (q) LIMIT 0 with null parameters — a
// statement checked like any other, which DuckDB answers without reading
// the lake. JDBC needs it: it runs a prepared statement without columns as
// an update. A statement that cannot be so wrapped (DESCRIBE) gets none.
func (s *Server) resultSchema(ctx context.Context, tenant, q string, params int) (*arrow.Schema, error) {
	wrapped := "SELECT * FROM (" + q + "\n) AS fhirlake_prepared LIMIT 0"
	body := map[string]any{"sql": wrapped}
	if params > 0 {
		body["params"] = make([]any, params)
	}
	cl, _, err := s.start(ctx, tenant, "POST", "/query", map[string][]string{"format": {"arrow"}}, body)
	if err != nil {
		if c := status.Code(err); c == codes.DeadlineExceeded || c == codes.Canceled || c == codes.Unavailable || c == codes.ResourceExhausted {
			return nil, err
		}
		return nil, nil
	}
	defer cl.Close()
	r, err := ipc.NewReader(cl.body, ipc.WithAllocator(s.Alloc))
	if err != nil {
		return nil, nil
	}
	defer r.Release()
	for r.Next() {
	}
	return r.Schema(), nil
}

// ClosePreparedStatement forgets a prepared statement.
func (s *Server) ClosePreparedStatement(ctx context.Context, req flightsql.ActionClosePreparedStatementRequest) error {
	return s.prepared.close(callerOf(ctx).key.Tenant, string(req.GetPreparedStatementHandle()))
}

// DoPutPreparedStatementQuery binds values to a prepared statement's
// parameters; the next execution uses them.
func (s *Server) DoPutPreparedStatementQuery(ctx context.Context, cmd flightsql.PreparedStatementQuery, r flight.MessageReader, _ flight.MetadataWriter) ([]byte, error) {
	tenant := callerOf(ctx).key.Tenant
	h := cmd.GetPreparedStatementHandle()
	p, _, err := s.prepared.get(tenant, string(h), time.Now())
	if err != nil {
		return nil, err
	}
	args, err := readArgs(r, len(p.params.Fields()))
	if err != nil {
		return nil, err
	}
	return h, s.prepared.bind(tenant, string(h), args, time.Now())
}

var errReadOnly = status.Error(codes.Unimplemented, "fhirlake is read-only: it serves SELECT statements over the tenant's views; updates, ingestion and transactions are refused")

// DoPutCommandStatementUpdate refuses: nothing writes.
func (s *Server) DoPutCommandStatementUpdate(context.Context, flightsql.StatementUpdate) (int64, error) {
	return 0, errReadOnly
}

// DoPutPreparedStatementUpdate refuses: nothing writes.
func (s *Server) DoPutPreparedStatementUpdate(context.Context, flightsql.PreparedStatementUpdate, flight.MessageReader) (int64, error) {
	return 0, errReadOnly
}

// DoPutCommandStatementIngest refuses: nothing writes.
func (s *Server) DoPutCommandStatementIngest(context.Context, flightsql.StatementIngest, flight.MessageReader) (int64, error) {
	return 0, errReadOnly
}

// DoPutCommandSubstraitPlan refuses: only SQL is served.
func (s *Server) DoPutCommandSubstraitPlan(context.Context, flightsql.StatementSubstraitPlan) (int64, error) {
	return 0, errReadOnly
}

// BeginTransaction refuses: each statement reads the views as they are
// when it starts.
func (s *Server) BeginTransaction(context.Context, flightsql.ActionBeginTransactionRequest) ([]byte, error) {
	return nil, errReadOnly
}

// BeginSavepoint refuses, as BeginTransaction.
func (s *Server) BeginSavepoint(context.Context, flightsql.ActionBeginSavepointRequest) ([]byte, error) {
	return nil, errReadOnly
}

// EndTransaction refuses, as BeginTransaction.
func (s *Server) EndTransaction(context.Context, flightsql.ActionEndTransactionRequest) error {
	return errReadOnly
}
