package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/consumer"
	"fhirlake/flatten"
	"fhirlake/kafkaconn"
	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/sink"
)

func newConsumeCmd(g *globals) *cobra.Command {
	var noCreate bool
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Consume notifications into each tenant's lake until SIGTERM",
		Long: `consume joins the Kafka consumer group, writes every change to its tenant's store as
Parquet and commits offsets once the files are durable. Records that cannot be stored go to
the dead-letter topic with their reason. SIGTERM stops fetching, flushes, commits and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if len(cfg.Tenants) == 0 {
				return errors.New("no tenants configured: add tenants to the configuration")
			}
			log := g.logger()
			ctx := contextOf(cmd)
			if !noCreate {
				if err := ensureTopics(ctx, cfg.Kafka); err != nil {
					return err
				}
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			ready := &readiness{}
			if cfg.Metrics.Listen != "" {
				stopHTTP, err := serveMetrics(cfg.Metrics, reg, ready, log)
				if err != nil {
					return err
				}
				defer stopHTTP()
			}
			return runConsumer(ctx, cfg, reg, log, ready)
		},
	}
	cmd.Flags().BoolVar(&noCreate, "no-create-topics", false, "do not create missing topics")
	return cmd
}

// runConsumer wires stores, the sink and the consumer, and runs it until
// ctx is done.
func runConsumer(ctx context.Context, cfg config.Config, reg prometheus.Registerer, log *slog.Logger, ready *readiness, extra ...kgo.Opt) error {
	stores, err := openStores(ctx, cfg)
	if err != nil {
		return err
	}
	views, err := flatten.LoadViews(cfg.ViewsDir)
	if err != nil {
		return err
	}
	routing := consumer.RouteOptions{Header: cfg.Routing.Header, Topics: cfg.Routing.Topics, PayloadFields: cfg.Routing.PayloadFields, TagSystem: cfg.Routing.TagSystem}
	if cfg.Routing.BaseURLPattern != "" {
		routing.BaseURLPattern = regexp.MustCompile(cfg.Routing.BaseURLPattern) // validated with the config
	}
	fetcher, err := newFetcher(cfg)
	if err != nil {
		return err
	}
	if fetcher != nil {
		defer fetcher.Close()
	}
	conn, err := kafkaconn.Options(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	applyMemoryLimit(cfg.Memory, log)
	w, err := sink.NewWriter(stores, sink.WriterOptions{WorkDir: filepath.Join(cfg.WorkDir, "flush"), Parquet: sink.ParquetOptions{MemoryLimit: cfg.Memory.EncoderMemoryLimit()}}, reg)
	if err != nil {
		return err
	}
	defer w.Close()
	c, err := consumer.New(consumer.Options{
		Brokers:          cfg.Kafka.Brokers,
		Topics:           cfg.Kafka.Topics,
		Group:            cfg.Kafka.Group,
		DeadLetterTopic:  cfg.Kafka.DeadLetterTopic,
		ClientID:         cfg.Kafka.ClientID,
		Routing:          routing,
		Fetcher:          fetcher,
		Tenants:          tenantNames(cfg),
		MaxRows:          cfg.Flush.MaxRows,
		MaxBytes:         int64(cfg.Flush.MaxBytes),
		MaxAge:           cfg.Flush.MaxAge,
		MaxBufferedBytes: int64(cfg.Memory.Budget()),
		RevokeTimeout:    cfg.Kafka.RebalanceTimeout / 2,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		Views:            views,
		Erasures: func(ctx context.Context, tenant string) ([]*lake.Erasure, error) {
			return sink.ReadErasures(ctx, stores[tenant])
		},
		ClientOpts: append(append(conn,
			kgo.SessionTimeout(cfg.Kafka.SessionTimeout),
			kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout),
			kgo.HeartbeatInterval(min(3*time.Second, cfg.Kafka.SessionTimeout/5)),
		), extra...),
	}, w, reg, log)
	if err != nil {
		return err
	}
	log.Info("consuming", "topics", cfg.Kafka.Topics, "group", cfg.Kafka.Group, "tenants", len(cfg.Tenants))
	if ready != nil {
		ready.set(true)
	}
	err = c.Run(ctx)
	if ready != nil {
		ready.set(false)
	}
	log.Info("consumer stopped")
	return err
}

// applyMemoryLimit gives the Go runtime its share of memory.limit as a soft
// limit, unless GOMEMLIMIT already sets one.
func applyMemoryLimit(m config.Memory, log *slog.Logger) {
	switch {
	case m.ApplyGoLimit():
		log.Info("memory limits", "process", m.Limit, "go_soft_limit", config.ByteSize(m.GoLimit()), "encoder", config.ByteSize(m.EncoderLimit()), "buffer_budget", m.Budget())
	case m.Limit > 0:
		log.Info("memory.limit set; the Go runtime keeps GOMEMLIMIT", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
	}
}

// newFetcher builds the reader of id-only payloads from the tenants' FHIR
// servers; nil when no tenant has one.
func newFetcher(cfg config.Config) (*notification.Fetcher, error) {
	targets := map[string]notification.FetchTarget{}
	for _, t := range cfg.Tenants {
		if t.FHIR.BaseURL != "" {
			targets[t.Name] = notification.FetchTarget{BaseURL: t.FHIR.BaseURL, Token: envOf(t.FHIR.TokenEnv)}
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	return notification.NewFetcher(notification.FetchOptions{
		Concurrency:   cfg.Fetch.Concurrency,
		RatePerSecond: cfg.Fetch.RatePerSecond,
		Timeout:       cfg.Fetch.Timeout,
		MaxRetries:    cfg.Fetch.MaxRetries,
	}, targets)
}

type readiness struct{ ok atomic.Bool }

func (r *readiness) set(v bool) { r.ok.Store(v) }

// serveMetrics serves /metrics, /healthz and /readyz until the returned
// function is called.
func serveMetrics(m config.Metrics, reg *prometheus.Registry, ready *readiness, log *slog.Logger) (func(), error) {
	addr := m.Listen
	mux := http.NewServeMux()
	if m.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready.ok.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("metrics server shutdown", "err", err)
		}
	}, nil
}
