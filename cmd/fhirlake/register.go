package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/spf13/cobra"

	"fhirlake/catalog"
	"fhirlake/config"
	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/registrar"
	"fhirlake/sink"
)

func newRegisterCmd(g *globals) *cobra.Command {
	var (
		once    bool
		tenants []string
	)
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Keep every tenant's changes readable as Iceberg tables in the deployment's catalog",
		Long: `register lists each tenant's speed files and registers them in the Iceberg catalog of
the configuration's iceberg section: one table per dataset (resources and every view) in
the tenant's namespace, its metadata in the tenant's own store (iceberg.warehouse), every
file read and written with the tenant's own credentials. Files the compactor expired, or
an erasure rewrote, leave the tables or replace their old entry.

It runs every iceberg.interval (1m) until stopped, or once with --once. Each pass is
idempotent: a pass that stops anywhere is finished by the next.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if !cfg.Iceberg.Enabled() {
				return errors.New("register: no catalog configured (set iceberg.catalog and iceberg.uri)")
			}
			if err := checkTableNames(cfg); err != nil {
				return err
			}
			ctx := contextOf(cmd)
			log := g.logger()
			ts, err := registrarTenants(cmd, cfg, tenants)
			if err != nil {
				return err
			}
			schemas, err := datasetSchemas(cfg.ViewsDir)
			if err != nil {
				return err
			}
			r, err := registrar.New(registrar.Options{
				Tenants: ts, Schemas: schemas, Logger: log,
				SnapshotRetention: cfg.Iceberg.SnapshotRetention, KeepSnapshots: cfg.Iceberg.KeepSnapshots,
				OrphanGrace: cfg.Compact.WithDefaults().OrphanGrace,
			})
			if err != nil {
				return err
			}
			if !once {
				return r.Run(ctx, cfg.Iceberg.Interval)
			}
			res, err := r.Pass(ctx)
			printRegistered(cmd.OutOrStdout(), res)
			return err
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "one pass over every tenant, then exit")
	cmd.Flags().StringSliceVar(&tenants, "tenant", nil, "only these tenants (default: every tenant)")
	return cmd
}

func printRegistered(w io.Writer, res []registrar.TableResult) {
	for _, r := range res {
		fmt.Fprintf(w, "%s.%s: %d files (+%d -%d)\n", r.Tenant, r.Table, r.Files, r.Added, r.Removed)
	}
}

// datasetSchemas are the schemas of the raw dataset and of every view's dataset.
func datasetSchemas(viewsDir string) (map[string]*arrow.Schema, error) {
	views, err := flatten.LoadViews(viewsDir)
	if err != nil {
		return nil, err
	}
	out := map[string]*arrow.Schema{lake.RawDataset: lake.RawSchema}
	for _, v := range views {
		out[v.Name()] = lake.ViewSchema(v)
	}
	return out, nil
}

// registrarTenants opens each tenant's store and the catalog options that carry its
// own credentials.
func registrarTenants(cmd *cobra.Command, cfg config.Config, only []string) ([]registrar.Tenant, error) {
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
	}
	var out []registrar.Tenant
	for _, t := range cfg.Tenants {
		if len(only) > 0 && !want[t.Name] {
			continue
		}
		delete(want, t.Name)
		st, err := openStore(contextOf(cmd), t)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		o, err := catalogOptions(cfg.Iceberg, t, st)
		if err != nil {
			return nil, err
		}
		out = append(out, registrar.Tenant{Name: t.Name, Store: st, Catalog: o})
	}
	for n := range want {
		return nil, fmt.Errorf("--tenant %s: no such tenant in the configuration", n)
	}
	return out, nil
}

// catalogOptions are the catalog's options for one tenant: its warehouse in its own
// store, its own keys. A tenant with a role reads and writes its tables with the
// role's short-lived credentials, those of its store (st), renewed as the store's are.
func catalogOptions(ic config.Iceberg, t config.Tenant, st sink.Store) (catalog.Options, error) {
	o := catalog.Options{Type: ic.Catalog, URI: ic.CatalogURI(), Name: ic.Name, Token: envOf(ic.TokenEnv), Tenant: t.Name}
	switch t.Store.Type {
	case "local":
		abs, err := filepath.Abs(t.Store.Path)
		if err != nil {
			return o, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		o.Warehouse = filepath.ToSlash(abs) + "/" + ic.Warehouse
	case "s3":
		o.Warehouse = "s3://" + t.Store.Bucket + "/" + strings.Trim(strings.Trim(t.Store.Prefix, "/")+"/"+ic.Warehouse, "/")
		region := t.Store.Region
		if region == "" {
			region = "us-east-1"
		}
		o.S3 = catalog.S3{
			Endpoint: t.Store.Endpoint, Region: region, PathStyle: t.Store.PathStyle,
			AccessKey: envOf(t.Store.AccessKeyEnv), SecretKey: envOf(t.Store.SecretKeyEnv), SessionToken: envOf(t.Store.SessionTokenEnv),
		}
		if t.Store.RoleARN != "" {
			s3, ok := st.(*sink.S3)
			if !ok {
				return o, fmt.Errorf("tenant %s: iceberg: the store of a role has no credentials", t.Name)
			}
			o.S3.Credentials = s3.Credentials()
		}
	default:
		return o, fmt.Errorf("tenant %s: unknown store type %q", t.Name, t.Store.Type)
	}
	return o, nil
}
