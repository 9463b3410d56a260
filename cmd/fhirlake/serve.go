package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/consumer"
	"fhirlake/kafkaconn"
	"fhirlake/query"
	"fhirlake/query/web"
	"fhirlake/query/worker"
	"fhirlake/sandbox"
	"fhirlake/sink"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve SQL over each tenant's lake over HTTP, with a status page",
		Long: `serve answers SQL over HTTP, one tenant per request, each tenant in a DuckDB session of
its own that can read that tenant's lake only:

  POST /v1/tenants/{tenant}/query     one SELECT; JSON, CSV, Arrow IPC or Parquet by Accept
  GET  /v1/tenants/{tenant}/tables    the views, their columns and freshness, completeness
  GET  /v1/status/tenants/{tenant}    the tenant's views, freshness and completeness
  GET  /v1/status                     every tenant, completeness, last compaction, lag (admin keys only)
  GET  /                              status page, for a tenant's key or an admin key
  GET  /v1/whoami, /openapi.json, /metrics, /healthz

Every /v1/tenants request needs the tenant's API key (serve.api_keys holds only its SHA-256;
"fhirlake serve hash-key" makes one); the status routes take the tenant's key or an admin key
(serve.admin_keys). A tenant's requests wait for one of its serve.connections, at most
serve.max_queued of them (429 beyond), within serve.query_timeout. S3 tenants are read
directly through DuckDB's httpfs (serve.httpfs_extension) with the tenant's own key; their
lake is listed again before a request at most every serve.refresh_interval.

Each tenant's SQL runs in a worker process of its own, confined to its lake (Landlock) and
bounded by serve.worker_memory_limit (a cgroup, else RLIMIT_AS); a worker that dies is
replaced on the tenant's next request (503 worker_restarting meanwhile). At most
serve.max_workers run; one idle for serve.worker_idle_timeout stops.

With kafka configured, serve reads the consumer group's committed offsets every 5 s: each
tenant's lake is complete through the time before which every change produced to Kafka is
durable, shown on /tables, the status routes, the Fhirlake-Complete-Through header of every
tenant response and fhirlake_lake_complete_through_seconds.

With serve.tls.cert_file and key_file, serve speaks HTTPS only (TLS 1.2 or newer,
serve.tls.min_version), reading the files again when they change; serve.tls.client_ca_file
also requires every client to present a certificate of that CA. Without them it speaks plain
HTTP, and warns when serve.listen is not a loopback address.

With serve.flight.listen, serve also speaks Arrow Flight SQL (gRPC, TLS as serve.tls says) for
ADBC, JDBC, Grafana, Superset and DBeaver: the same keys (a bearer token), workers, statement
checks and limits; statements, prepared statements, the tenant's views as tables,
cancellation; nothing that writes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			sc := cfg.Serve.WithDefaults()
			if listen != "" {
				sc.Listen = listen
			}
			if err := sc.Validate(cfg.Tenants); err != nil {
				return err
			}
			if len(cfg.Tenants) == 0 {
				return errors.New("no tenants configured: add tenants to the configuration")
			}
			return runServe(contextOf(cmd), cfg, sc, g.logger())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "host:port to listen on (default: serve.listen)")
	cmd.AddCommand(newHashKeyCmd())
	return cmd
}

func newHashKeyCmd() *cobra.Command {
	var generate bool
	cmd := &cobra.Command{
		Use:   "hash-key",
		Short: "Print the key_sha256 of an API key read from stdin (or of a new one with --generate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if generate {
				b := make([]byte, 32)
				rand.Read(b)
				key := "flk_" + base64.RawURLEncoding.EncodeToString(b)
				fmt.Fprintf(out, "key: %s\nkey_sha256: %s\n", key, config.HashAPIKey(key))
				return nil
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			key := strings.TrimSpace(line)
			if key == "" {
				if err != nil {
					return fmt.Errorf("read the key from stdin: %w", err)
				}
				return errors.New("no key on stdin")
			}
			fmt.Fprintln(out, config.HashAPIKey(key))
			return nil
		},
	}
	cmd.Flags().BoolVar(&generate, "generate", false, "make a new random key and print it with its hash")
	return cmd
}

// runServe serves until ctx is done, then drains requests for up to 10 s.
func runServe(ctx context.Context, cfg config.Config, sc config.Serve, log *slog.Logger) error {
	lakes := make([]query.Lake, 0, len(cfg.Tenants))
	for _, t := range cfg.Tenants {
		l := query.Lake{Tenant: t.Name, Root: t.Store.Path}
		if t.Store.Type == "s3" {
			store, err := openStore(ctx, t)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", t.Name, err)
			}
			a := worker.S3Access(t)
			l.Store, l.S3 = store, &a
		}
		lakes = append(lakes, l)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pool := query.NewPool(lakes, query.PoolOptions{
		Session: query.Options{
			MemoryLimit:  sc.MemoryLimit,
			Threads:      sc.Threads,
			Connections:  sc.Connections,
			QueryTimeout: sc.QueryTimeout,
			SpeedOverlap: sc.SpeedOverlap,
			TempDir:      filepath.Join(cfg.WorkDir, "query"),
			// Loaded into S3 tenants' sessions only.
			HTTPFSExtension:  sc.HTTPFSExtension,
			IcebergExtension: sc.IcebergExtension,
			AvroExtension:    sc.AvroExtension,
		},
		MaxSessions:     sc.MaxSessions,
		RefreshInterval: sc.RefreshInterval,
		MaxQueued:       sc.MaxQueued,
		TenantLabels:    sc.MetricsTenantLabels,
	}, nil, log) // the workers hold the sessions: their metrics are gathered from them
	defer pool.Close()
	// Sessions in use are brought up to date in the background, so that a
	// request seldom waits for a rebuild of the views.
	freshCtx, stopFresh := context.WithCancel(ctx)
	freshDone := make(chan struct{})
	go func() { defer close(freshDone); pool.KeepFresh(freshCtx) }()
	defer func() { stopFresh(); <-freshDone }()
	keys := make([]web.Key, len(sc.APIKeys))
	for i, k := range sc.APIKeys {
		keys[i] = web.Key{Tenant: k.Tenant, SHA256: k.KeySHA256, Name: k.Name}
	}
	admins := make([]web.AdminKey, len(sc.AdminKeys))
	for i, k := range sc.AdminKeys {
		admins[i] = web.AdminKey{SHA256: k.KeySHA256, Name: k.Name}
	}
	stores := map[string]sink.Store{}
	for _, l := range lakes {
		if l.Store != nil {
			stores[l.Tenant] = l.Store
		}
	}
	sup, closeSup, err := newSupervisor(cfg, sc, stores, reg, log)
	if err != nil {
		return err
	}
	defer closeSup()
	var lagFunc web.LagFunc
	if lag := newLagReporter(cfg.Kafka); lag.configured() {
		defer lag.close()
		lagFunc = lag.lag
	}
	complete, stopComplete := startCompleteness(ctx, cfg, log)
	defer stopComplete()
	// Closed after the server has drained: the last requests' records are
	// written before serve exits.
	aw, err := openAudit(cfg.Audit, reg, log)
	if err != nil {
		return err
	}
	defer aw.Close()
	srv := web.New(pool, web.Options{
		Keys:            keys,
		AdminKeys:       admins,
		MaxRequestBytes: int64(sc.MaxRequestBytes),
		MaxResultRows:   sc.MaxResultRows,
		MaxResultBytes:  int64(sc.MaxResultBytes),
		QueryTimeout:    sc.QueryTimeout,
		DisableStatus:   sc.DisableStatus,
		TenantLabels:    sc.MetricsTenantLabels,
		Lag:             lagFunc,
		Completeness:    complete,
		Gatherer:        prometheus.Gatherers{reg, sup},
		Forward:         sup,
		Audit:           aw,
	}, reg, log)
	// Flight SQL stops with the HTTP API: when ctx ends, or when either
	// fails.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	waitFlight, err := startFlight(ctx, sc, keys, sup, aw, stop, log)
	if err != nil {
		return err
	}
	err = listenAndServe(ctx, sc, srv.Handler(), log,
		"tenants", len(lakes), "keys", len(keys), "admin_keys", len(admins))
	stop()
	return errors.Join(err, waitFlight())
}

// listenAndServe serves handler on sc.Listen, over TLS when sc.TLS is set,
// until ctx is done, then drains requests for up to 10 s. attrs go into
// the log line that says it is serving.
func listenAndServe(ctx context.Context, sc config.Serve, handler http.Handler, log *slog.Logger, attrs ...any) error {
	var tlsCfg *tls.Config
	if sc.TLS.Enabled() {
		var err error
		if tlsCfg, err = serveTLSConfig(sc.TLS, tlsCheckEvery, log); err != nil {
			return err
		}
	} else if !config.Loopback(sc.Listen) {
		log.Warn("serve: plain HTTP on a listen address other machines can reach: API keys and results cross the network unencrypted; set serve.tls", "listen", sc.Listen)
	}
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	hs := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A response streams rows for at most the query timeout; the rest is
		// slack for a slow client.
		WriteTimeout:   sc.QueryTimeout + time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
		// Failed handshakes and the like, in the service's log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
		go func() { done <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { done <- hs.Serve(ln) }()
	}
	log.Info("serving", append([]any{"addr", ln.Addr().String(), "scheme", scheme,
		"client_certificates", sc.TLS.ClientCAFile != ""}, attrs...)...)
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = hs.Shutdown(shutdown)
	log.Info("stopped serving")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newSupervisor runs each tenant's SQL in a worker process of its own:
// the same binary's hidden serve-worker, given that tenant's configuration
// and credentials only, confined by Landlock and bounded by a cgroup of its
// own (or RLIMIT_AS).
// A tenant that reads its bucket through a role (or the server's own AWS
// identity) gets temporary credentials from the front (workerCredentials),
// never the identity that assumes its role.
// The returned function stops the workers and removes what they used.
func newSupervisor(cfg config.Config, sc config.Serve, stores map[string]sink.Store, reg prometheus.Registerer, log *slog.Logger) (*worker.Supervisor, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("serve: %w", err)
	}
	// Sockets live in a directory only this user can enter; Unix socket
	// paths are short, so it is under the system's temp dir.
	sandbox.SweepStale(os.TempDir(), "fhirlake-serve", true)
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("fhirlake-serve-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("serve: %w", err)
	}
	spill := filepath.Join(cfg.WorkDir, "query")
	if err := os.MkdirAll(spill, 0o700); err != nil {
		return nil, nil, fmt.Errorf("serve: %w", err)
	}
	cg, cgErr := sandbox.NewCgroups("fhirlake-serve")
	noLandlock := sandbox.LandlockABI() == 0
	log.Info("query workers", "memory_bound", cg.Mechanism(), "memory", sc.WorkerMemoryLimit.String(),
		"landlock_abi", sandbox.LandlockABI(), "max_workers", sc.MaxWorkers, "cgroup_err", cgErr)
	if noLandlock {
		log.Warn("this kernel has no Landlock: query workers run without file confinement")
	}
	limits := sandbox.Limits{Memory: int64(sc.WorkerMemoryLimit)}
	if cg.Mechanism() == "rlimit" {
		limits.Memory = rlimitAS(limits.Memory)
	}
	tenants := map[string]config.Tenant{}
	for _, t := range cfg.Tenants {
		tenants[t.Name] = t
	}
	env := []string{"PATH=/usr/bin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	sup := worker.New(worker.Options{
		Command:     []string{exe, "serve-worker"},
		Env:         env,
		Dir:         dir,
		TempDir:     spill,
		MaxWorkers:  sc.MaxWorkers,
		IdleTimeout: sc.WorkerIdleTimeout,
		Grace:       sc.WorkerGrace,
		Limits:      limits,
		Cgroups:     cg,
		Connections: sc.Connections,
		MaxQueued:   sc.MaxQueued,
		Spec: func(tenant string) (worker.Spec, bool) {
			t, ok := tenants[tenant]
			if !ok {
				return worker.Spec{}, false
			}
			spec := worker.Spec{
				Tenant: t,
				Env:    map[string]string{},
				Root:   t.Store.Path,
				Session: query.Options{
					MemoryLimit:  sc.MemoryLimit,
					Threads:      sc.Threads,
					Connections:  sc.Connections,
					QueryTimeout: sc.QueryTimeout,
					SpeedOverlap: sc.SpeedOverlap,
					// Loaded into S3 tenants' sessions only.
					HTTPFSExtension:  sc.HTTPFSExtension,
					IcebergExtension: sc.IcebergExtension,
					AvroExtension:    sc.AvroExtension,
				},
				RefreshInterval: sc.RefreshInterval,
				MaxRequestBytes: int64(sc.MaxRequestBytes),
				MaxResultRows:   sc.MaxResultRows,
				MaxResultBytes:  int64(sc.MaxResultBytes),
				TenantLabels:    sc.MetricsTenantLabels,
				NoLandlock:      noLandlock,
			}
			if t.Store.Type == "s3" {
				spec.Root = "" // read through the bucket, not a directory
			}
			if temporaryCredentials(t) {
				// The worker reads with the key workerCredentials hands it.
				st := t.Store
				st.AccessKeyEnv, st.SecretKeyEnv, st.SessionTokenEnv = workerKeyEnv, workerSecretEnv, workerTokenEnv
				st.RoleARN, st.ExternalID, st.STSEndpoint = "", "", ""
				spec.Tenant.Store = st
				return spec, true
			}
			for _, name := range []string{t.Store.AccessKeyEnv, t.Store.SecretKeyEnv, t.Store.SessionTokenEnv} {
				if v, ok := os.LookupEnv(name); name != "" && ok {
					spec.Env[name] = v
				}
			}
			return spec, true
		},
		Credentials: func(ctx context.Context, tenant string) (worker.Credentials, error) {
			return workerCredentials(ctx, tenants[tenant], stores[tenant])
		},
	}, reg, log)
	closeAll := func() {
		if err := sup.Close(); err != nil {
			log.Error("stop query workers", "err", err)
		}
		if err := cg.Close(); err != nil {
			log.Warn("remove the workers' cgroups", "err", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("remove the workers' directory", "err", err)
		}
	}
	return sup, closeAll, nil
}

// The variables a worker's temporary credentials reach it in.
const (
	workerKeyEnv    = "FHIRLAKE_WORKER_S3_ACCESS_KEY"
	workerSecretEnv = "FHIRLAKE_WORKER_S3_SECRET_KEY"
	workerTokenEnv  = "FHIRLAKE_WORKER_S3_SESSION_TOKEN"
)

// temporaryCredentials tells whether a tenant's worker gets credentials from
// the front: an S3 tenant with a role, or without a static key (the server's
// own AWS identity).
func temporaryCredentials(t config.Tenant) bool {
	return t.Store.Type == "s3" && (t.Store.RoleARN != "" || t.Store.AccessKeyEnv == "")
}

// workerCredentials are the credentials the tenant's store reads with —
// its role's session, renewed by the store before they expire — for its
// worker, with their expiry, so that the supervisor retires the worker in
// time. Nothing for a tenant that reads with a static key of its own.
func workerCredentials(ctx context.Context, t config.Tenant, store sink.Store) (worker.Credentials, error) {
	if !temporaryCredentials(t) {
		return worker.Credentials{}, nil
	}
	s3, ok := store.(*sink.S3)
	if !ok {
		return worker.Credentials{}, fmt.Errorf("tenant %s: no S3 store", t.Name)
	}
	c, err := s3.Credentials().Retrieve(ctx)
	if err != nil {
		return worker.Credentials{}, err
	}
	out := worker.Credentials{Env: map[string]string{workerKeyEnv: c.AccessKeyID, workerSecretEnv: c.SecretAccessKey, workerTokenEnv: c.SessionToken}}
	if c.CanExpire {
		out.Expires = c.Expires
	}
	return out, nil
}

// lagReporter asks Kafka for the consumer group's lag, through one client
// made on first use; an unreachable cluster makes the status say
// "unknown".
type lagReporter struct {
	cfg  config.Kafka
	mu   sync.Mutex
	cl   *kgo.Client
	adm  *kadm.Client
	fail error
}

func newLagReporter(cfg config.Kafka) *lagReporter { return &lagReporter{cfg: cfg} }

// configured says whether there is a consumer group to ask about.
func (l *lagReporter) configured() bool {
	return len(l.cfg.Brokers) > 0 && l.cfg.Group != "" && len(l.cfg.Topics) > 0
}

func (l *lagReporter) lag(ctx context.Context) (*web.Lag, error) {
	l.mu.Lock()
	if l.adm == nil && l.fail == nil {
		var opts []kgo.Opt
		if opts, l.fail = kafkaconn.Options(ctx, l.cfg); l.fail == nil {
			l.cl, l.fail = kgo.NewClient(append(opts, kgo.ClientID(l.cfg.ClientID+"-serve"),
				kgo.DialTimeout(2*time.Second), kgo.RequestRetries(1))...)
		}
		if l.fail == nil {
			l.adm = kadm.NewClient(l.cl)
		}
	}
	adm, fail := l.adm, l.fail
	l.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	gl, err := consumer.Lag(ctx, adm, l.cfg.Group, l.cfg.Topics)
	if err != nil {
		return nil, kafkaErr(err)
	}
	out := &web.Lag{Group: l.cfg.Group, Topics: l.cfg.Topics, Total: gl.Total}
	for _, p := range gl.Partitions {
		out.Partitions = append(out.Partitions, web.PartitionLag{Topic: p.Topic, Partition: p.Partition, Lag: p.Lag})
	}
	return out, nil
}

func (l *lagReporter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cl != nil {
		l.cl.Close()
	}
}

// rlimitAS is the address-space bound that stands for a memory bound
// without a cgroup: Go and DuckDB reserve far more address space than they
// touch (a worker with 2 threads idles at about 2GB of it and 60MB
// resident; building the views of 1M observations took 2.6GiB of it for
// 1.0GiB resident, with the allocator's arenas capped by
// sandbox.FewerMallocArenas), so it is the memory bound plus 2GiB.
func rlimitAS(memory int64) int64 { return memory + 2<<30 }
