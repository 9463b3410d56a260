package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"fhirlake/audit"
	"fhirlake/config"
	"fhirlake/query"
	"fhirlake/query/web"
	"fhirlake/query/worker"
	"fhirlake/sandbox"
)

func newQueryCmd(g *globals) *cobra.Command {
	var tenant, format string
	var list bool
	cmd := &cobra.Command{
		Use:   `query --tenant T [--format table|csv|json|arrow|parquet] "SQL"`,
		Short: "Run SQL over one tenant's lake",
		Long: `query opens a DuckDB session that can read only the given tenant's lake, with one
view per resource type (patient, observation, medication_request, …) holding the latest
version of each resource (deletes removed), plus resources (all types, latest, deletes
removed), resources_latest (with tombstones) and resources_all (every row as stored).
Exits non-zero on any error.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			ctx := contextOf(cmd)
			t, err := pickTenant(cfg, tenant)
			if err != nil {
				return err
			}
			// Opened before the process confines itself: Landlock would
			// refuse the file afterwards, not the open descriptor.
			aw, err := openAudit(cfg.Audit, nil, g.logger())
			if err != nil {
				return err
			}
			defer aw.Close()
			rec := audit.Record{Kind: audit.KindQuery, Source: audit.SourceCLI, Tenant: t.Name, Key: actor(), RequestID: runID()}
			if list {
				rec.Kind = audit.KindTables
			} else {
				rec.SQL = args[0]
			}
			out := &countingWriter{w: cmd.OutOrStdout()}
			start := time.Now()
			defer func() {
				rec.Bytes, rec.DurationMS, rec.Status = out.n, float64(time.Since(start).Microseconds())/1000, audit.StatusOK
				if err != nil {
					rec.Status = web.ErrorCode(err)
				}
				aw.Write(rec)
			}()
			tmp, err := confineQuery(cfg, t)
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			s, err := openSession(ctx, cfg, t, tmp)
			if err != nil {
				return err
			}
			defer s.Close()
			var q string
			if list {
				q = viewsSQL(s.Catalog().Tables)
			} else {
				q = args[0]
			}
			res, err := s.Export(ctx, out, q, format, query.ExportOptions{})
			rec.Rows = int64(res.Rows)
			return err
		},
	}
	cmd.Flags().StringVarP(&tenant, "tenant", "t", "", "tenant to query (optional when only one is configured)")
	cmd.Flags().StringVarP(&format, "format", "f", "table", "output format: "+strings.Join(query.Formats, ", "))
	cmd.Flags().BoolVar(&list, "views", false, "list the views instead of running SQL")
	return cmd
}

// countingWriter counts the bytes of a command's output, for its audit record.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func pickTenant(cfg config.Config, name string) (config.Tenant, error) {
	if name == "" {
		if len(cfg.Tenants) == 1 {
			return cfg.Tenants[0], nil
		}
		return config.Tenant{}, fmt.Errorf("--tenant is required: configured tenants are %s", strings.Join(tenantNames(cfg), ", "))
	}
	t, ok := cfg.Tenant(name)
	if !ok {
		return config.Tenant{}, fmt.Errorf("tenant %q is not configured (configured: %s)", name, strings.Join(tenantNames(cfg), ", "))
	}
	return t, nil
}

// openSession opens the tenant's session: a local store in its directory,
// an S3 store in its bucket, read directly through DuckDB's httpfs with the
// tenant's own key (serve.httpfs_extension names the extension file). tmp
// is the session's own temp dir.
func openSession(ctx context.Context, cfg config.Config, t config.Tenant, tmp string) (*query.Session, error) {
	if t.Store.Type == "s3" {
		store, err := openStore(ctx, t)
		if err != nil {
			return nil, err
		}
		sc := cfg.Serve.WithDefaults()
		return query.OpenS3(ctx, t.Name, store, worker.S3Access(t), query.Options{TempDir: tmp, HTTPFSExtension: sc.HTTPFSExtension,
			IcebergExtension: sc.IcebergExtension, AvroExtension: sc.AvroExtension})
	}
	if err := query.Exists(t.Store.Path); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	return query.Open(ctx, t.Name, t.Store.Path, query.Options{TempDir: tmp})
}

// confineQuery confines this process as serve confines a tenant's worker:
// Landlock lets it read the tenant's local lake (or, for an S3 tenant, the
// httpfs extension file and its CA bundle) and write a temp dir of its own, which it returns;
// RLIMIT_AS bounds its address space by serve.worker_memory_limit. The
// configuration is read already; the output is stdout, open already.
func confineQuery(cfg config.Config, t config.Tenant) (string, error) {
	tmp, err := os.MkdirTemp("", "fhirlake-query-")
	if err != nil {
		return "", err
	}
	paths := sandbox.Paths{ReadWrite: []string{tmp}}
	if t.Store.Type == "s3" {
		sc := cfg.Serve.WithDefaults()
		for _, ext := range []string{sc.HTTPFSExtension, sc.IcebergExtension, sc.AvroExtension} {
			if ext != "" {
				paths.ReadOnly = append(paths.ReadOnly, ext)
			}
		}
		if ca := t.Store.CAFile; ca != "" {
			paths.ReadOnly = append(paths.ReadOnly, ca)
		}
	} else {
		if err := query.Exists(t.Store.Path); err != nil {
			return tmp, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		paths.ReadOnly = append(paths.ReadOnly, t.Store.Path)
	}
	if sandbox.LandlockABI() > 0 {
		if err := sandbox.Restrict(paths); err != nil {
			return tmp, err
		}
	}
	sandbox.FewerMallocArenas()
	limit := rlimitAS(int64(cfg.Serve.WithDefaults().WorkerMemoryLimit))
	return tmp, sandbox.LimitSelf(sandbox.Limits{Memory: limit})
}

// viewsSQL lists the session's views as a one-column result, so that
// --views prints in every format. It names them as values: a tenant's
// statement may not read DuckDB's catalog.
func viewsSQL(tables []query.Table) string {
	if len(tables) == 0 {
		return "SELECT NULL::VARCHAR AS view WHERE false"
	}
	rows := make([]string, len(tables))
	for i, t := range tables {
		rows[i] = "('" + strings.ReplaceAll(t.Name, "'", "''") + "')"
	}
	return "SELECT view FROM (VALUES " + strings.Join(rows, ", ") + ") v(view) ORDER BY 1"
}
