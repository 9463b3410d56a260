package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/push"
	"github.com/spf13/cobra"

	"fhirlake/compactor"
	"fhirlake/config"
	"fhirlake/sink"
)

func newCompactCmd(g *globals) *cobra.Command {
	var (
		tenants     []string
		schedule    string
		daemon      bool
		fullRefresh bool
		pushURL     string
		waitLease   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "compact [--tenant T]... [--full-refresh] [--wait-lease D] [--daemon | --schedule CRON]",
		Short: "Build each tenant's batch snapshot with dbt and publish it atomically",
		Long: `compact runs the batch layer: for each tenant, the dbt project (staging → intermediate →
marts) over the speed files newer than the tenant's watermark and its previous snapshot.
Only when every model and test passes are the marts uploaded to
batch/<snapshot-id>/<model>/ and _manifest/batch.json written, last; a failed tenant keeps
its previous snapshot and never holds up the others. With an iceberg section, each model
of the published snapshot then becomes a table of the tenant's namespace (marts under
their names, state models as <dataset>_latest), one commit per table. Afterwards, speed files older than
the watermark minus compact.speed_retention and snapshots beyond compact.keep_snapshots
are deleted.

Without --tenant every configured tenant runs, compact.parallelism at a time; the exit
status is non-zero when any tenant failed, and the failing models and tests are named.
--daemon runs on compact.schedule (default "0 2 * * *", nightly) and --schedule CRON on
the given cron expression, serving /metrics on metrics.listen until SIGTERM. A single run
(a Kubernetes CronJob) has no endpoint to scrape: --push-gateway URL pushes its metrics to
a Prometheus Pushgateway when it ends, under job="fhirlake_compactor".

One compactor works on a tenant at a time: a run takes the tenant's lease
(_lease/compactor.json in its store) and renews it while it lasts. A run that finds
the lease held by another compactor names it (host, pid, since) and gives up on that
tenant, which makes the exit status non-zero while the other tenants proceed; with
--wait-lease D it waits up to D for the lease instead. The daemon skips such a tenant
until its next activation. The lease of a compactor that died lapses after
compact.lease_ttl (2m).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			cc := cfg.Compact.WithDefaults()
			if err := cc.Validate(); err != nil {
				return err
			}
			if daemon && schedule == "" {
				schedule = cc.Schedule
			}
			log := g.logger()
			ctx := contextOf(cmd)
			reg := prometheus.NewRegistry()
			if waitLease < 0 {
				return fmt.Errorf("--wait-lease: must not be negative, got %s", waitLease)
			}
			c, ts, err := buildCompactor(ctx, cfg, cc, tenants, fullRefresh, waitLease, reg, log)
			if err != nil {
				return err
			}
			aw, err := openAudit(cfg.Audit, reg, log)
			if err != nil {
				return err
			}
			defer aw.Close()
			if schedule == "" {
				started := time.Now()
				results, err := c.CompactAll(ctx, ts)
				auditCompactions(aw, ts, results, err, started)
				printCompactResults(cmd.OutOrStdout(), ts, results)
				if pushURL != "" {
					if perr := pushMetrics(pushURL, reg); perr != nil {
						log.Error("push metrics", "url", pushURL, "err", perr)
						err = errors.Join(err, perr)
					}
				}
				if errors.As(err, new(*compactor.LeaseHeldError)) && waitLease == 0 {
					err = errors.Join(err, errors.New("(compact --wait-lease DURATION waits for a held lease instead of giving up)"))
				}
				return err
			}
			return runCompactDaemon(ctx, cfg, schedule, reg, log, func(ctx context.Context) {
				started := time.Now()
				results, err := c.CompactAll(ctx, ts)
				auditCompactions(aw, ts, results, err, started)
				for _, r := range results {
					if r != nil && r.Held != nil {
						h := r.Held.Holder
						log.Warn("tenant skipped: another compactor holds its lease", "tenant", r.Tenant,
							"holder_host", h.Host, "holder_pid", h.PID, "holder_run", h.RunID, "since", r.Held.Acquired)
					} else if r != nil && err == nil {
						log.Info("tenant compacted", "tenant", r.Tenant, "snapshot", r.SnapshotID, "published", r.Published, "duration", r.Duration.Round(time.Millisecond))
					}
				}
				if err = withoutHeld(err); err != nil {
					log.Error("compaction run finished with failures", "err", err)
				}
			})
		},
	}
	cmd.Flags().StringSliceVar(&tenants, "tenant", nil, "compact only this tenant (repeatable); default: every configured tenant")
	cmd.Flags().BoolVar(&fullRefresh, "full-refresh", false, "rebuild from every speed file instead of the previous snapshot and the files after its watermark")
	cmd.Flags().BoolVar(&daemon, "daemon", false, "run on compact.schedule (nightly by default) until SIGTERM, serving metrics")
	cmd.Flags().StringVar(&pushURL, "push-gateway", "", "after a single run, push its metrics to this Prometheus Pushgateway (job fhirlake_compactor)")
	cmd.Flags().DurationVar(&waitLease, "wait-lease", 0, "wait up to this long for a tenant's lease another compactor holds; default: give up on that tenant at once")
	cmd.Flags().StringVar(&schedule, "schedule", "", `run on this cron schedule until SIGTERM, e.g. "0 2 * * *" (implies --daemon)`)
	return cmd
}

// buildCompactor wires the configuration into a compactor and the tenants it runs.
func buildCompactor(ctx context.Context, cfg config.Config, cc config.Compact, only []string, fullRefresh bool, waitLease time.Duration,
	reg prometheus.Registerer, log *slog.Logger) (*compactor.Compactor, []compactor.Tenant, error) {
	selected := cfg.Tenants
	if len(only) > 0 {
		selected = nil
		for _, name := range only {
			t, ok := cfg.Tenant(name)
			if !ok {
				return nil, nil, fmt.Errorf("tenant %q is not configured (configured: %s)", name, strings.Join(tenantNames(cfg), ", "))
			}
			selected = append(selected, t)
		}
	}
	if len(selected) == 0 {
		return nil, nil, errors.New("no tenants configured")
	}
	if err := checkTableNames(cfg); err != nil {
		return nil, nil, err
	}
	ts := make([]compactor.Tenant, 0, len(selected))
	for _, t := range selected {
		ct, err := compactTenant(ctx, t)
		if err != nil {
			return nil, nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		if cfg.Iceberg.Enabled() {
			// the batch tables, in the same catalog and namespace as fhirlake register's
			o, err := catalogOptions(cfg.Iceberg, t, ct.Store)
			if err != nil {
				return nil, nil, err
			}
			ct.Iceberg = &o
		}
		ts = append(ts, ct)
	}
	dbtPath := cc.DBT
	if dbtPath == "" {
		dbtPath = compactor.FindDBT()
	}
	extDir := cc.DuckDBExtensionDir
	if extDir == "" {
		extDir = os.Getenv("FHIRLAKE_DUCKDB_EXTENSION_DIR")
	}
	duckdbLimit, err := cc.DuckDBMemoryLimit()
	if err != nil {
		return nil, nil, fmt.Errorf("compact.memory_limit: %w", err)
	}
	runner, err := compactor.NewDBT(compactor.DBT{
		Path: dbtPath, ProjectDir: cc.ProjectDir, Threads: cc.Threads,
		MemoryLimit: duckdbLimit, ExtensionDir: extDir,
	})
	if err != nil {
		return nil, nil, err
	}
	c, err := compactor.New(runner, compactor.Options{
		WorkDir:          filepath.Join(cfg.WorkDir, "compact"),
		Parallelism:      cc.Parallelism,
		Timeout:          cc.Timeout,
		Overlap:          cc.Overlap,
		ConsistencyDelay: cc.ConsistencyDelay,
		FullRefresh:      fullRefresh,
		Vars:             map[string]string{"relationship_severity": cc.RelationshipSeverity},
		Expire: compactor.ExpireOptions{
			SpeedRetention: cc.SpeedRetention, KeepSnapshots: cc.KeepSnapshots, OrphanGrace: cc.OrphanGrace,
		},
		Lease:              compactor.LeaseOptions{TTL: cc.LeaseTTL, Wait: waitLease},
		RebaseShare:        cc.RebaseShare,
		DuckDBExtensionDir: extDir,
	}, reg, log)
	if err != nil {
		return nil, nil, err
	}
	return c, ts, nil
}

// compactTenant describes a tenant's lake to the compactor: its store, and the same
// root as DuckDB reads it, with the store's own credentials for S3 (the tenant's key,
// the default chain, or its role).
func compactTenant(ctx context.Context, t config.Tenant) (compactor.Tenant, error) {
	store, err := openStore(ctx, t)
	if err != nil {
		return compactor.Tenant{}, err
	}
	ct := compactor.Tenant{Name: t.Name, Store: store}
	switch s := store.(type) {
	case *sink.Local:
		if ct.Lake, err = filepath.Abs(t.Store.Path); err != nil {
			return compactor.Tenant{}, err
		}
	case *sink.S3:
		ct.Lake = "s3://" + t.Store.Bucket
		if p := strings.Trim(t.Store.Prefix, "/"); p != "" {
			ct.Lake += "/" + p
		}
		ct.S3 = &compactor.S3Access{
			Endpoint: t.Store.Endpoint, Region: t.Store.Region, PathStyle: t.Store.PathStyle,
			CAFile: t.Store.CAFile, Credentials: s.Credentials(),
		}
	}
	return ct, nil
}

func printCompactResults(w io.Writer, ts []compactor.Tenant, results []*compactor.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tRESULT\tSNAPSHOT\tSPEED FILES\tRESOURCES\tDURATION")
	for i, t := range ts {
		r := results[i]
		if r == nil {
			fmt.Fprintf(tw, "%s\tnot run\t\t\t\t\n", t.Name)
			continue
		}
		status := "published"
		switch {
		case r.Held != nil:
			status = fmt.Sprintf("skipped: lease held by %s pid %d", r.Held.Holder.Host, r.Held.Holder.PID)
		case r.UpToDate:
			status = "up to date"
		case !r.Published:
			status = "FAILED"
		case r.FullRefresh:
			status = "published (full: " + r.Reason + ")"
		}
		snapshot := r.SnapshotID
		if !r.Published && snapshot != "" && !r.UpToDate {
			snapshot += " (kept)"
		}
		resources := ""
		if m, ok := r.Models["int_resources__latest"]; ok {
			resources = fmt.Sprint(m.Rows)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.Name, status, snapshot, r.SpeedFiles, resources, r.Duration.Round(100*time.Millisecond))
	}
	tw.Flush()
}

// withoutHeld is err without the tenants skipped because another compactor held
// their lease: the daemon reports those apart, as skipped rather than failed.
func withoutHeld(err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if errors.As(err, new(*compactor.LeaseHeldError)) {
			return nil
		}
		return err
	}
	var rest []error
	for _, e := range joined.Unwrap() {
		if !errors.As(e, new(*compactor.LeaseHeldError)) {
			rest = append(rest, e)
		}
	}
	return errors.Join(rest...)
}

// pushMetrics replaces the metrics of job fhirlake_compactor on the Pushgateway
// at url with those of this run.
func pushMetrics(url string, g prometheus.Gatherer) error {
	return push.New(url, "fhirlake_compactor").Gatherer(g).
		Client(&http.Client{Timeout: 30 * time.Second}).Push()
}

// runCompactDaemon serves the metrics and runs every activation of the schedule until
// ctx ends.
func runCompactDaemon(ctx context.Context, cfg config.Config, spec string, reg *prometheus.Registry, log *slog.Logger, run func(context.Context)) error {
	sched, err := compactor.ParseSchedule(spec)
	if err != nil {
		return err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		// A failed write means the client went away; there is no one to tell.
		ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
		mux.HandleFunc("/healthz", ok)
		mux.HandleFunc("/readyz", ok)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("metrics server shutdown", "err", err)
			}
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	log.Info("compacting on schedule", "schedule", spec, "next", sched.Next(time.Now()))
	err = compactor.RunScheduled(ctx, sched, time.Now, run)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
