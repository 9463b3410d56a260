package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fhirlake/config"
	"fhirlake/query"
	"fhirlake/query/web"
	"fhirlake/sandbox"
	"fhirlake/sink"
)

// OpenStore opens an S3 tenant's store with the credentials of its Spec.
type OpenStore func(ctx context.Context, t config.Tenant) (sink.Store, error)

// Main is a worker: it reads its Spec from spec (the front writes it and
// closes the pipe), confines itself, then serves its tenant on the Spec's
// socket until ctx ends (SIGTERM), letting requests finish for the grace
// period. It writes "ready" to ready once it listens.
func Main(ctx context.Context, spec io.Reader, ready io.Writer, open OpenStore, log *slog.Logger) error {
	var s Spec
	if err := json.NewDecoder(spec).Decode(&s); err != nil {
		return fmt.Errorf("worker: read spec: %w", err)
	}
	log = log.With("tenant", s.Tenant.Name, "pid", os.Getpid())
	for k, v := range s.Env {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	sandbox.FewerMallocArenas()
	if err := os.MkdirAll(s.TempDir, 0o700); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	l := query.Lake{Tenant: s.Tenant.Name, Root: s.Root}
	paths := sandbox.Paths{ReadWrite: []string{s.TempDir}}
	if s.Tenant.Store.Type == "s3" {
		// DuckDB reads the bucket over the network; of the file system it
		// needs only the extension that lets it, and the tenant's CA bundle.
		for _, ext := range []string{s.Session.HTTPFSExtension, s.Session.IcebergExtension, s.Session.AvroExtension} {
			if ext != "" {
				paths.ReadOnly = append(paths.ReadOnly, ext)
			}
		}
		if ca := s.Tenant.Store.CAFile; ca != "" {
			paths.ReadOnly = append(paths.ReadOnly, ca)
		}
	} else {
		paths.ReadOnly = append(paths.ReadOnly, s.Root)
	}
	// Listening makes the socket, which the sandbox would forbid.
	_ = os.Remove(s.Socket)
	ln, err := net.Listen("unix", s.Socket)
	if err != nil {
		return fmt.Errorf("worker: listen: %w", err)
	}
	defer ln.Close()
	if !s.NoLandlock {
		if err := sandbox.Restrict(paths); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	if s.Tenant.Store.Type == "s3" {
		if open == nil {
			return errors.New("worker: no way to open an S3 store")
		}
		store, err := open(ctx, s.Tenant)
		if err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		a := S3Access(s.Tenant)
		l.Store, l.S3 = store, &a
	}
	so := s.Session
	so.TempDir = s.TempDir
	// The session's metrics (view builds, refresh errors, …) live here and
	// reach the front's /metrics through GET /_worker/metrics.
	reg := prometheus.NewRegistry()
	pool := query.NewPool([]query.Lake{l}, query.PoolOptions{
		Session:         so,
		MaxSessions:     1,
		RefreshInterval: s.RefreshInterval,
		// The front queues; a request reaches the worker with a slot.
		MaxQueued:    so.Connections,
		TenantLabels: s.TenantLabels,
	}, reg, log)
	defer pool.Close()
	freshCtx, stopFresh := context.WithCancel(ctx)
	freshDone := make(chan struct{})
	go func() { defer close(freshDone); pool.KeepFresh(freshCtx) }()
	defer func() { stopFresh(); <-freshDone }()

	srv := web.New(pool, web.Options{
		Keys:            []web.Key{{Tenant: s.Tenant.Name, SHA256: config.HashAPIKey(s.Token), Name: "front"}},
		MaxRequestBytes: s.MaxRequestBytes,
		MaxResultRows:   s.MaxResultRows,
		MaxResultBytes:  s.MaxResultBytes,
		QueryTimeout:    so.QueryTimeout,
		TrustRequestID:  true,
		// The front reads Kafka and hands the lake's completeness over:
		// the worker holds no broker address.
		TrustCompleteness: true,
		// The front writes the audit record, with the rows reported here.
		ReportOutcome: true,
	}, nil, log)
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	if s.RawSQLForTests {
		mux.HandleFunc("POST /test/raw-sql", rawSQL(s))
	}
	mux.Handle("GET /_worker/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	var abandoned atomic.Int64
	mux.HandleFunc("GET /_worker/abandoned", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, abandoned.Load())
	})
	exit := func() { os.Exit(3) }
	if s.NoWatchdogForTests {
		exit = func() {}
	}
	hs := &http.Server{Handler: watchdog(mux, s.Grace, &abandoned, exit, log), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	if _, err := io.WriteString(ready, "ready\n"); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	log.Debug("worker serving", "socket", s.Socket)
	select {
	case err := <-done:
		return fmt.Errorf("worker: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), s.Grace)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("worker: shutdown: %w", err)
	}
	return nil
}

// watchdog ends the process when a request is still running grace after
// its context ended: DuckDB does not always heed an interrupt (constant
// folding while planning does not), and only the process's end frees what
// the query holds. The front then starts a new worker. abandoned counts
// the requests running on after their context ended, which the front
// asks for at /_worker/abandoned.
func watchdog(h http.Handler, grace time.Duration, abandoned *atomic.Int64, exit func(), log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
				return
			case <-r.Context().Done():
			}
			abandoned.Add(1)
			defer abandoned.Add(-1)
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				log.Error("a request outlived its cancellation by the grace period; exiting", "grace", grace, "path", r.URL.Path)
				exit()
				<-done
			}
		}()
		defer close(done)
		h.ServeHTTP(w, r)
	})
}

// rawSQL runs the body's SQL on a DuckDB of its own, with none of the
// session's settings or checks: what it may read is what the sandbox lets
// the process read. For an S3 tenant, that DuckDB has httpfs and the
// tenant's key offered for every URL: what it may read of a bucket is what
// that key opens.
func rawSQL(s Spec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		db, err := sql.Open("duckdb", "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if s.Tenant.Store.Type == "s3" {
			secret, err := S3Access(s.Tenant).UnscopedSecretForTests(s.Tenant.Name)
			if err == nil {
				_, err = db.ExecContext(r.Context(), "LOAD '"+strings.ReplaceAll(s.Session.HTTPFSExtension, "'", "''")+"'")
			}
			if err == nil {
				_, err = db.ExecContext(r.Context(), secret)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		var n int64
		if err := db.QueryRowContext(r.Context(), string(b)).Scan(&n); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintln(w, n)
	}
}

// S3Access is how a session's DuckDB reaches an S3 tenant's bucket: its
// location and the static key named by the tenant's configuration, read
// from the environment.
func S3Access(t config.Tenant) query.S3Access {
	return query.S3Access{
		Bucket: t.Store.Bucket, Prefix: t.Store.Prefix, Endpoint: t.Store.Endpoint, Region: t.Store.Region,
		PathStyle: t.Store.PathStyle, AccessKey: envOf(t.Store.AccessKeyEnv), SecretKey: envOf(t.Store.SecretKeyEnv),
		SessionToken: envOf(t.Store.SessionTokenEnv),
		CAFile:       t.Store.CAFile,
	}
}

func envOf(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}
