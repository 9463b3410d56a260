package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"gopkg.in/yaml.v3"

	"fhirlake/compactor"
	"fhirlake/config"
	"fhirlake/consumer"
	"fhirlake/query"
	"fhirlake/synth"
)

const demoMarker = "# Written by `fhirlake demo`"

func newDemoCmd(g *globals) *cobra.Command {
	f := &generateFlags{}
	var lake string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on embedded defaults: no services needed",
		Long: `demo starts an in-process Kafka cluster, generates notifications for the tenants,
consumes them into ./demo-lake/<tenant>/ (a local-directory lake), prints per-tenant row counts
checked against the generator's expected state, and runs a sample query. It leaves
./fhirlake.yaml so that ` + "`fhirlake query --tenant acme \"SQL\"`" + ` works afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(contextOf(cmd), g, f, lake, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&lake, "lake", "demo-lake", "directory of the local lake (one subdirectory per tenant)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, f *generateFlags, lake string, out io.Writer) error {
	start := time.Now()
	log := g.logger()
	gen, err := synth.New(f.options())
	if err != nil {
		return err
	}
	cfg, err := demoConfig(f.tenants, lake)
	if err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(cfg.Kafka.Partitions, append(cfg.Kafka.Topics, cfg.Kafka.DeadLetterTopic)...))
	if err != nil {
		return fmt.Errorf("start in-process kafka: %w", err)
	}
	defer cluster.Close()
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	fmt.Fprintf(out, "in-process Kafka at %s; lake in ./%s\n", strings.Join(cfg.Kafka.Brokers, ","), lake)

	records, err := demoProduce(ctx, out, gen, cfg, f.quiet)
	if err != nil {
		return err
	}
	reg, err := demoConsume(ctx, cfg, log, records, f.quiet)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "consumed in %s\n\n", time.Since(start).Round(100*time.Millisecond))
	if err := printReconciliation(out, reg); err != nil {
		return err
	}
	mismatch, err := checkTenants(ctx, out, cfg.Tenants, expectedCounts(gen))
	if err != nil {
		return err
	}
	if err := compactDemo(ctx, out, lake, cfg, f.tenants, log); err != nil {
		return err
	}
	if err := writeDemoConfig(cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ndone in %s. Try: fhirlake query --tenant %s \"SELECT count(*) FROM observation\"\n", time.Since(start).Round(100*time.Millisecond), cfg.Tenants[0].Name)
	if mismatch {
		return errors.New("the lake does not match the expected state")
	}
	return nil
}

// demoConfig is the demo's configuration: the defaults, flushed every
// second, with a local lake per tenant under lake, emptied so that the
// counts checked afterwards are this run's.
func demoConfig(tenants []string, lake string) (config.Config, error) {
	cfg := config.Default()
	cfg.Flush.MaxAge = time.Second
	cfg.Metrics.Listen = ""
	cfg.WorkDir = filepath.Join(".fhirlake", "work")
	for _, t := range tenants {
		cfg.Tenants = append(cfg.Tenants, config.Tenant{Name: t, Store: config.Store{Type: "local", Path: filepath.Join(lake, t)}})
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	for _, t := range tenants {
		if err := os.RemoveAll(filepath.Join(lake, t)); err != nil {
			return config.Config{}, err
		}
	}
	return cfg, nil
}

// demoProduce sends the generated stream to the first topic and returns
// the number of records.
func demoProduce(ctx context.Context, out io.Writer, gen *synth.Generator, cfg config.Config, quiet bool) (int, error) {
	bar := newBar(gen.Total(), "producing", quiet)
	err := produceRecords(ctx, gen, cfg.Kafka, cfg.Kafka.Topics[0], bar)
	_ = bar.Finish() // only the terminal's progress bar
	if err != nil {
		return 0, err
	}
	counts := gen.Counts()
	fmt.Fprintf(out, "produced %d notifications: %d events (%d upserts, %d deletes), %d control, %d malformed, %d unroutable\n",
		counts.Records(), counts.Events, counts.Upserts, counts.Deletes, counts.Controls, counts.Malformed, counts.Unroutable)
	return counts.Records(), nil
}

// demoConsume runs the consumer until the group has committed all records,
// and returns the registry holding its metrics.
func demoConsume(ctx context.Context, cfg config.Config, log *slog.Logger, records int, quiet bool) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runConsumer(cctx, cfg, reg, log, nil) }()
	err := waitCaughtUp(ctx, cfg, done, int64(records), quiet)
	cancel()
	if cerr := <-done; err == nil {
		err = cerr
	}
	return reg, err
}

// printReconciliation accounts for every record from the consumer's and
// the sink's metrics.
func printReconciliation(out io.Writer, reg *prometheus.Registry) error {
	m, err := gatherSums(reg)
	if err != nil {
		return err
	}
	records, control, dead := m["fhirlake_consumer_records_total"], m["fhirlake_consumer_control_messages_total"], m["fhirlake_consumer_dead_letters_total"]
	fmt.Fprintf(out, "reconciliation: %0.f records = %0.f with changes + %0.f control + %0.f dead letters; %0.f rows written in %0.f files\n",
		records, records-control-dead, control, dead, m["fhirlake_sink_rows_written_total"], m["fhirlake_sink_files_written_total"])
	return nil
}

// expectedCounts is, per tenant and resource type, the number of resources
// the generator left undeleted.
func expectedCounts(gen *synth.Generator) map[string]map[string]int {
	want := map[string]map[string]int{}
	for _, e := range gen.Expected() {
		if e.Deleted {
			continue
		}
		if want[e.Tenant] == nil {
			want[e.Tenant] = map[string]int{}
		}
		want[e.Tenant][e.ResourceType]++
	}
	return want
}

// checkTenants prints each tenant's resource counts against want, and runs
// the sample query on the first tenant; mismatch is true when a count
// differs.
func checkTenants(ctx context.Context, out io.Writer, tenants []config.Tenant, want map[string]map[string]int) (mismatch bool, err error) {
	for i, t := range tenants {
		differs, err := checkTenant(ctx, out, t, want[t.Name], i == 0)
		if err != nil {
			return false, err
		}
		mismatch = mismatch || differs
	}
	return mismatch, nil
}

func checkTenant(ctx context.Context, out io.Writer, t config.Tenant, want map[string]int, sample bool) (mismatch bool, err error) {
	s, err := query.Open(ctx, t.Name, t.Store.Path, query.Options{})
	if err != nil {
		return false, err
	}
	defer s.Close()
	got, err := countByType(ctx, s)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(out, "\ntenant %s (current resources, deletes removed):\n", t.Name)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "resource type\tviews row count\texpected\t")
	for _, typ := range keys(got, want) {
		mark := ""
		if got[typ] != want[typ] {
			mark, mismatch = "  MISMATCH", true
		}
		fmt.Fprintf(tw, "%s\t%d\t%d%s\t\n", typ, got[typ], want[typ], mark)
	}
	tw.Flush()
	if err := printViewRows(ctx, out, s); err != nil {
		return false, err
	}
	if sample {
		if err := runSampleQuery(ctx, out, t.Name, s); err != nil {
			return false, err
		}
	}
	return mismatch, nil
}

func runSampleQuery(ctx context.Context, out io.Writer, tenant string, s *query.Session) error {
	fmt.Fprintf(out, "\nsample query for %s: %s\n", tenant, demoQuery)
	rows, err := s.Query(ctx, demoQuery)
	if err != nil {
		return err
	}
	defer rows.Close()
	_, err = query.Write(out, rows, "table")
	return err
}

// compactDemo builds the batch layer with dbt, or says why it was skipped
// when dbt is not installed.
func compactDemo(ctx context.Context, out io.Writer, lake string, cfg config.Config, tenants []string, log *slog.Logger) error {
	fmt.Fprintln(out, "\ncompacting the batch layer (dbt)…")
	table, _, err := compactor.CompactLocalLake(ctx, lake, filepath.Join(cfg.WorkDir, "compact"), tenants, log)
	switch {
	case errors.Is(err, compactor.ErrNoDBT):
		fmt.Fprintln(out, "batch layer skipped:", err)
	case err != nil:
		return err
	default:
		return table.Write(out)
	}
	return nil
}

const demoQuery = `WITH bp AS (
  SELECT patient_id, avg(value_quantity) FILTER (WHERE code = '8480-6') AS systolic,
         avg(value_quantity) FILTER (WHERE code = '8462-4') AS diastolic
  FROM observation_component GROUP BY 1)
SELECT p.gender, count(*) AS patients,
       round(avg(date_diff('year', p.birth_date, DATE '2026-01-01')), 1) AS avg_age,
       round(avg(bp.systolic), 1) AS avg_systolic, round(avg(bp.diastolic), 1) AS avg_diastolic
FROM patient p LEFT JOIN bp ON bp.patient_id = p.id
GROUP BY 1 ORDER BY 1`

func countByType(ctx context.Context, s *query.Session) (map[string]int, error) {
	rows, err := s.Query(ctx, "SELECT resource_type, count(*) FROM resources GROUP BY 1")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		got[t] = n
	}
	return got, rows.Err()
}

// printViewRows prints the row count of every typed view on one line.
func printViewRows(ctx context.Context, out io.Writer, s *query.Session) error {
	parts := make([]string, 0, len(s.Views))
	for _, v := range s.Views {
		rows, err := s.Query(ctx, "SELECT count(*) FROM "+v)
		if err != nil {
			return err
		}
		var n int
		rows.Next()
		err = rows.Scan(&n)
		rows.Close()
		if err != nil {
			return err
		}
		parts = append(parts, fmt.Sprintf("%s %d", v, n))
	}
	fmt.Fprintf(out, "typed views (rows): %s\n", strings.Join(parts, ", "))
	return nil
}

func keys(ms ...map[string]int) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// waitCaughtUp waits until the group has committed every produced record.
func waitCaughtUp(ctx context.Context, cfg config.Config, done <-chan error, total int64, quiet bool) error {
	cl, err := kafkaClient(ctx, cfg.Kafka)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	bar := newBar(int(total), "consuming", quiet)
	defer func() { _ = bar.Finish() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			if err == nil {
				err = errors.New("consumer stopped early")
			}
			return err
		case <-tick.C:
		}
		lag, err := consumer.Lag(ctx, adm, cfg.Kafka.Group, cfg.Kafka.Topics)
		if err != nil {
			continue
		}
		_ = bar.Set64(total - lag.Total)
		if lag.Total == 0 {
			return nil
		}
	}
}

// gatherSums sums every metric family of reg over its labels.
func gatherSums(reg *prometheus.Registry) (map[string]float64, error) {
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				out[f.GetName()] += m.Counter.GetValue()
			case m.Gauge != nil:
				out[f.GetName()] += m.Gauge.GetValue()
			}
		}
	}
	return out, nil
}

// writeDemoConfig leaves ./fhirlake.yaml describing the demo lake, unless a
// configuration not written by the demo is already there.
func writeDemoConfig(cfg config.Config) error {
	if b, err := os.ReadFile(config.DefaultFile); err == nil && !strings.HasPrefix(string(b), demoMarker) {
		fmt.Fprintf(os.Stderr, "keeping the existing %s (not written by the demo)\n", config.DefaultFile)
		return nil
	}
	type store struct {
		Type string `yaml:"type"`
		Path string `yaml:"path"`
	}
	type tenant struct {
		Name  string `yaml:"name"`
		Store store  `yaml:"store"`
	}
	type auditTrail struct {
		Path string `yaml:"path,omitempty"`
	}
	doc := struct {
		WorkDir string     `yaml:"work_dir"`
		Audit   auditTrail `yaml:"audit,omitempty"`
		Tenants []tenant   `yaml:"tenants"`
	}{WorkDir: cfg.WorkDir}
	if len(cfg.Tenants) > 0 {
		// Beside the tenants' lakes, rather than among the query's output.
		doc.Audit.Path = filepath.Join(filepath.Dir(cfg.Tenants[0].Store.Path), "audit.log")
	}
	for _, t := range cfg.Tenants {
		doc.Tenants = append(doc.Tenants, tenant{Name: t.Name, Store: store{Type: "local", Path: t.Store.Path}})
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	head := demoMarker + ": the demo's local lake. Kafka settings are the defaults of the\n# local stack (deploy/local/stack); see deploy/config/fhirlake.example.yaml for every key.\n"
	return os.WriteFile(config.DefaultFile, append([]byte(head), b...), 0o644)
}
