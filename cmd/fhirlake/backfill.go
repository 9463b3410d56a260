package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"fhirlake/bulk"
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
		Long: `backfill loads FHIR bulk-export NDJSON (one resource per line), Bundles of any type
(DELETE entries delete) or subscription notifications, plain or gzipped (told apart by
content, as views run does), into the tenant's lake through the same flattening and storage
path as the consumer: the raw-resource dataset and every view. Object names come from each
file's content hash and line or entry numbers, so loading a file again overwrites its own
objects: it is idempotent per file. Resources that cannot be read are listed and make the
command exit non-zero; the others are stored.`,
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
			total, err := bulk.Size(files)
			if err != nil {
				return err
			}
			bar := newBar(int(total), "backfilling", quiet)
			var failed []string
			for _, f := range files {
				res, err := bulk.Backfill(ctx, w, t.Name, f, bulk.BackfillOptions{
					Views: views, ChunkRows: chunk,
					Progress: func(n int) { _ = bar.Add(n) }, // a progress bar that cannot draw changes nothing
				})
				if err != nil {
					_ = bar.Finish()
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d resources, %d deletes, %d files written\n", f, res.Resources, res.Deletes, res.Files)
				failed = append(failed, res.Errors...)
			}
			_ = bar.Finish()
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
