package flight_test

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"fhirlake/config"
	"fhirlake/query"
	fl "fhirlake/query/flight"
	"fhirlake/query/querytest"
	"fhirlake/query/web"
)

const (
	acmeKey   = "acme-flight-key"
	globexKey = "globex-flight-key"
	frontKey  = "front-to-worker"
)

// workerForwarder serves forwarded calls with the HTTP API of a pool in
// this process, as a tenant's worker process serves its front's: the
// front's key replaced by the worker's own.
type workerForwarder struct{ h http.Handler }

func (f workerForwarder) Forward(w http.ResponseWriter, r *http.Request, tenant string) error {
	r.Header.Set("Authorization", "Bearer "+frontKey+tenant)
	f.h.ServeHTTP(w, r)
	return nil
}

type fixture struct {
	srv  *fl.Server
	addr string
	pool *query.Pool
	recs chan fl.Record
}

// newFixture serves acme and globex, each a small synthetic lake, over
// Flight SQL in front of the HTTP API.
func newFixture(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	var lakes []query.Lake
	for i, tn := range []string{"acme", "globex"} {
		root := filepath.Join(dir, tn)
		if _, err := querytest.SynthLake(ctx, root, tn, querytest.SynthOptions{Patients: 20 + 10*i, Seed: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		lakes = append(lakes, query.Lake{Tenant: tn, Root: root})
	}
	pool := query.NewPool(lakes, query.PoolOptions{Session: query.Options{QueryTimeout: timeout}, RefreshInterval: time.Hour}, nil, nil)
	t.Cleanup(func() { pool.Close() })
	h := web.New(pool, web.Options{QueryTimeout: timeout, Keys: []web.Key{
		{Tenant: "acme", SHA256: config.HashAPIKey(frontKey + "acme")}, {Tenant: "globex", SHA256: config.HashAPIKey(frontKey + "globex")},
	}}, nil, nil).Handler()
	f := &fixture{pool: pool, recs: make(chan fl.Record, 100)}
	s, err := fl.New(fl.Options{
		Keys: []web.Key{
			{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey), Name: "acme-dash"},
			{Tenant: "globex", SHA256: config.HashAPIKey(globexKey), Name: "globex-dash"},
		},
		Forward:      workerForwarder{h},
		QueryTimeout: timeout,
		Audit:        func(r fl.Record) { f.recs <- r },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }() // ends with g.Stop
	t.Cleanup(g.Stop)
	f.addr, f.srv = ln.Addr().String(), s
	return f
}

func (f *fixture) client(t *testing.T) *flightsql.Client {
	t.Helper()
	c, err := flightsql.NewClient(f.addr, nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func withKey(key string, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), append([]string{"authorization", "Bearer " + key}, kv...)...)
}

// scalar is the count a tenant's own session gives for q.
func (f *fixture) scalar(t *testing.T, tenant, q string) int64 {
	t.Helper()
	sess, release, err := f.pool.Acquire(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var n int64
	err = sess.Run(context.Background(), q, func(rows *sql.Rows) error {
		rows.Next()
		return rows.Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fetch reads every batch of an info's first endpoint.
func fetch(ctx context.Context, c *flightsql.Client, info *flight.FlightInfo) ([]arrow.RecordBatch, error) {
	r, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		return nil, err
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for r.Next() {
		b := r.RecordBatch()
		b.Retain()
		out = append(out, b)
	}
	return out, r.Err()
}

func run(t *testing.T, ctx context.Context, c *flightsql.Client, q string) ([]arrow.RecordBatch, error) {
	t.Helper()
	info, err := c.Execute(ctx, q)
	if err != nil {
		return nil, err
	}
	return fetch(ctx, c, info)
}

func firstInt(t *testing.T, bs []arrow.RecordBatch) int64 {
	t.Helper()
	for _, b := range bs {
		if b.NumRows() > 0 {
			return b.Column(0).(*array.Int64).Value(0)
		}
	}
	t.Fatal("no rows")
	return 0
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
}

func TestStatementsAndPreparedStatements(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	c := f.client(t)
	ctx := withKey(acmeKey)

	bs, err := run(t, ctx, c, "SELECT count(*) AS n FROM observation")
	if err != nil {
		t.Fatal(err)
	}
	want := f.scalar(t, "acme", "SELECT count(*) FROM observation")
	if got := firstInt(t, bs); got != want || want == 0 {
		t.Errorf("observations of acme over Flight SQL: got %d, want %d", got, want)
	}
	rec := <-f.recs
	if rec.Kind != "query" || rec.Tenant != "acme" || rec.Key != "acme-dash" || rec.Status != "ok" || rec.Rows != 1 || rec.SQL != "SELECT count(*) AS n FROM observation" || rec.RequestID == "" {
		t.Errorf("audit record: %+v", rec)
	}

	// A dashboard's grouped query: every row of the result, streamed.
	bs, err = run(t, ctx, c, "SELECT gender, count(*) AS n FROM patient GROUP BY ALL ORDER BY ALL")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range bs {
		for i := range int(b.NumRows()) {
			total += b.Column(1).(*array.Int64).Value(i)
		}
	}
	if want := f.scalar(t, "acme", "SELECT count(*) FROM patient"); total != want {
		t.Errorf("patients by gender add up to %d, want %d", total, want)
	}

	// A prepared statement: its parameters typed by DuckDB, its values bound as data.
	ps, err := c.Prepare(ctx, "SELECT count(*) AS n FROM patient WHERE gender = ? AND birth_date < ?")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close(ctx)
	if got := ps.ParameterSchema(); got.NumFields() != 2 || got.Field(0).Type.ID() != arrow.STRING || got.Field(1).Type.ID() != arrow.DATE32 {
		t.Errorf("parameter schema: %v", got)
	}
	bind := func(gender string) {
		t.Helper()
		b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema([]arrow.Field{
			{Name: "1", Type: arrow.BinaryTypes.String}, {Name: "2", Type: arrow.FixedWidthTypes.Date32}}, nil))
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append(gender)
		b.Field(1).(*array.Date32Builder).Append(arrow.Date32FromTime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)))
		rec := b.NewRecordBatch()
		defer rec.Release()
		ps.SetParameters(rec)
	}
	for _, tc := range []struct {
		value string
		want  int64
	}{
		{"female", f.scalar(t, "acme", "SELECT count(*) FROM patient WHERE gender = 'female'")},
		// A value is data, never SQL.
		{"female' OR '1'='1", 0},
	} {
		bind(tc.value)
		info, err := ps.Execute(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := fetch(ctx, c, info)
		if err != nil {
			t.Fatal(err)
		}
		if got := firstInt(t, bs); got != tc.want {
			t.Errorf("patients with gender %q: got %d, want %d", tc.value, got, tc.want)
		}
	}
	// A statement the check refuses cannot be prepared.
	_, err = c.Prepare(ctx, "SELECT * FROM read_parquet('/etc/passwd')")
	wantCode(t, "prepare read_parquet", err, codes.InvalidArgument)
}

func TestCatalog(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	c := f.client(t)
	ctx := withKey(globexKey)
	info, err := c.GetTables(ctx, &flightsql.GetTablesOpts{IncludeSchema: true})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := fetch(ctx, c, info)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bs {
		for i := range int(b.NumRows()) {
			name := b.Column(2).(*array.String).Value(i)
			names = append(names, name)
			if got := b.Column(1).(*array.String).Value(i); got != "main" {
				t.Errorf("%s: schema %q, want main", name, got)
			}
			if name != "patient" {
				continue
			}
			s, err := flight.DeserializeSchema(b.Column(4).(*array.Binary).Value(i), memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.FieldsByName("gender"); !ok {
				t.Errorf("patient's schema has no gender: %v", s)
			}
		}
	}
	if !slices.Contains(names, "patient") || !slices.Contains(names, "observation") {
		t.Errorf("tables: %v, want patient and observation among them", names)
	}
	info, err = c.GetTables(ctx, &flightsql.GetTablesOpts{TableNameFilterPattern: ptr("obs%")})
	if err != nil {
		t.Fatal(err)
	}
	if bs, err = fetch(ctx, c, info); err != nil || len(bs) != 1 || bs[0].NumRows() == 0 {
		t.Errorf("tables like obs%%: %v %v", bs, err)
	}
	for i := range int(bs[0].NumRows()) {
		if name := bs[0].Column(2).(*array.String).Value(i); !strings.HasPrefix(name, "obs") {
			t.Errorf("tables like obs%%: %s", name)
		}
	}

	info, err = c.GetDBSchemas(ctx, &flightsql.GetDBSchemasOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if bs, err = fetch(ctx, c, info); err != nil || bs[0].NumRows() != 1 || bs[0].Column(1).(*array.String).Value(0) != "main" {
		t.Errorf("schemas: %v %v", bs, err)
	}
	info, err = c.GetSqlInfo(ctx, []flightsql.SqlInfo{flightsql.SqlInfoFlightSqlServerName, flightsql.SqlInfoFlightSqlServerReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	if bs, err = fetch(ctx, c, info); err != nil || bs[0].NumRows() != 2 {
		t.Errorf("sql info: %v %v", bs, err)
	}
	info, err = c.GetTableTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bs, err = fetch(ctx, c, info); err != nil || bs[0].Column(0).(*array.String).Value(0) != "VIEW" {
		t.Errorf("table types: %v %v", bs, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRefusals(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	c := f.client(t)
	acme, globex := withKey(acmeKey), withKey(globexKey)

	_, err := run(t, context.Background(), c, "SELECT 1")
	wantCode(t, "no key", err, codes.Unauthenticated)
	_, err = run(t, withKey("not-a-key"), c, "SELECT 1")
	wantCode(t, "unknown key", err, codes.Unauthenticated)
	_, err = run(t, withKey(globexKey, fl.TenantHeader, "acme"), c, "SELECT 1")
	wantCode(t, "globex's key for tenant acme", err, codes.PermissionDenied)

	// acme's ticket and prepared statement are no use to globex's key.
	info, err := c.Execute(acme, "SELECT count(*) FROM patient")
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetch(globex, c, info)
	wantCode(t, "acme's ticket with globex's key", err, codes.PermissionDenied)
	ps, err := c.Prepare(acme, "SELECT count(*) FROM patient")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ps.Execute(globex)
	wantCode(t, "acme's prepared statement with globex's key", err, codes.PermissionDenied)

	// Nothing writes.
	_, err = c.ExecuteUpdate(acme, "INSERT INTO patient VALUES (1)")
	wantCode(t, "update", err, codes.Unimplemented)
	_, err = c.BeginTransaction(acme)
	wantCode(t, "transaction", err, codes.Unimplemented)
	_, err = run(t, acme, c, "CREATE TABLE x AS SELECT 1")
	wantCode(t, "CREATE TABLE", err, codes.InvalidArgument)
	if err != nil && !strings.Contains(err.Error(), "statement_refused") {
		t.Errorf("CREATE TABLE: %v, want the statement check's refusal", err)
	}
}

const runaway = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = -1"

func TestTimeoutAndCancel(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	c := f.client(t)
	ctx := withKey(acmeKey)
	_, err := run(t, ctx, c, runaway)
	wantCode(t, "a runaway query", err, codes.DeadlineExceeded)

	// Canceled long before the timeout: the code says which ended it.
	f2 := newFixture(t, time.Minute)
	c2 := f2.client(t)
	cancel := func(info *flight.FlightInfo) {
		t.Helper()
		res, err := c2.CancelFlightInfo(ctx, &flight.CancelFlightInfoRequest{Info: info})
		if err != nil || res.Status != flight.CancelStatusCancelled {
			t.Fatalf("cancel: %v %v", res, err)
		}
	}
	// A running query: the forwarded request ends, DuckDB is interrupted.
	info, err := c2.Execute(ctx, runaway)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := fetch(ctx, c2, info); done <- err }()
	for deadline := time.Now().Add(20 * time.Second); fl.RunningQueries(f2.srv) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the query did not start")
		}
	}
	cancel(info)
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Errorf("a canceled query: got %v, want Canceled", err)
	}
	// A ticket canceled before it is fetched does not run.
	info, err = c2.Execute(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	cancel(info)
	if _, err := fetch(ctx, c2, info); status.Code(err) != codes.Canceled {
		t.Errorf("a ticket canceled before it ran: got %v, want Canceled", err)
	}
}
