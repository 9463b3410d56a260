// Package flight serves the query layer over Arrow Flight SQL, for the
// dashboards and BI tools that speak it (ADBC, JDBC, Grafana, Superset,
// DBeaver). It is a front only, like query/web's: a call is authenticated
// with a tenant's API key, then forwarded through the same web.Forwarder
// as the HTTP API — the tenant's bounded queue, its worker process, the
// worker's statement check, limits and timeout — which answers in Arrow
// IPC, re-streamed here batch by batch. This process opens no DuckDB.
//
// Statements, prepared statements with parameters (bound by DuckDB in the
// worker), the catalog calls BI tools make on connecting (GetCatalogs,
// GetDbSchemas, GetTables with schemas, GetTableTypes, GetSqlInfo) and
// cancellation are served. Anything that writes — updates, ingestion,
// transactions — is refused.
package flight

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"fhirlake/query"
	"fhirlake/query/web"
	"fhirlake/sink"
)

// Options configure a Server.
type Options struct {
	// Keys open one tenant each: the HTTP API's keys.
	Keys []web.Key
	// Forward reaches the tenant's worker: the HTTP API's forwarder
	// (worker.Supervisor). Required.
	Forward web.Forwarder
	// QueryTimeout bounds a call from its arrival: waiting for one of the
	// tenant's connections, the worker's run and the streaming of the
	// result. Default: 30s.
	QueryTimeout time.Duration
	// MaxStatementBytes bounds a statement's text, as the HTTP API bounds a
	// request's body. Default: 64KiB.
	MaxStatementBytes int
	// MaxPrepared bounds each tenant's open prepared statements; one
	// unused for PreparedIdle makes room for a new one. Defaults: 256, 1h.
	MaxPrepared  int
	PreparedIdle time.Duration
	// Version is the server version GetSqlInfo reports.
	Version string
	// Audit, when set, is called once for every statement executed
	// (Kind "query") and every listing of the tenant's tables ("tables"),
	// when it has ended: the audit trail's single hook.
	Audit func(Record)
}

// Record is what the audit trail keeps of one call.
type Record struct {
	Time      time.Time
	Kind      string // "query" or "tables"
	Tenant    string
	Key       string // the key's name
	RequestID string // the worker's request id, as in its log
	Remote    string
	SQL       string
	Rows      int64
	Bytes     int64 // Arrow memory of the batches sent
	Duration  time.Duration
	// Status is "ok" or the gRPC code of the failure (e.g. DeadlineExceeded).
	Status string
}

// Server is the Flight SQL front.
type Server struct {
	flightsql.BaseServer
	opts     Options
	keys     map[string]web.Key // SHA-256 hex → key
	prepared *preparedStore
	running  *runningSet
	log      *slog.Logger
}

// New returns a Flight SQL server; Register puts it on a gRPC server.
func New(o Options, log *slog.Logger) (*Server, error) {
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if o.MaxStatementBytes <= 0 {
		o.MaxStatementBytes = 64 << 10
	}
	if o.MaxPrepared <= 0 {
		o.MaxPrepared = 256
	}
	if o.PreparedIdle <= 0 {
		o.PreparedIdle = time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, keys: map[string]web.Key{}, prepared: newPreparedStore(o.MaxPrepared, o.PreparedIdle),
		running: newRunningSet(), log: log}
	s.Alloc = memory.DefaultAllocator
	for _, k := range o.Keys {
		s.keys[strings.ToLower(k.SHA256)] = k
	}
	for id, v := range map[flightsql.SqlInfo]any{
		flightsql.SqlInfoFlightSqlServerName:          "fhirlake",
		flightsql.SqlInfoFlightSqlServerVersion:       o.Version,
		flightsql.SqlInfoFlightSqlServerArrowVersion:  "18",
		flightsql.SqlInfoFlightSqlServerReadOnly:      true,
		flightsql.SqlInfoFlightSqlServerSql:           true,
		flightsql.SqlInfoFlightSqlServerSubstrait:     false,
		flightsql.SqlInfoFlightSqlServerTransaction:   int32(flightsql.SqlTransactionNone),
		flightsql.SqlInfoFlightSqlServerCancel:        true,
		flightsql.SqlInfoFlightSqlServerBulkIngestion: false,
		flightsql.SqlInfoDDLCatalog:                   false,
		flightsql.SqlInfoDDLSchema:                    false,
		flightsql.SqlInfoDDLTable:                     false,
		flightsql.SqlInfoIdentifierQuoteChar:          `"`,
		flightsql.SqlInfoAllTablesAreASelectable:      true,
		flightsql.SqlInfoSchemaTerm:                   "schema",
		flightsql.SqlInfoCatalogTerm:                  "catalog",
		flightsql.SqlInfoTransactionsSupported:        false,
	} {
		if err := s.RegisterSqlInfo(id, v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Register puts the Flight service on g, which must have been made with
// ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	flight.RegisterFlightServiceServer(g, handshaker{FlightServer: flightsql.NewFlightServer(s), s: s})
}

// ServerOptions authenticate every call: give them to grpc.NewServer.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.unaryAuth), grpc.ChainStreamInterceptor(s.streamAuth)}
}

// ticket is the content of every statement's ticket: the statement, or
// the handle of a prepared one, for the tenant it was issued to. A
// client may write any ticket it likes: the tenant is checked against
// the key, and the statement by the worker, on every execution.
type ticket struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	SQL      string `json:"sql,omitempty"`
	Prepared string `json:"prepared,omitempty"`
}

func (s *Server) flightInfo(desc *flight.FlightDescriptor, t ticket) (*flight.FlightInfo, error) {
	b, _ := json.Marshal(t)
	tk, err := flightsql.CreateStatementQueryTicket(b)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "ticket: %v", err)
	}
	return &flight.FlightInfo{FlightDescriptor: desc, Endpoint: []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: tk}}},
		TotalRecords: -1, TotalBytes: -1}, nil
}

func (s *Server) checkStatement(q string, tx []byte) error {
	if len(tx) > 0 {
		return status.Error(codes.InvalidArgument, "fhirlake is read-only and has no transactions")
	}
	if len(q) > s.opts.MaxStatementBytes {
		return status.Errorf(codes.InvalidArgument, "statement over %d bytes", s.opts.MaxStatementBytes)
	}
	if strings.TrimSpace(q) == "" {
		return status.Error(codes.InvalidArgument, "no SQL in the request")
	}
	return nil
}

// GetFlightInfoStatement answers a statement with its ticket: it runs when
// the ticket is fetched (DoGet), where its errors, the statement check's
// among them, are reported.
func (s *Server) GetFlightInfoStatement(ctx context.Context, cmd flightsql.StatementQuery, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	if err := s.checkStatement(cmd.GetQuery(), cmd.GetTransactionId()); err != nil {
		return nil, err
	}
	return s.flightInfo(desc, ticket{ID: newRequestID(), Tenant: callerOf(ctx).key.Tenant, SQL: cmd.GetQuery()})
}

// GetFlightInfoPreparedStatement answers a prepared statement with a
// ticket that runs it with the values bound when it is fetched.
func (s *Server) GetFlightInfoPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	tenant := callerOf(ctx).key.Tenant
	h := string(cmd.GetPreparedStatementHandle())
	if _, _, err := s.prepared.get(tenant, h, time.Now()); err != nil {
		return nil, err
	}
	return s.flightInfo(desc, ticket{ID: newRequestID(), Tenant: tenant, Prepared: h})
}

// DoGetStatement runs a ticket's statement in the tenant's worker.
func (s *Server) DoGetStatement(ctx context.Context, cmd flightsql.StatementQueryTicket) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	c := callerOf(ctx)
	var t ticket
	if err := json.Unmarshal(cmd.GetStatementHandle(), &t); err != nil || t.ID == "" {
		return nil, nil, status.Error(codes.InvalidArgument, "not a ticket of this server")
	}
	if t.Tenant != c.key.Tenant {
		s.log.Warn("flight: ticket of another tenant", "key", c.key.Name, "key_tenant", c.key.Tenant, "tenant", t.Tenant, "remote", c.remote)
		return nil, nil, status.Error(codes.PermissionDenied, "this ticket belongs to another tenant")
	}
	q, args := t.SQL, []any(nil)
	if t.Prepared != "" {
		p, bound, err := s.prepared.get(c.key.Tenant, t.Prepared, time.Now())
		if err != nil {
			return nil, nil, err
		}
		if len(p.params.Fields()) > 0 && bound == nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "the statement has %d parameters; bind their values first", len(p.params.Fields()))
		}
		q, args = p.sql, bound
	}
	return s.execute(ctx, c, t.ID, q, args)
}

// DoGetPreparedStatement runs a prepared statement whose handle a client
// sent as a ticket.
func (s *Server) DoGetPreparedStatement(ctx context.Context, cmd flightsql.PreparedStatementQuery) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	c := callerOf(ctx)
	p, bound, err := s.prepared.get(c.key.Tenant, string(cmd.GetPreparedStatementHandle()), time.Now())
	if err != nil {
		return nil, nil, err
	}
	return s.execute(ctx, c, newRequestID(), p.sql, bound)
}

// execute runs q in the tenant's worker as the HTTP API's
// POST /v1/tenants/{tenant}/query?format=arrow, and streams the batches
// as they come. The query timeout runs from here to the last batch; a
// client that goes away or cancels (CancelFlightInfo) cancels the
// forwarded request, which interrupts DuckDB in the worker.
func (s *Server) execute(ctx context.Context, c caller, id, q string, args []any) (*arrow.Schema, <-chan flight.StreamChunk, error) {
	start := time.Now()
	qctx, cancel := context.WithCancelCause(ctx)
	qctx, cancelTimeout := context.WithDeadlineCause(qctx, start.Add(s.opts.QueryTimeout), query.ErrQueryTimeout)
	stop := func() { cancelTimeout(); cancel(nil) }
	if !s.running.add(id, c.key.Tenant, cancel) {
		stop()
		return nil, nil, status.Error(codes.Canceled, "the query was canceled")
	}
	rec := Record{Kind: "query", Tenant: c.key.Tenant, Key: c.key.Name, Remote: c.remote, SQL: q}
	finish := func(err error) {
		s.running.remove(id)
		stop()
		rec.Time, rec.Duration, rec.Status = time.Now(), time.Since(start), "ok"
		if err != nil {
			rec.Status = status.Code(err).String()
		}
		s.audit(rec)
	}
	body := map[string]any{"sql": q}
	if len(args) > 0 {
		body["params"] = args
	}
	cl, reqID, err := s.start(qctx, c.key.Tenant, "POST", "/query", map[string][]string{"format": {"arrow"}}, body)
	rec.RequestID = reqID
	if err != nil {
		finish(err)
		return nil, nil, err
	}
	rdr, err := ipc.NewReader(cl.body, ipc.WithAllocator(s.Alloc))
	if err != nil {
		cl.Close()
		err = s.streamError(qctx, cl, reqID, err)
		finish(err)
		return nil, nil, err
	}
	ch := make(chan flight.StreamChunk, 1)
	// Owned by the DoGet call, which reads ch until it is closed.
	go func() {
		defer close(ch)
		defer rdr.Release()
		var err error
		for rdr.Next() {
			b := rdr.RecordBatch()
			b.Retain()
			select {
			case ch <- flight.StreamChunk{Data: b}:
				rec.Rows += b.NumRows()
				rec.Bytes += sink.RecordBytes(b)
				continue
			case <-qctx.Done():
				b.Release()
			}
			break
		}
		cl.Close()
		if rerr := rdr.Err(); rerr != nil || qctx.Err() != nil {
			err = s.streamError(qctx, cl, reqID, rerr)
		} else if truncated, code, msg := cl.trailer(); code != "" {
			err = status.Errorf(httpCode(0, code), "%s: %s (request id %s)", code, msg, reqID)
		} else if truncated {
			// The client has every row up to the limit; it learns of the
			// cut from the trailer, as an HTTP client from its header.
			_ = grpc.SetTrailer(ctx, metadata.Pairs("fhirlake-truncated", "true"))
			s.log.Info("flight: result cut at the server's limit", "request_id", reqID, "tenant", c.key.Tenant, "rows", rec.Rows)
		}
		if err != nil {
			ch <- flight.StreamChunk{Err: err}
		}
		finish(err)
	}()
	return rdr.Schema(), ch, nil
}

// streamError is the gRPC error of a result stream that ended early.
func (s *Server) streamError(ctx context.Context, cl *call, id string, err error) error {
	if _, code, msg := cl.trailer(); code != "" {
		return status.Errorf(httpCode(0, code), "%s: %s (request id %s)", code, msg, id)
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, query.ErrQueryTimeout):
		return status.Error(codes.DeadlineExceeded, s.timeoutMessage(id))
	case cause != nil:
		return status.Errorf(codes.Canceled, "the query was canceled (request id %s)", id)
	case cl.err != nil:
		return s.grpcError(ctx, id, cl.err)
	}
	return status.Errorf(codes.Internal, "read the worker's result: %v (request id %s)", err, id)
}

func (s *Server) audit(r Record) {
	if s.opts.Audit != nil {
		s.opts.Audit(r)
	}
}

// CancelFlightInfo cancels the query of a ticket: the running one's
// forwarded request ends, which interrupts DuckDB in the worker; a ticket
// not yet fetched will be refused.
func (s *Server) CancelFlightInfo(ctx context.Context, req *flight.CancelFlightInfoRequest) (flight.CancelFlightInfoResult, error) {
	info := req.GetInfo()
	if info == nil || len(info.Endpoint) == 0 || info.Endpoint[0].GetTicket() == nil {
		return flight.CancelFlightInfoResult{Status: flight.CancelStatusNotCancellable}, status.Error(codes.InvalidArgument, "no ticket to cancel")
	}
	cmd, err := flightsql.GetStatementQueryTicket(info.Endpoint[0].GetTicket())
	if err != nil {
		return flight.CancelFlightInfoResult{Status: flight.CancelStatusNotCancellable}, status.Error(codes.InvalidArgument, "not a statement's ticket")
	}
	var t ticket
	if err := json.Unmarshal(cmd.GetStatementHandle(), &t); err != nil || t.ID == "" {
		return flight.CancelFlightInfoResult{Status: flight.CancelStatusNotCancellable}, status.Error(codes.InvalidArgument, "not a ticket of this server")
	}
	if t.Tenant != callerOf(ctx).key.Tenant {
		return flight.CancelFlightInfoResult{Status: flight.CancelStatusNotCancellable}, status.Error(codes.PermissionDenied, "this ticket belongs to another tenant")
	}
	s.running.cancel(t.ID, t.Tenant)
	return flight.CancelFlightInfoResult{Status: flight.CancelStatusCancelled}, nil
}

// runningSet holds the cancel functions of the queries running, and the
// ids of the last tickets canceled before they ran.
type runningSet struct {
	mu       sync.Mutex
	running  map[string]runningQuery
	canceled map[string]bool
	order    []string // of canceled, oldest first; at most maxCanceled
}

type runningQuery struct {
	tenant string
	cancel context.CancelCauseFunc
}

const maxCanceled = 1024

func newRunningSet() *runningSet {
	return &runningSet{running: map[string]runningQuery{}, canceled: map[string]bool{}}
}

// add registers a query about to run; false if its ticket was canceled.
func (r *runningSet) add(id, tenant string, cancel context.CancelCauseFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.canceled[id] {
		return false
	}
	r.running[id] = runningQuery{tenant, cancel}
	return true
}

func (r *runningSet) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, id)
}

func (r *runningSet) cancel(id, tenant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q, ok := r.running[id]; ok && q.tenant == tenant {
		q.cancel(context.Canceled)
		return
	}
	if r.canceled[id] {
		return
	}
	if len(r.order) == maxCanceled {
		delete(r.canceled, r.order[0])
		r.order = r.order[1:]
	}
	r.canceled[id] = true
	r.order = append(r.order, id)
}
