package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"fhirlake/consumer"
	"fhirlake/flatten"
	"fhirlake/sink"
)

func newBackfillCmd(g *globals) *cobra.Command {
	var tenant string
	var chunk int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "backfill --tenant T FILES…",
		Short: "Load bulk-export NDJSON or Bundles into one tenant's lake",
		Long: `backfill loads FHIR bulk-export NDJSON (one resource per line) or Bundles, plain or
.gz, into the tenant's lake through the same flattening and storage path as the consumer:
the raw-resource dataset and every view. Object names come from each file's content hash
and line numbers, so loading a file again overwrites its own objects: it is idempotent per
file. Resources that cannot be read are listed and make the command exit non-zero; the
others are stored.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			t, err := pickTenant(cfg, tenant)
			if err != nil {
				return err
			}
			ctx := contextOf(cmd)
			store, err := openStore(ctx, t)
			if err != nil {
				return err
			}
			views, err := flatten.LoadViews(cfg.ViewsDir)
			if err != nil {
				return err
			}
			w, err := sink.NewWriter(map[string]sink.Store{t.Name: store}, sink.WriterOptions{WorkDir: filepath.Join(cfg.WorkDir, "backfill")}, prometheus.NewRegistry())
			if err != nil {
				return err
			}
			defer w.Close()
			var total int64
			for _, f := range files {
				info, err := os.Stat(f)
				if err != nil {
					return err
				}
				total += info.Size()
			}
			bar := newBar(int(total), "backfilling", quiet)
			var done int64
			var failed []string
			for _, f := range files {
				base := done
				res, err := consumer.Backfill(ctx, w, t.Name, f, consumer.BackfillOptions{
					Views: views, ChunkRows: chunk,
					Progress: func(n int64) { bar.Set64(base + n) },
				})
				if info, serr := os.Stat(f); serr == nil {
					done += info.Size()
				}
				if err != nil {
					bar.Finish()
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d resources, %d deletes, %d files written\n", f, res.Resources, res.Deletes, res.Files)
				failed = append(failed, res.Errors...)
			}
			bar.Finish()
			for _, e := range failed {
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", e)
			}
			if len(failed) > 0 {
				return errors.New(fmt.Sprint(len(failed), " resources could not be loaded"))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant whose lake receives the data")
	cmd.Flags().IntVar(&chunk, "chunk-rows", 100_000, "resources per set of Parquet files")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}
