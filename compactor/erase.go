package compactor

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// Erasure of one patient from a tenant's lake (docs/format/erasure.md), under the
// tenant's compaction lease so that no compaction reads the speed layer while it is
// rewritten or publishes a snapshot built before the erasure:
//
//  1. find the patient's resources: the Patient and every resource in its
//     compartment (lake.PatientRefs), in the raw speed files and the snapshot's
//     state, every version;
//  2. write the erasure record (_erasure/<patient-sha256>.json), widened by any
//     earlier one of the same patient, before anything is removed: from then on the
//     consumer and the compactor drop those resources' changes up to its positions;
//  3. rewrite every speed file holding their rows, raw and view datasets alike,
//     under its own key (one atomic replacement: a reader sees the old file or the
//     new one), or delete it when nothing is left;
//  4. build a snapshot from the current one's state without them, through dbt as a
//     compaction does, and publish it under the lease;
//  5. delete every other snapshot (they hold the patient) and mark the record
//     complete.
//
// Every step is idempotent, so a run that stopped anywhere is finished by running
// it again: the record is written first and only ever widened, a file without the
// patient's rows is left alone, a current snapshot without them is not rebuilt.

// EraseRequest is what to erase from one tenant.
type EraseRequest struct {
	// Patient is the patient's id (Patient.id).
	Patient string
	// Positions are the ends of the consumed topics' partitions when the erasure
	// began (Kafka's high watermarks): changes before them stay erased on replay.
	Positions []lake.Position
}

// EraseResult says what an erasure removed.
type EraseResult struct {
	Tenant string
	// Resources is how many resources (type and id) the erasure record holds.
	Resources int
	// Speed is what was removed from each speed dataset.
	Speed map[string]*DatasetErasure
	// State is how many rows were removed from each state model of the snapshot.
	State map[string]int64
	// Snapshot is the current snapshot afterwards; Republished is set when the
	// erasure published it.
	Snapshot    string
	Republished bool
	// SnapshotsDeleted counts the other snapshots deleted, with the patient in them.
	SnapshotsDeleted int
	// Record is the erasure record as written.
	Record *lake.Erasure
	// RecordKey is where it is.
	RecordKey string
}

// DatasetErasure is what an erasure removed from one speed dataset.
type DatasetErasure struct {
	Rows           int64
	FilesRewritten int
	FilesDeleted   int
}

// Erase removes a patient's resources from a tenant's lake (see above). A run that
// fails leaves the record in place, incomplete: running it again finishes it.
func (c *Compactor) Erase(ctx context.Context, t Tenant, req EraseRequest) (*EraseResult, error) {
	if req.Patient == "" || strings.ContainsAny(req.Patient, "/ ") {
		return nil, fmt.Errorf("patient id %q: want the Patient's id, without its type", req.Patient)
	}
	target, env, err := t.dbtTarget()
	if err != nil {
		return nil, err
	}
	log := c.log.With("tenant", t.Name)
	l, err := c.takeLease(ctx, t, log)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	defer l.release()
	ctx = l.ctx
	res, err := c.erase(ctx, t, req, l, target, env)
	if err != nil {
		return res, fmt.Errorf("tenant %s: erase: %w", t.Name, l.explain(err))
	}
	return res, nil
}

func (c *Compactor) erase(ctx context.Context, t Tenant, req EraseRequest, l *lease, target string, env []string) (*EraseResult, error) {
	now := c.now().UTC()
	res := &EraseResult{Tenant: t.Name, Speed: map[string]*DatasetErasure{}, State: map[string]int64{}}
	if err := os.MkdirAll(c.opts.WorkDir, 0o755); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp(c.opts.WorkDir, ".erase-*")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	db, err := openDuckDB()
	if err != nil {
		return res, err
	}
	defer db.Close()
	e := &eraser{c: c, t: t, db: db, dir: dir, patient: req.Patient}

	prev, err := sink.ReadManifest(ctx, t.Store)
	if err != nil {
		return res, err
	}
	res.RecordKey = lake.ErasureKey(lake.PatientHash(req.Patient))
	rec, err := sink.ReadErasure(ctx, t.Store, res.RecordKey)
	if err != nil {
		return res, err
	}
	if rec == nil {
		rec = &lake.Erasure{Version: lake.ErasureVersion, Tenant: t.Name, Patient: lake.PatientHash(req.Patient), Requested: now}
	}
	e.known = map[string]bool{}
	for _, k := range rec.Keys {
		e.known[k] = true
	}

	// 1. The patient's resources, and where their changes were read from.
	keys, seen, err := e.find(ctx, prev)
	if err != nil {
		return res, fmt.Errorf("find the patient's resources: %w", err)
	}
	// 2. The record, before anything is removed.
	rec.Updated, rec.Completed = now, time.Time{}
	rec.Merge(keys, append(req.Positions, seen...))
	if err := e.putRecord(ctx, res.RecordKey, rec); err != nil {
		return res, err
	}
	res.Record, res.Resources = rec, len(rec.Keys)
	if err := e.loadKeys(ctx, rec.Keys); err != nil {
		return res, err
	}
	// 3. The speed layer.
	if err := e.speed(ctx, res); err != nil {
		return res, fmt.Errorf("speed layer: %w", err)
	}
	// 4. The snapshot.
	current, cur := "", prev
	if prev != nil {
		current = prev.SnapshotID
		dirty, err := e.stateRows(ctx, prev, res)
		if err != nil {
			return res, fmt.Errorf("snapshot %s: %w", prev.SnapshotID, err)
		}
		if dirty {
			m, err := c.republish(ctx, e, prev, l, target, env)
			if err != nil {
				return res, fmt.Errorf("republish without the patient: %w", err)
			}
			current, cur, res.Republished = m.SnapshotID, m, true
		}
	}
	res.Snapshot = current
	// 5. The Iceberg tables: at the current snapshot, with no snapshot of their own
	// that references another (iceberg.go); then every other snapshot, then the
	// record's completion.
	if t.Iceberg != nil && cur != nil {
		only := *cur
		only.History = nil
		if err := c.publishTables(ctx, &run{tenant: t, res: &Result{Tenant: t.Name}, log: c.log.With("tenant", t.Name), lease: l}, &only); err != nil {
			return res, fmt.Errorf("iceberg tables: %w", err)
		}
	}
	n, err := deleteSnapshotsBut(ctx, t.Store, cur)
	res.SnapshotsDeleted = n
	if err != nil {
		return res, fmt.Errorf("delete earlier snapshots: %w", err)
	}
	rec.Completed = c.now().UTC()
	if err := e.putRecord(ctx, res.RecordKey, rec); err != nil {
		return res, err
	}
	return res, nil
}

// eraser holds one erasure's DuckDB, where the erased keys are a table, and its
// scratch directory.
type eraser struct {
	c       *Compactor
	t       Tenant
	db      *sql.DB
	dir     string
	patient string
	// known are the keys of the patient's earlier record.
	known map[string]bool
	seq   int
}

// find returns the keys (lake.ResourceKeyHash) of the patient's resources in the raw
// speed files and the snapshot's raw state, and for each partition the speed layer
// read their changes from, the offset after the last one.
func (e *eraser) find(ctx context.Context, prev *lake.Manifest) ([]string, []lake.Position, error) {
	keys := map[string]bool{lake.ResourceKeyHash("Patient", e.patient): true}
	seen := map[[2]string]lake.Position{}
	member := func(typ, id string, resource sql.NullString) (string, bool, error) {
		k := lake.ResourceKeyHash(typ, id)
		if keys[k] || e.known[k] {
			return k, true, nil
		}
		if !resource.Valid {
			return k, false, nil
		}
		refs, err := lake.PatientRefs(typ, []byte(resource.String))
		if err != nil {
			return k, false, fmt.Errorf("%s/%s: %w", typ, id, err)
		}
		for _, p := range refs {
			if p == e.patient {
				return k, true, nil
			}
		}
		return k, false, nil
	}
	objs, err := e.t.Store.List(ctx, lake.DatasetPrefix(lake.RawDataset))
	if err != nil {
		return nil, nil, err
	}
	// Deletes carry no JSON: a tombstone is the patient's when another version is,
	// which may come in a later file. So the keys are found first, positions after.
	type change struct {
		key   string
		topic string
		part  int32
		off   int64
	}
	var changes []change
	for _, o := range objs {
		if _, ok := lake.ParseSpeedKey(o.Key); !ok {
			continue
		}
		path, err := e.local(ctx, o.Key)
		if err != nil {
			return nil, nil, err
		}
		err = e.scan(ctx, fmt.Sprintf(`SELECT resource_type, id, topic, "partition", "offset", resource FROM read_parquet(%s, hive_partitioning = false)`, sqlString(path)),
			func(rows *sql.Rows) error {
				var typ, id, topic string
				var part int32
				var off int64
				var resource sql.NullString
				if err := rows.Scan(&typ, &id, &topic, &part, &off, &resource); err != nil {
					return err
				}
				k, in, err := member(typ, id, resource)
				if err != nil {
					return err
				}
				if in {
					keys[k] = true
				}
				changes = append(changes, change{k, topic, part, off})
				return nil
			})
		e.drop(path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", o.Key, err)
		}
	}
	if prev != nil {
		raw := prev.Models[lake.StateModel(lake.RawDataset)]
		for _, key := range append(append([]string(nil), raw.Files...), raw.Delta.PartFiles()...) {
			path, err := e.local(ctx, key)
			if err != nil {
				return nil, nil, err
			}
			err = e.scan(ctx, fmt.Sprintf(`SELECT resource_type, resource_id, resource FROM read_parquet(%s)`, sqlString(path)),
				func(rows *sql.Rows) error {
					var typ, id string
					var resource sql.NullString
					if err := rows.Scan(&typ, &id, &resource); err != nil {
						return err
					}
					k, in, err := member(typ, id, resource)
					if in {
						keys[k] = true
					}
					return err
				})
			e.drop(path)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	for _, ch := range changes {
		if !keys[ch.key] && !e.known[ch.key] {
			continue
		}
		tp := [2]string{ch.topic, fmt.Sprint(ch.part)}
		if p, ok := seen[tp]; !ok || ch.off+1 > p.Before {
			seen[tp] = lake.Position{Topic: ch.topic, Partition: ch.part, Before: ch.off + 1}
		}
	}
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	positions := make([]lake.Position, 0, len(seen))
	for _, p := range seen {
		positions = append(positions, p)
	}
	return out, positions, nil
}

// loadKeys makes the erased keys the table erased(k).
func (e *eraser) loadKeys(ctx context.Context, keys []string) error {
	if _, err := e.db.ExecContext(ctx, "CREATE OR REPLACE TEMP TABLE erased (k VARCHAR PRIMARY KEY)"); err != nil {
		return err
	}
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		vals := make([]string, len(batch))
		for i, k := range batch {
			vals[i] = "(" + sqlString(k) + ")"
		}
		if _, err := e.db.ExecContext(ctx, "INSERT OR IGNORE INTO erased VALUES "+strings.Join(vals, ", ")); err != nil {
			return err
		}
	}
	return nil
}

// speed rewrites every speed file that holds rows of an erased resource.
func (e *eraser) speed(ctx context.Context, res *EraseResult) error {
	objs, err := e.t.Store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return err
	}
	for _, o := range objs {
		f, ok := lake.ParseSpeedKey(o.Key)
		if !ok {
			continue
		}
		typ, id := lake.ViewColResourceType, lake.ViewColResourceID
		if f.Dataset == lake.RawDataset {
			typ, id = lake.ColResourceType, lake.ColID
		}
		removed, kept, err := e.filter(ctx, o.Key, "read_parquet(%s, hive_partitioning = false)", typ, id, func(out string) error {
			return e.t.Store.Put(ctx, o.Key, out)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", o.Key, err)
		}
		if removed == 0 {
			continue
		}
		d := res.Speed[f.Dataset]
		if d == nil {
			d = &DatasetErasure{}
			res.Speed[f.Dataset] = d
		}
		d.Rows += removed
		if kept == 0 {
			if err := e.t.Store.Delete(ctx, o.Key); err != nil {
				return err
			}
			d.FilesDeleted++
		} else {
			d.FilesRewritten++
		}
	}
	return nil
}

// filter reads the object at key (relation: a DuckDB table function with %s for
// the local file) and counts the rows of erased resources, by the columns typ and
// id. When there are some and others remain, it writes the others to a new local
// file and hands it to put (nil: it only counts). It returns the rows removed and
// kept.
func (e *eraser) filter(ctx context.Context, key, relation, typ, id string, put func(out string) error) (removed, kept int64, err error) {
	path, err := e.local(ctx, key)
	if err != nil {
		return 0, 0, err
	}
	defer e.drop(path)
	from := fmt.Sprintf(relation, sqlString(path))
	match := fmt.Sprintf("sha256(%s || '/' || %s) IN (SELECT k FROM erased)", quoteIdent(typ), quoteIdent(id))
	var total int64
	if err := e.db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*), count(*) FILTER (WHERE %s) FROM %s", match, from)).Scan(&total, &removed); err != nil {
		return 0, 0, err
	}
	kept = total - removed
	if removed == 0 || kept == 0 || put == nil {
		return removed, kept, nil
	}
	e.seq++
	out := filepath.Join(e.dir, fmt.Sprintf("out-%d.parquet", e.seq))
	defer os.Remove(out)
	if _, err := e.db.ExecContext(ctx, fmt.Sprintf("COPY (SELECT * FROM %s WHERE NOT (%s)) TO %s (FORMAT parquet, COMPRESSION zstd)", from, match, sqlString(out))); err != nil {
		return 0, 0, err
	}
	return removed, kept, put(out)
}

// stateRows counts the erased rows in each state model of the snapshot, every part
// (base, changed keys, delta), into res; dirty is whether there are any.
func (e *eraser) stateRows(ctx context.Context, m *lake.Manifest, res *EraseResult) (dirty bool, err error) {
	for _, name := range stateModels(m) {
		for _, key := range m.Models[name].Keys() {
			removed, _, err := e.filter(ctx, key, "read_parquet(%s)", "resource_type", "resource_id", nil)
			if err != nil {
				return false, fmt.Errorf("%s: %w", key, err)
			}
			res.State[name] += removed
			dirty = dirty || removed > 0
		}
	}
	return dirty, nil
}

// republish builds and publishes a snapshot from prev's state without the erased
// resources: their state models, every part filtered, become an unpublished base
// snapshot, on which a compaction's build runs as a rebuild (dbt writes every state
// model as a new base and rebuilds every mart from that state and the speed tail), so
// that no part the new snapshot references is older than the erasure; it is published
// with the compaction's protocol under the lease held.
func (c *Compactor) republish(ctx context.Context, e *eraser, prev *lake.Manifest, l *lease, target string, env []string) (*lake.Manifest, error) {
	t := e.t
	now := c.now()
	base := &lake.Manifest{Version: lake.ManifestVersion, Tenant: t.Name, SnapshotID: lake.NewSnapshotID(now), Created: now.UTC(),
		Watermark: prev.Watermark, Project: prev.Project, SpeedExpiredBefore: prev.SpeedExpiredBefore, Models: map[string]lake.Model{},
		DBT: prev.DBT}
	for _, name := range stateModels(prev) {
		var mod lake.Model
		var rows int64
		var err error
		if mod.Files, mod.Rows, err = e.copyFiltered(ctx, base.SnapshotID, name, "data", prev.Models[name].Files); err != nil {
			return nil, err
		}
		for _, part := range []struct {
			name string
			from *lake.Part
			to   **lake.Part
		}{{"changed", prev.Models[name].Changed, &mod.Changed}, {"delta", prev.Models[name].Delta, &mod.Delta}} {
			var files []string
			if files, rows, err = e.copyFiltered(ctx, base.SnapshotID, name, part.name, part.from.PartFiles()); err != nil {
				return nil, err
			}
			if len(files) > 0 {
				*part.to = &lake.Part{Rows: rows, Files: files}
			}
		}
		if len(mod.Files) > 0 || mod.Delta != nil {
			base.Models[name] = mod
		}
	}
	if _, ok := base.Models[lake.StateModel(lake.RawDataset)]; !ok {
		return nil, errors.New("nothing would be left of the snapshot's state; delete " + lake.ManifestKey + " and compact with --full-refresh instead")
	}
	listing, err := t.Store.List(ctx, lake.SpeedPrefix)
	if err != nil {
		return nil, fmt.Errorf("list speed layer: %w", err)
	}
	sel := Plan(listing, base, now, PlanOptions{Overlap: c.opts.Overlap, ConsistencyDelay: c.opts.ConsistencyDelay, Project: base.Project})
	sel.FullRefresh, sel.Previous, sel.Reason = false, base, "erasure"
	r := &run{tenant: t, res: &Result{Tenant: t.Name}, log: c.log.With("tenant", t.Name), lease: l, now: now, prev: prev, sel: sel,
		rebuild: true}
	results, err := c.build(ctx, r, target, env)
	if err != nil {
		return nil, err
	}
	m, err := c.publish(ctx, r, results)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.dir)
	// The snapshots publish kept in the history hold the patient: they go next, so
	// the manifest stops naming them first.
	m.History = nil
	expires, err := l.confirm(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithDeadline(ctx, expires)
	defer cancel()
	if err := putManifest(pctx, t.Store, e.dir, lake.ManifestKey, m); err != nil {
		return nil, fmt.Errorf("publish %s: %w", lake.ManifestKey, err)
	}
	if err := putManifest(ctx, t.Store, e.dir, lake.SnapshotManifestKey(m.SnapshotID), m); err != nil {
		return nil, err
	}
	return m, nil
}

// copyFiltered copies a part of a state model (files: its keys) into the snapshot id
// as <part>_<i>.parquet, without the erased resources' rows; a file left empty is
// dropped. It returns the new keys and the rows they hold.
func (e *eraser) copyFiltered(ctx context.Context, id, model, part string, files []string) ([]string, int64, error) {
	t := e.t
	var out []string
	var rows int64
	for i, key := range files {
		dst := lake.ModelKey(id, model, fmt.Sprintf("%s_%d.parquet", part, i))
		removed, kept, err := e.filter(ctx, key, "read_parquet(%s)", "resource_type", "resource_id", func(out string) error {
			return t.Store.Put(ctx, dst, out)
		})
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", key, err)
		}
		if removed == 0 {
			// Unchanged: copied as it is.
			path, err := e.local(ctx, key)
			if err != nil {
				return nil, 0, err
			}
			err = t.Store.Put(ctx, dst, path)
			e.drop(path)
			if err != nil {
				return nil, 0, err
			}
		}
		if removed == 0 || kept > 0 {
			out = append(out, dst)
			rows += kept
		}
	}
	return out, rows, nil
}

// deleteSnapshotsBut deletes the files of every snapshot but keep (none with ""),
// except those keep's manifest references (a base carried from an earlier snapshot,
// which held none of the erased rows: the snapshot was rebuilt otherwise).
func deleteSnapshotsBut(ctx context.Context, store sink.Store, keep *lake.Manifest) (int, error) {
	objs, err := store.List(ctx, lake.BatchPrefix)
	if err != nil {
		return 0, err
	}
	id, referenced := "", map[string]bool{}
	if keep != nil {
		id = keep.SnapshotID
		for _, k := range keep.Keys() {
			referenced[k] = true
		}
	}
	ids := map[string]bool{}
	for _, o := range objs {
		sid, ok := lake.ParseSnapshotKey(o.Key)
		if !ok || sid == id || referenced[o.Key] {
			continue
		}
		if err := store.Delete(ctx, o.Key); err != nil {
			return len(ids), err
		}
		ids[sid] = true
	}
	return len(ids), nil
}

// putRecord stores the erasure record.
func (e *eraser) putRecord(ctx context.Context, key string, rec *lake.Erasure) error {
	b, err := rec.Encode()
	if err != nil {
		return err
	}
	p := filepath.Join(e.dir, "erasure.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return err
	}
	if err := e.t.Store.Put(ctx, key, p); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// local is a local path of the object at key: the file itself in a directory store,
// else a copy in the scratch directory, which drop removes.
func (e *eraser) local(ctx context.Context, key string) (string, error) {
	if l, ok := e.t.Store.(*sink.Local); ok {
		return filepath.Join(l.Root, filepath.FromSlash(key)), nil
	}
	e.seq++
	p := filepath.Join(e.dir, fmt.Sprintf("in-%d.parquet", e.seq))
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	if err := e.t.Store.Get(ctx, key, f); err != nil {
		f.Close()
		os.Remove(p)
		return "", err
	}
	return p, f.Close()
}

// drop removes a copy local made.
func (e *eraser) drop(path string) {
	if strings.HasPrefix(path, e.dir+string(filepath.Separator)) {
		os.Remove(path)
	}
}

// scan runs q and calls each for every row.
func (e *eraser) scan(ctx context.Context, q string, each func(*sql.Rows) error) error {
	rows, err := e.db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// writeErasures writes the tenant's erasure records as dbt's erasure_file in dir:
// one line per erased resource and partition, key,topic,partition,before. It
// returns the file's path, or "" when the tenant has no erasure.
func writeErasures(ctx context.Context, store sink.Store, dir string) (string, error) {
	recs, err := sink.ReadErasures(ctx, store)
	if err != nil || len(recs) == 0 {
		return "", err
	}
	path := filepath.Join(dir, "erasure.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := csv.NewWriter(f)
	err = w.Write([]string{"key", "topic", "partition", "before"})
	for _, rec := range recs {
		for _, k := range rec.Keys {
			for _, p := range rec.Positions {
				if err == nil {
					err = w.Write([]string{k, p.Topic, strconv.Itoa(int(p.Partition)), strconv.FormatInt(p.Before, 10)})
				}
			}
		}
	}
	w.Flush()
	if err == nil {
		err = w.Error()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write erasures: %w", err)
	}
	return path, nil
}
