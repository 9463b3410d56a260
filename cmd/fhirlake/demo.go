package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/twmb/franz-go/pkg/kgo"
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
consumes them into ./lake/<tenant>/ (a local-directory lake), prints per-tenant row counts
checked against the generator's expected state, and runs a sample query. It leaves
./fhirlake.yaml so that ` + "`fhirlake query --tenant acme \"SQL\"`" + ` works afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(contextOf(cmd), g, f, lake, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&lake, "lake", "lake", "directory of the local lake (one subdirectory per tenant)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, f *generateFlags, lake string, out io.Writer) error {
	start := time.Now()
	log := g.logger()
	gen, err := synth.New(f.options())
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Flush.MaxAge = time.Second
	cfg.Metrics.Listen = ""
	cfg.WorkDir = filepath.Join(".fhirlake", "work")
	for _, t := range f.tenants {
		cfg.Tenants = append(cfg.Tenants, config.Tenant{Name: t, Store: config.Store{Type: "local", Path: filepath.Join(lake, t)}})
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, t := range f.tenants {
		// A fresh lake each run, so the counts below are this run's.
		if err := os.RemoveAll(filepath.Join(lake, t)); err != nil {
			return err
		}
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(cfg.Kafka.Partitions, append(cfg.Kafka.Topics, cfg.Kafka.DeadLetterTopic)...))
	if err != nil {
		return fmt.Errorf("start in-process kafka: %w", err)
	}
	defer cluster.Close()
	kcfg := cfg
	kcfg.Kafka.Brokers = cluster.ListenAddrs()
	fmt.Fprintf(out, "in-process Kafka at %s; lake in ./%s\n", strings.Join(kcfg.Kafka.Brokers, ","), lake)

	bar := newBar(gen.Total(), "producing", f.quiet)
	err = produceRecords(ctx, gen, kcfg.Kafka.Brokers, kcfg.Kafka.Topics[0], bar)
	bar.Finish()
	if err != nil {
		return err
	}
	counts := gen.Counts()
	fmt.Fprintf(out, "produced %d notifications: %d events (%d upserts, %d deletes), %d control, %d malformed, %d unroutable\n",
		counts.Records(), counts.Events, counts.Upserts, counts.Deletes, counts.Controls, counts.Malformed, counts.Unroutable)

	reg := prometheus.NewRegistry()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runConsumer(cctx, kcfg, reg, log, nil) }()
	err = waitCaughtUp(ctx, kcfg, done, int64(counts.Records()), f.quiet)
	cancel()
	if cerr := <-done; err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "consumed in %s\n\n", time.Since(start).Round(100*time.Millisecond))

	m, err := gatherSums(reg)
	if err != nil {
		return err
	}
	rows := m["fhirlake_sink_rows_written_total"]
	fmt.Fprintf(out, "reconciliation: %0.f records = %0.f with changes + %0.f control + %0.f dead letters; %0.f rows written in %0.f files\n",
		m["fhirlake_consumer_records_total"], m["fhirlake_consumer_records_total"]-m["fhirlake_consumer_control_messages_total"]-m["fhirlake_consumer_dead_letters_total"],
		m["fhirlake_consumer_control_messages_total"], m["fhirlake_consumer_dead_letters_total"], rows, m["fhirlake_sink_files_written_total"])

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
	mismatch := false
	for _, t := range cfg.Tenants {
		s, err := query.Open(ctx, t.Name, t.Store.Path, query.Options{})
		if err != nil {
			return err
		}
		got, err := countByType(ctx, s)
		if err != nil {
			s.Close()
			return err
		}
		fmt.Fprintf(out, "\ntenant %s (current resources, deletes removed):\n", t.Name)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "resource type\tviews row count\texpected\t")
		types := keys(got, want[t.Name])
		for _, typ := range types {
			mark := ""
			if got[typ] != want[t.Name][typ] {
				mark, mismatch = "  MISMATCH", true
			}
			fmt.Fprintf(tw, "%s\t%d\t%d%s\t\n", typ, got[typ], want[t.Name][typ], mark)
		}
		tw.Flush()
		if err := printViewRows(ctx, out, s); err != nil {
			s.Close()
			return err
		}
		if t.Name == cfg.Tenants[0].Name {
			fmt.Fprintf(out, "\nsample query for %s: %s\n", t.Name, demoQuery)
			rows, err := s.Query(ctx, demoQuery)
			if err != nil {
				s.Close()
				return err
			}
			_, err = query.Write(out, rows, "table")
			rows.Close()
			if err != nil {
				s.Close()
				return err
			}
		}
		s.Close()
	}
	fmt.Fprintln(out, "\ncompacting the batch layer (dbt)…")
	table, _, err := compactor.CompactLocalLake(ctx, lake, filepath.Join(cfg.WorkDir, "compact"), f.tenants, log)
	switch {
	case errors.Is(err, compactor.ErrNoDBT):
		fmt.Fprintln(out, "batch layer skipped:", err)
	case err != nil:
		return err
	default:
		table.Write(out)
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	bar := newBar(int(total), "consuming", quiet)
	defer bar.Finish()
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
		bar.Set64(total - lag.Total)
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
	doc := struct {
		WorkDir string   `yaml:"work_dir"`
		Tenants []tenant `yaml:"tenants"`
	}{WorkDir: cfg.WorkDir}
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
