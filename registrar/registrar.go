// Package registrar keeps every tenant's changes readable as Apache Iceberg tables: at
// each pass it lists a tenant's speed files and brings each dataset's table (the raw
// dataset and every view dataset) in line with them in one catalog commit per table that
// changed (docs/format/iceberg.md).
//
// The speed files stay where the consumer wrote them; the tables only reference them,
// so the consumer's throughput and commit protocol are unchanged, and the catalog sees
// at most one commit per table per pass, however fast the consumer flushes. A pass
// derives what to do from the table's committed files and the store's listing alone, so
// a registrar that stops anywhere loses and duplicates nothing, and the next pass
// finishes the work.
package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/sink"
)

// Tenant is one tenant's store and the options that open the catalog for it, with its
// own credentials.
type Tenant struct {
	Name    string
	Store   sink.Store
	Catalog catalog.Options
}

// Options configure a Registrar.
type Options struct {
	Tenants []Tenant
	// Schemas are the datasets registered, name → Arrow schema: lake.RawSchema for
	// lake.RawDataset and lake.ViewSchema for each view. Speed files of any other
	// dataset are left alone (and logged once a pass).
	Schemas map[string]*arrow.Schema
	// SnapshotRetention and KeepSnapshots bound each table's snapshots (catalog.Expire);
	// expiry runs once a table holds more than KeepSnapshots.
	SnapshotRetention time.Duration
	KeepSnapshots     int
	// OrphanGrace is how old a file of a table's metadata directory that the table no
	// longer reaches must be before an expiry removes it (catalog.RemoveOrphanMetadata).
	OrphanGrace time.Duration
	Logger      *slog.Logger
}

// Registrar registers speed files into Iceberg tables.
type Registrar struct {
	o Options
}

// New checks the options.
func New(o Options) (*Registrar, error) {
	if len(o.Tenants) == 0 {
		return nil, errors.New("registrar: no tenants")
	}
	if o.Schemas[lake.RawDataset] == nil {
		return nil, errors.New("registrar: the raw dataset's schema is required")
	}
	if o.KeepSnapshots < 1 {
		o.KeepSnapshots = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registrar{o: o}, nil
}

// TableResult is what one pass did to one table.
type TableResult struct {
	Tenant, Table  string
	Added, Removed int
	// Files is how many files the table holds now.
	Files int
}

// Pass registers every tenant's new speed files, each tenant on its own: a tenant whose
// store or tables fail is reported in the error, and the others are registered.
func (r *Registrar) Pass(ctx context.Context) ([]TableResult, error) {
	var (
		out  []TableResult
		errs []error
	)
	for _, t := range r.o.Tenants {
		res, err := r.tenant(ctx, t)
		out = append(out, res...)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t.Name, err))
		}
	}
	return out, errors.Join(errs...)
}

// Run passes every interval until ctx ends, logging what each pass did; a failed pass
// is logged and the next one retries.
func (r *Registrar) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		started := time.Now()
		res, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, t := range res {
			if t.Added+t.Removed > 0 {
				r.o.Logger.Info("registered", "tenant", t.Tenant, "table", t.Table, "added", t.Added, "removed", t.Removed, "files", t.Files)
			}
		}
		if err != nil {
			r.o.Logger.Error("register pass", "err", err)
		}
		r.o.Logger.Debug("register pass done", "duration", time.Since(started).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (r *Registrar) tenant(ctx context.Context, t Tenant) ([]TableResult, error) {
	objects, err := t.Store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return nil, fmt.Errorf("list speed files: %w", err)
	}
	base, err := storeBase(t.Store)
	if err != nil {
		return nil, err
	}
	byDataset := map[string][]catalog.File{}
	var unknown []string
	for _, o := range objects {
		f, ok := lake.ParseSpeedKey(o.Key)
		if !ok {
			continue
		}
		if r.o.Schemas[f.Dataset] == nil {
			unknown = append(unknown, f.Dataset)
			continue
		}
		byDataset[f.Dataset] = append(byDataset[f.Dataset], catalog.File{Location: base + o.Key, Size: o.Size, Modified: o.Modified})
	}
	if len(unknown) > 0 {
		r.o.Logger.Warn("speed files of datasets without a schema left out", "tenant", t.Name, "datasets", dedupe(unknown))
	}
	if len(byDataset) == 0 {
		return nil, nil
	}
	opts := t.Catalog
	opts.Tenant = t.Name
	cat, err := catalog.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer cat.Close()

	datasets := make([]string, 0, len(byDataset))
	for d := range byDataset {
		datasets = append(datasets, d)
	}
	sort.Strings(datasets)
	var (
		out  []TableResult
		errs []error
	)
	for _, d := range datasets {
		res, err := r.table(ctx, cat, t.Name, d, byDataset[d])
		if err != nil {
			errs = append(errs, fmt.Errorf("table %s: %w", d, err))
			continue
		}
		out = append(out, res)
	}
	return out, errors.Join(errs...)
}

func (r *Registrar) table(ctx context.Context, cat *catalog.Catalog, tenant, dataset string, files []catalog.File) (TableResult, error) {
	tbl, err := cat.Table(ctx, dataset, r.o.Schemas[dataset])
	if err != nil {
		return TableResult{}, err
	}
	change, tbl, err := catalog.Sync(ctx, tbl, files, iceberg.Properties{"fhirlake.tenant": tenant, "fhirlake.dataset": dataset})
	if err != nil {
		return TableResult{}, err
	}
	if len(tbl.Metadata().Snapshots()) > r.o.KeepSnapshots {
		_, removed, err := catalog.ExpireAndClean(ctx, tbl, r.o.SnapshotRetention, r.o.KeepSnapshots, r.o.OrphanGrace)
		if err != nil {
			return TableResult{}, err
		}
		if len(removed) > 0 {
			r.o.Logger.Debug("removed orphan metadata", "tenant", tenant, "table", dataset, "files", len(removed))
		}
	}
	return TableResult{Tenant: tenant, Table: dataset, Added: len(change.Add), Removed: len(change.Remove), Files: len(files)}, nil
}

// storeBase is the location a store's keys are appended to, as the tables' file IO
// reads it: s3://bucket/prefix/ or an absolute directory with a trailing slash.
func storeBase(s sink.Store) (string, error) {
	u := s.URL()
	if strings.HasPrefix(u, "s3://") {
		return strings.TrimRight(u, "/") + "/", nil
	}
	abs, err := filepath.Abs(u)
	if err != nil {
		return "", fmt.Errorf("store %s: %w", u, err)
	}
	return filepath.ToSlash(abs) + "/", nil
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
