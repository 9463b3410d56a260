package query

// The plan of a catalog build: which files each view reads (with a
// snapshot, the speed tail newer than its watermark minus the overlap),
// which view datasets the snapshot holds, and the resource types present.
// The plan's fingerprint tells Refresh whether the views must be rebuilt.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"fhirlake/lake"
)

// viewPlan decides the views of one refresh.
type viewPlan struct {
	s    *Session
	scan *lakeScan
	// cutoff: with a snapshot, the speed files modified at or after it are
	// read beside it.
	cutoff time.Time
	// fresh are, per dataset, the speed files read beside the snapshot.
	fresh map[string][]speedFile
	// batched are the view datasets whose state the snapshot holds.
	batched    map[string]bool
	typed      []string
	types      []string
	speedFiles int
	// trace, when set, sees each statement the build runs (tests pin them).
	trace func(q string)
}

// plan resolves what the views will read of scan.
func (s *Session) plan(ctx context.Context, scan *lakeScan) (*viewPlan, error) {
	p := &viewPlan{s: s, scan: scan}
	if err := p.resolve(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// resolve lists what the views will read and learns the resource types
// present (scanning only files it has not scanned before).
func (p *viewPlan) resolve(ctx context.Context) error {
	p.fresh = map[string][]speedFile{}
	p.batched = map[string]bool{}
	if m := p.scan.manifest; m != nil {
		if err := p.besideSnapshot(m); err != nil {
			return err
		}
	} else {
		for _, files := range p.scan.datasets {
			p.speedFiles += len(files)
		}
	}
	views := map[string]bool{}
	for ds := range p.scan.datasets {
		if ds != "resources" {
			views[ds] = true
		}
	}
	for v := range p.batched {
		views[v] = true
	}
	p.typed = sortedKeys(views)
	return p.learnTypes(ctx)
}

// besideSnapshot finds the view datasets whose state the snapshot holds
// and the speed files to read beside it: those of a dataset the snapshot
// holds from the cutoff on, every one of the others.
func (p *viewPlan) besideSnapshot(m *lake.Manifest) error {
	if _, ok := m.Models[batchRawModel]; !ok {
		return fmt.Errorf("batch snapshot %s has no %s", m.SnapshotID, batchRawModel)
	}
	p.cutoff = m.TailStart(p.s.opts.SpeedOverlap)
	for name := range m.Models {
		if v, ok := lake.ParseStateModel(name); ok && validViewName(v) {
			p.batched[v] = true
		}
	}
	for ds, files := range p.scan.datasets {
		if ds != lake.RawDataset && !p.batched[ds] {
			p.speedFiles += len(files)
			continue
		}
		for _, f := range files {
			if !f.modified.Before(p.cutoff) {
				p.fresh[ds] = append(p.fresh[ds], f)
			}
		}
		p.speedFiles += len(p.fresh[ds])
	}
	return nil
}

// learnTypes adds the resource types of raw files (or of a new snapshot)
// not seen before to the session's set.
func (p *viewPlan) learnTypes(ctx context.Context) error {
	s := p.s
	sources, raw, err := p.typeSources()
	if err != nil {
		return err
	}
	for _, src := range sources {
		if err := p.scanTypes(ctx, src); err != nil {
			return fmt.Errorf("resource types: %w", err)
		}
	}
	if m := p.scan.manifest; m != nil {
		s.snapshots[m.SnapshotID] = true
	}
	for _, f := range raw {
		s.scanned[f.path] = f.size
	}
	p.types = sortedKeys(s.types)
	return nil
}

// typeSources are the files whose resource types the session does not
// know yet: a snapshot's raw state model the first time, then the raw
// speed files read (beside the snapshot, or all without one) it has not
// scanned at their size. raw are the raw speed files read.
func (p *viewPlan) typeSources() (sources []string, raw []speedFile, err error) {
	s := p.s
	m := p.scan.manifest
	if m != nil && !s.snapshots[m.SnapshotID] {
		_, files, err := s.stateFrom(m, batchRawModel)
		if err != nil {
			return nil, nil, err
		}
		sources = append(sources, "read_parquet("+fileList(files)+")")
	}
	raw = p.scan.datasets["resources"]
	if m != nil {
		raw = p.fresh["resources"]
	}
	var unseen []string
	for _, f := range raw {
		if size, ok := s.scanned[f.path]; !ok || size != f.size {
			unseen = append(unseen, f.path)
		}
	}
	if len(unseen) > 0 {
		sources = append(sources, "read_parquet("+fileList(unseen)+", union_by_name = true)")
	}
	return sources, raw, nil
}

// scanTypes adds the valid resource types of a source to the session's.
func (p *viewPlan) scanTypes(ctx context.Context, src string) error {
	rows, err := p.s.db.QueryContext(ctx, "SELECT DISTINCT resource_type FROM "+src)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t sql.NullString
		if err := rows.Scan(&t); err != nil {
			return err
		}
		if validType(t.String) {
			p.s.types[t.String] = true
		}
	}
	return rows.Err()
}

// fingerprint changes whenever the views must be rebuilt.
func (p *viewPlan) fingerprint() string {
	h := sha256.New()
	if m := p.scan.manifest; m != nil {
		fmt.Fprintf(h, "snapshot %s %s\n", m.SnapshotID, m.Watermark.Modified)
		for _, model := range m.ModelNames() {
			fmt.Fprintf(h, "table %s %s\n", model, p.s.icebergTable(m, model))
		}
		for _, ds := range sortedKeys(p.fresh) {
			for _, f := range p.fresh[ds] {
				fmt.Fprintf(h, "fresh %s %d %d\n", f.path, f.size, f.modified.UnixNano())
			}
		}
	}
	for _, ds := range sortedKeys(p.scan.datasets) {
		fmt.Fprintf(h, "dataset %s\n", ds)
		if p.scan.manifest == nil && p.s.hasUnreadable(ds) {
			// Listed file by file rather than through a glob.
			for _, f := range p.scan.datasets[ds] {
				fmt.Fprintf(h, "file %s %d\n", f.path, f.size)
			}
		}
	}
	for _, u := range p.s.unreadable() {
		fmt.Fprintf(h, "unreadable %s %d\n", u.Key, u.size)
	}
	fmt.Fprintf(h, "typed %s\ntypes %s\n", strings.Join(p.typed, ","), strings.Join(p.types, ","))
	return hex.EncodeToString(h.Sum(nil))
}

// sortedKeys are m's keys, sorted; nil when m is empty.
func sortedKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// source is the Source of the views that read the speed layer, and the
// snapshot when there is one.
func (p *viewPlan) source() string {
	if p.scan.manifest != nil {
		return "batch+speed"
	}
	return "speed"
}
