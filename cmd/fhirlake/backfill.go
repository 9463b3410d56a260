package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	var srv serverFlags
	cmd := &cobra.Command{
		Use:   "backfill --tenant T (FILES… | --from-server URL)",
		Short: "Load bulk-export NDJSON or Bundles, or a live server's $export, into one tenant's lake",
		Long: `backfill loads FHIR bulk-export NDJSON (one resource per line), Bundles of any type
(DELETE entries delete) or subscription notifications, plain or gzipped (told apart by
content, as views run does), into the tenant's lake through the same flattening and storage
path as the consumer: the raw-resource dataset and every view. Object names come from each
file's content hash and line or entry numbers, so loading a file again overwrites its own
objects: it is idempotent per file. Resources that cannot be read are listed and make the
command exit non-zero; the others are stored.

With --from-server URL it asks that FHIR server for a Bulk Data $export (system, Patient or
Group level; --type, --since, or --since-last to continue from the last export recorded in
the tenant's lake), authenticated with SMART Backend Services (--client-id, --private-key,
--key-id) or a bearer token (--token-env), downloads the files in parallel and loads each
as above. An interrupted export is resumed by running the same command again.`,
		Args: func(cmd *cobra.Command, files []string) error {
			if srv.url != "" {
				if len(files) > 0 {
					return errors.New("give files or --from-server, not both")
				}
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, files)
		},
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
			ld := &loader{w: w, tenant: t.Name, opts: bulk.BackfillOptions{Views: views, ChunkRows: chunk}, out: cmd.ErrOrStderr()}
			if srv.url != "" {
				return backfillFromServer(ctx, cmd.ErrOrStderr(), filepath.Join(cfg.WorkDir, "export", t.Name), store, ld, srv, quiet)
			}
			total, err := bulk.Size(files)
			if err != nil {
				return err
			}
			bar := newBar(int(total), "backfilling", quiet)
			ld.opts.Progress = func(n int) { _ = bar.Add(n) } // a progress bar that cannot draw changes nothing
			for _, f := range files {
				if err := ld.load(ctx, f, f); err != nil {
					_ = bar.Finish()
					return err
				}
			}
			_ = bar.Finish()
			return ld.report()
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant whose lake receives the data")
	cmd.Flags().IntVar(&chunk, "chunk-rows", 100_000, "resources per set of Parquet files")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	srv.register(cmd)
	return cmd
}

// loader loads files into one tenant's lake with bulk.Backfill and keeps
// what could not be read.
type loader struct {
	w      *sink.Writer
	tenant string
	opts   bulk.BackfillOptions
	out    io.Writer

	resources, deletes int
	failed             []string
}

// load loads one file, named name in what is printed.
func (l *loader) load(ctx context.Context, path, name string) error {
	res, err := bulk.Backfill(ctx, l.w, l.tenant, path, l.opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(l.out, "%s: %d resources, %d deletes, %d files written\n", name, res.Resources, res.Deletes, res.Files)
	l.resources += res.Resources
	l.deletes += res.Deletes
	l.failed = append(l.failed, res.Errors...)
	return nil
}

// report lists what could not be loaded, and fails if anything could not.
func (l *loader) report() error {
	for _, e := range l.failed {
		fmt.Fprintln(l.out, "error:", e)
	}
	if len(l.failed) > 0 {
		return errors.New(fmt.Sprint(len(l.failed), " resources could not be loaded"))
	}
	return nil
}
