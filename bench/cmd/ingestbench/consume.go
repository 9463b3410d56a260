package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/consumer"
	"fhirlake/flatten"
	"fhirlake/kafkaconn"
	"fhirlake/sink"
)

// runConsume is `ingestbench consume`: fhirlake's consumer and sink, wired
// as `fhirlake consume` wires them, but with a choice of views, so that the
// raw dataset alone can be measured (the binary always writes the default
// views). With INGESTBENCH_CPUPROFILE=FILE it writes a CPU profile.
func runConsume(args []string) error {
	fs := flag.NewFlagSet("consume", flag.ExitOnError)
	cfgPath := fs.String("config", "", "fhirlake configuration file")
	views := fs.String("views", "none", "none: the raw dataset only; default: the raw dataset and every default view")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if prof := os.Getenv("INGESTBENCH_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	stores := map[string]sink.Store{}
	var names []string
	for _, t := range cfg.Tenants {
		if t.Store.Type != "s3" {
			return fmt.Errorf("tenant %s: only s3 stores are supported here", t.Name)
		}
		s, err := sink.NewS3(ctx, sink.S3Options{
			Bucket: t.Store.Bucket, Prefix: t.Store.Prefix, Endpoint: t.Store.Endpoint,
			Region: t.Store.Region, PathStyle: t.Store.PathStyle,
			AccessKey: os.Getenv(t.Store.AccessKeyEnv), SecretKey: os.Getenv(t.Store.SecretKeyEnv),
		})
		if err != nil {
			return err
		}
		stores[t.Name] = s
		names = append(names, t.Name)
	}
	var vs []*flatten.View
	switch *views {
	case "none":
	case "default":
		if vs, err = flatten.LoadViews(""); err != nil {
			return err
		}
	default:
		return fmt.Errorf("views %q: want none or default", *views)
	}
	// Routing as `fhirlake consume` configures it; id-only notifications
	// (none in the synthetic stream) would be dead-lettered, not fetched.
	routing := consumer.RouteOptions{Header: cfg.Routing.Header, Topics: cfg.Routing.Topics, PayloadFields: cfg.Routing.PayloadFields, TagSystem: cfg.Routing.TagSystem}
	if cfg.Routing.BaseURLPattern != "" {
		if routing.BaseURLPattern, err = regexp.Compile(cfg.Routing.BaseURLPattern); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logf("metrics server: %v", err)
			}
		}()
		defer srv.Close()
	}
	conn, err := kafkaconn.Options(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	// memory.limit as `fhirlake consume` applies it.
	cfg.Memory.ApplyGoLimit()
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
		Tenants:          names,
		MaxRows:          cfg.Flush.MaxRows,
		MaxBytes:         int64(cfg.Flush.MaxBytes),
		MaxAge:           cfg.Flush.MaxAge,
		MaxBufferedBytes: int64(cfg.Memory.Budget()),
		RevokeTimeout:    cfg.Kafka.RebalanceTimeout / 2,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		Views:            vs,
		ClientOpts: append(conn,
			kgo.SessionTimeout(cfg.Kafka.SessionTimeout),
			kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout),
			kgo.HeartbeatInterval(min(3*time.Second, cfg.Kafka.SessionTimeout/5)),
		),
	}, w, reg, log)
	if err != nil {
		return err
	}
	if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
