package compactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/sink"
)

// The batch layer as Iceberg tables (docs/format/iceberg.md, "The batch snapshot as
// Iceberg tables"): after a snapshot is published, each of its models becomes the
// current state of one table in the tenant's namespace, one commit per table, made
// under the lease. The tables reference the snapshot's files where they are; a model
// merged on read adds position delete files, written under the snapshot's own
// directory of the model, so that expiry keeps them exactly as long as the snapshot.

// Snapshot summary properties of the batch tables' commits.
const (
	PropSnapshotID        = "fhirlake.snapshot-id"
	PropTenant            = "fhirlake.tenant"
	PropModel             = "fhirlake.model"
	PropWatermarkModified = "fhirlake.watermark-modified"
	PropWatermarkKey      = "fhirlake.watermark-key"
	PropFullRefresh       = "fhirlake.full-refresh"
)

// DeletesFile is the name of a merged model's position delete file in its snapshot
// directory, batch/<id>/<model>/.
const DeletesFile = "deletes_0.parquet"

// TableName is the Iceberg table a model of the snapshot is published as
// (catalog.BatchTableName): a state model int_<dataset>__latest as <dataset>_latest,
// a mart under its own name.
func TableName(model string) string { return catalog.BatchTableName(model) }

// tableNames maps every model of m to its table, refusing a snapshot whose tables'
// names would meet each other's or a change table's (catalog.TableNames).
func tableNames(m *lake.Manifest) (map[string]string, error) {
	out := map[string]string{}
	datasets := []string{lake.RawDataset}
	var marts []string
	for _, name := range m.ModelNames() {
		if ds, ok := lake.ParseStateModel(name); ok {
			datasets = append(datasets, ds)
		} else {
			marts = append(marts, name)
		}
		out[name] = TableName(name)
	}
	if err := catalog.TableNames(datasets, marts); err != nil {
		return nil, err
	}
	return out, nil
}

// publishTables makes every table of the tenant's namespace hold the snapshot m,
// then expires the tables' snapshots of fhirlake snapshots that expiry no longer
// keeps. A table already at m (its current snapshot's PropSnapshotID) is left alone,
// so a run that failed here is finished by the next one.
func (c *Compactor) publishTables(ctx context.Context, r *run, m *lake.Manifest) error {
	t := r.tenant
	names, err := tableNames(m)
	if err != nil {
		return err
	}
	cat, err := catalog.Open(ctx, *t.Iceberg)
	if err != nil {
		return err
	}
	defer cat.Close()
	// The tables' file IO reads a key under the same root as DuckDB: s3://bucket/prefix
	// or an absolute directory.
	base := strings.TrimSuffix(t.Lake, "/") + "/"
	if err := os.MkdirAll(c.opts.WorkDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(c.opts.WorkDir, ".iceberg-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := &tablePublisher{c: c, r: r, m: m, cat: cat, base: base, dir: dir}
	keep := map[string]bool{m.SnapshotID: true}
	for _, id := range KeptSnapshots(m, c.opts.Expire) {
		keep[id] = true
	}
	ptr := &lake.IcebergPointer{SnapshotID: m.SnapshotID, Tables: map[string]lake.IcebergTable{}}
	for _, model := range m.ModelNames() {
		tbl, err := p.publish(ctx, model, names[model], keep)
		if err != nil {
			return fmt.Errorf("table %s.%s: %w", cat.Namespace(), names[model], err)
		}
		ptr.Tables[model] = lake.IcebergTable{Table: names[model], MetadataLocation: tbl.MetadataLocation(),
			SnapshotID: tbl.CurrentSnapshot().SnapshotID}
	}
	return c.putPointer(ctx, r, ptr)
}

// putPointer writes lake.IcebergKey, once every table holds the snapshot: the query
// server reads the snapshot through the tables it names (docs/format/iceberg.md,
// "The pointer"). Written with the tenant's key, under the lease. A table whose
// metadata lies outside the tenant's lake (a catalog's table made under another
// warehouse) leaves the pointer unwritten: the query server reads the files.
func (c *Compactor) putPointer(ctx context.Context, r *run, ptr *lake.IcebergPointer) error {
	b, err := ptr.Encode(strings.TrimSuffix(r.tenant.Lake, "/"))
	if err != nil {
		r.log.Warn("the query server reads the snapshot from its files, not its Iceberg tables", "err", err)
		return nil
	}
	expires, err := r.lease.confirm(ctx)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithDeadline(ctx, expires)
	defer cancel()
	if err := putBytes(pctx, r.tenant.Store, c.opts.WorkDir, lake.IcebergKey, b); err != nil {
		return fmt.Errorf("publish %s: %w", lake.IcebergKey, err)
	}
	return nil
}

// catchUpTables publishes the current snapshot to tables a failed run left behind,
// when there is nothing new to compact.
func (c *Compactor) catchUpTables(ctx context.Context, r *run) error {
	if r.tenant.Iceberg == nil {
		return nil
	}
	m, err := sink.ReadManifest(ctx, r.tenant.Store)
	if err != nil || m == nil {
		return err
	}
	if err := c.publishTables(ctx, r, m); err != nil {
		return fmt.Errorf("iceberg tables of snapshot %s: %w", m.SnapshotID, err)
	}
	return nil
}

// tablePublisher publishes one snapshot's models.
type tablePublisher struct {
	c    *Compactor
	r    *run
	m    *lake.Manifest
	cat  *catalog.Catalog
	base string
	// dir holds the position delete files written before their upload.
	dir string
}

func (p *tablePublisher) location(key string) string { return p.base + key }

func (p *tablePublisher) publish(ctx context.Context, model, name string, keep map[string]bool) (*table.Table, error) {
	mod := p.m.Models[model]
	data := append(append([]string{}, mod.Files...), mod.Delta.PartFiles()...)
	if len(data) == 0 {
		return nil, fmt.Errorf("model %s has no files", model)
	}
	// Base and delta are read by name (lake.StateSQL): the table has the columns of both.
	var schema *arrow.Schema
	for _, part := range [][]string{mod.Files, mod.Delta.PartFiles()} {
		if len(part) == 0 {
			continue
		}
		s, err := p.cat.FileSchema(ctx, p.location(part[0]))
		if err != nil {
			return nil, err
		}
		schema = unionSchema(schema, s)
	}
	tbl, err := p.cat.BatchTable(ctx, name, schema)
	if err != nil {
		return nil, err
	}
	if cur := tbl.CurrentSnapshot(); cur != nil && cur.Summary != nil && cur.Summary.Properties[PropSnapshotID] == p.m.SnapshotID {
		return p.expire(ctx, tbl, keep)
	}
	set := catalog.FileSet{}
	for _, k := range data {
		set.Data = append(set.Data, p.location(k))
	}
	if len(mod.Files) > 0 && len(mod.Changed.PartFiles()) > 0 {
		key, err := p.deletes(ctx, model, mod)
		if err != nil {
			return nil, err
		}
		if key != "" {
			set.Deletes = []string{p.location(key)}
		}
	}
	props := iceberg.Properties{
		PropTenant: p.r.tenant.Name, PropModel: model, PropSnapshotID: p.m.SnapshotID,
		PropWatermarkModified: p.m.Watermark.Modified.UTC().Format(time.RFC3339Nano),
		PropFullRefresh:       strconv.FormatBool(p.m.FullRefresh),
	}
	if p.m.Watermark.Key != "" {
		props[PropWatermarkKey] = p.m.Watermark.Key
	}
	// Committed only under the lease, renewed just before, and within its term.
	expires, err := p.r.lease.confirm(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithDeadline(ctx, expires)
	defer cancel()
	tbl, pub, err := catalog.Publish(cctx, tbl, set, props)
	if err != nil {
		return nil, err
	}
	p.r.log.Info("published table", "table", p.cat.Namespace()+"."+name, "snapshot", p.m.SnapshotID,
		"added", len(pub.Added), "removed", len(pub.Removed), "deletes_added", len(pub.DeletesAdded), "deletes_removed", len(pub.DeletesRemoved))
	return p.expire(ctx, tbl, keep)
}

// unionSchema is a's fields, then those of b that a has no field of that name for.
func unionSchema(a, b *arrow.Schema) *arrow.Schema {
	if a == nil {
		return b
	}
	fields := a.Fields()
	for _, f := range b.Fields() {
		if len(a.FieldIndices(f.Name)) == 0 {
			fields = append(fields, f)
		}
	}
	return arrow.NewSchema(fields, nil)
}

// deletes writes and uploads the position deletes of a merged model: the rows of its
// base whose key is among its changed keys. It returns their key, empty when no row
// of the base is changed. DuckDB reads the base and the changed keys where they are
// (openLakeDuckDB: through httpfs on S3), so the deletes name each base file by the
// very location the table references, and nothing is downloaded whole.
func (p *tablePublisher) deletes(ctx context.Context, model string, mod lake.Model) (string, error) {
	var base []catalog.BaseFile
	for _, k := range mod.Files {
		base = append(base, catalog.BaseFile{Path: p.location(k), Location: p.location(k)})
	}
	var changed []string
	for _, k := range mod.Changed.PartFiles() {
		changed = append(changed, p.location(k))
	}
	db, err := openLakeDuckDB(ctx, p.r.tenant, p.c.opts.DuckDBExtensionDir)
	if err != nil {
		return "", err
	}
	defer db.Close()
	out := filepath.Join(p.dir, model+"-"+DeletesFile)
	// The key columns are the changed keys' own (a state model's: lake.StateKeyColumns).
	n, err := catalog.WritePositionDeletes(ctx, db, base, changed, nil, out)
	if err != nil || n == 0 {
		return "", err
	}
	key := lake.ModelKey(p.m.SnapshotID, model, DeletesFile)
	if err := p.r.tenant.Store.Put(ctx, key, out); err != nil {
		return "", fmt.Errorf("upload %s: %w", key, err)
	}
	return key, nil
}

// expire drops the table's snapshots but those of the fhirlake snapshots expiry keeps
// (keep): the newest snapshots back to the first of another fhirlake snapshot, then
// removes the table's metadata files that nothing reaches any more, older than
// compact.orphan_grace. The data and delete files of a dropped snapshot are the
// compactor's to delete, never the table's. It returns the table as it is after.
func (p *tablePublisher) expire(ctx context.Context, tbl *table.Table, keep map[string]bool) (*table.Table, error) {
	retain := 0
	for s := tbl.CurrentSnapshot(); s != nil; {
		if s.Summary == nil || !keep[s.Summary.Properties[PropSnapshotID]] {
			break
		}
		retain++
		if s.ParentSnapshotID == nil {
			break
		}
		s = tbl.SnapshotByID(*s.ParentSnapshotID)
	}
	if retain == 0 || retain >= len(tbl.Metadata().Snapshots()) {
		return tbl, nil
	}
	after, err := catalog.Expire(ctx, tbl, 0, retain)
	if err != nil {
		return nil, err
	}
	// The table is published and expired; metadata left behind is removed by a later
	// expiry if not by this one.
	removed, err := catalog.RemoveOrphanMetadata(ctx, after, p.c.opts.Expire.OrphanGrace)
	if err != nil {
		p.r.log.Warn("orphan table metadata not removed", "table", tbl.Identifier(), "err", err)
	}
	if len(removed) > 0 {
		p.r.log.Info("removed orphan table metadata", "table", tbl.Identifier(), "files", len(removed))
	}
	return after, nil
}

// errNoTables marks a snapshot published in the lake whose tables stay behind.
var errNoTables = errors.New("the snapshot is published; its Iceberg tables stay at the previous one until the next run")
