package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	"fhirlake/query"
	"fhirlake/query/web"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve SQL over each tenant's lake over HTTP, with a status page",
		Long: `serve answers SQL over HTTP, one tenant per request, each tenant in a DuckDB session of
its own that can read that tenant's lake only:

  POST /v1/tenants/{tenant}/query     one SELECT; JSON, CSV, Arrow IPC or Parquet by Accept
  GET  /v1/tenants/{tenant}/tables    the views, their columns and freshness
  GET  /v1/status/tenants/{tenant}    the tenant's views and freshness
  GET  /v1/status                     every tenant, last compaction, lag (admin keys only)
  GET  /                              status page, for a tenant's key or an admin key
  GET  /v1/whoami, /openapi.json, /metrics, /healthz

Every /v1/tenants request needs the tenant's API key (serve.api_keys holds only its SHA-256;
"fhirlake serve hash-key" makes one); the status routes take the tenant's key or an admin key
(serve.admin_keys). A tenant's requests wait for one of its serve.connections, at most
serve.max_queued of them (429 beyond), within serve.query_timeout. S3 tenants are read
directly through DuckDB's httpfs (serve.httpfs_extension) with the tenant's own key; their
lake is listed again before a request at most every serve.refresh_interval.`,
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
			a := s3Access(t)
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
			HTTPFSExtension: sc.HTTPFSExtension,
		},
		MaxSessions:     sc.MaxSessions,
		RefreshInterval: sc.RefreshInterval,
		MaxQueued:       sc.MaxQueued,
		TenantLabels:    sc.MetricsTenantLabels,
	}, reg, log)
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
	var lagFunc web.LagFunc
	if lag := newLagReporter(cfg.Kafka); lag.configured() {
		defer lag.close()
		lagFunc = lag.lag
	}
	srv := web.New(pool, web.Options{
		Keys:            keys,
		AdminKeys:       admins,
		MaxRequestBytes: int64(sc.MaxRequestBytes),
		MaxResultRows:   sc.MaxResultRows,
		QueryTimeout:    sc.QueryTimeout,
		DisableStatus:   sc.DisableStatus,
		TenantLabels:    sc.MetricsTenantLabels,
		Lag:             lagFunc,
		Gatherer:        reg,
	}, reg, log)
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A response streams rows for at most the query timeout; the rest is
		// slack for a slow client.
		WriteTimeout:   sc.QueryTimeout + time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "tenants", len(lakes), "keys", len(keys), "admin_keys", len(admins))
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
		l.cl, l.fail = kgo.NewClient(kgo.SeedBrokers(l.cfg.Brokers...), kgo.ClientID(l.cfg.ClientID+"-serve"),
			kgo.DialTimeout(2*time.Second), kgo.RequestRetries(1))
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
		return nil, err
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
