package query

// A session's catalog: the SQL views a query may use, rebuilt by Refresh
// whenever the lake changes. The build is planned (catalog_plan.go), then
// run statement by statement in one transaction (catalog_build.go for the
// raw dataset, catalog_typed.go for the typed, JSON and mart views), from
// SQL built in catalog_sql.go over the files the lake holds
// (catalog_lake.go).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fhirlake/lake"
)

// Catalog describes a session's views as of its last refresh.
type Catalog struct {
	// Snapshot is the batch snapshot the views read; nil when the lake has
	// none and every view reads the speed layer alone.
	Snapshot *lake.Manifest
	// Tables are the views a query may use, sorted by name.
	Tables []Table
	// Types are the resource types present, sorted.
	Types []string
	// Views are the typed views (one per SQL-on-FHIR view dataset), sorted.
	Views []string
	// SpeedFiles counts the speed files the views read: every one without a
	// snapshot, those newer than its watermark (minus the overlap) with one.
	SpeedFiles int
	// Built is when the views were last rebuilt; Checked when the lake was
	// last looked at.
	Built, Checked time.Time
	// Generation counts the rebuilds; it changes whenever the views do
	// (making a view the first time changes none).
	Generation uint64
	// Made are the views made in DuckDB so far, sorted. A view is made by
	// the first statement that names it (or by Describe), and made again by
	// each rebuild; the others exist only in Tables until then.
	Made []string
	// Changed counts the resources changed in the speed files read beside
	// the snapshot and ranked so far: the ranking is made per resource type
	// for the typed views made, and for every type at once for the raw
	// views, once per rebuild.
	Changed int64
	// Unreadable are the speed files the views leave out, because they
	// could not be read as their dataset's (catalog_quarantine.go).
	Unreadable []UnreadableFile

	fingerprint string
	// internal are the objects of schema lake made so far: name → VIEW or
	// TABLE.
	internal map[string]string
	// plan and units are this generation's, for the views made later;
	// made are the units made so far, counts the resources each ranking
	// made found changed.
	plan   *viewPlan
	units  *catalogUnits
	made   map[string]bool
	counts map[string]int64
}

// Table is one view of a session.
type Table struct {
	Name string `json:"name"`
	// Kind is "resources" (resources, resources_latest, resources_all),
	// "view" (a SQL-on-FHIR view, with every stored row in <name>_all),
	// "resource" (the JSON of one resource type without a typed view),
	// "history" (a <view>_all), or "mart" (a table of the batch snapshot,
	// exactly as fresh as the snapshot).
	Kind string `json:"kind"`
	// ResourceType is the FHIR type the rows describe, when there is one.
	ResourceType string `json:"resource_type,omitempty"`
	// Source is "speed", "batch+speed" or "batch".
	Source string `json:"source"`
}

// Catalog returns the session's catalog as of its last refresh. It is safe
// for concurrent use.
func (s *Session) Catalog() *Catalog { return s.cat.Load() }

// Refresh brings the catalog up to date with the lake: a new or replaced
// batch snapshot, new speed files newer than its watermark, a new view
// dataset or resource type. Only when one of these changed does it plan
// the views again and make again, in one transaction, the views made so
// far (catalog_units.go: the others are made by the first statement that
// names them); it reports whether it did. Speed files of a lake without a
// snapshot are read through globs, so they show up in queries even before
// a refresh. Safe for concurrent use with queries.
//
// When the views fail to build, the speed files are probed one by one and
// those that cannot be read as their dataset's are left out
// (Catalog.Unreadable); the views are built once more from the rest.
func (s *Session) Refresh(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed, scan, err := s.refresh(ctx)
	if err == nil || scan == nil {
		return changed, err
	}
	if n, qerr := s.quarantine(ctx, scan); qerr != nil || n == 0 {
		return false, err
	}
	changed, _, err = s.refresh(ctx)
	return changed, err
}

// refresh is one attempt of Refresh; scan is what it found in the lake,
// nil when the lake could not be listed. s.mu is held.
func (s *Session) refresh(ctx context.Context) (bool, *lakeScan, error) {
	now := time.Now()
	scan, err := s.scanLake(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	p, err := s.plan(ctx, scan)
	if err != nil {
		return false, scan, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	old := s.cat.Load()
	if old != nil && old.fingerprint == p.fingerprint() {
		c := *old
		c.Checked = now
		s.cat.Store(&c)
		return false, scan, nil
	}
	units, err := p.list(ctx)
	if err != nil {
		return false, scan, fmt.Errorf("tenant %s: %w", s.tenant, err)
	}
	b := newBuild(p, units, nil)
	if err := s.build(ctx, b, old.madeUnits(units), old); err != nil {
		return false, scan, fmt.Errorf("tenant %s: build views: %w", s.tenant, err)
	}
	c := &Catalog{
		Snapshot: p.scan.manifest, Tables: units.tables(), Types: p.types, Views: p.typed,
		SpeedFiles: p.speedFiles, Built: now, Checked: now, fingerprint: p.fingerprint(),
		Unreadable: s.unreadable(), plan: p, units: units,
	}
	c.record(b)
	if old != nil {
		c.Generation = old.Generation + 1
	}
	s.cat.Store(c)
	s.Types, s.Views = c.Types, c.Views
	return true, scan, nil
}

// build makes the units keys, and the units they read, that b has not
// made, in one transaction on one connection, so that a query sees the
// objects either all or none. With old (a refresh), it then drops what
// old had made and b did not make again.
func (s *Session) build(ctx context.Context, b *catalogBuild, keys []string, old *Catalog) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	b.conn = conn
	if old != nil {
		b.existing = old.internal
	}
	err = b.makeUnits(ctx, keys)
	if err == nil && old != nil {
		err = b.dropLeftovers(ctx, old)
	}
	if err != nil {
		if _, rerr := conn.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// dropLeftovers drops the views and the objects of schema lake that the
// previous generation made and this build did not.
func (b *catalogBuild) dropLeftovers(ctx context.Context, old *Catalog) error {
	for _, name := range old.Made {
		if !b.has(name) {
			if err := b.exec(ctx, dropView(name)); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedKeys(old.internal) {
		if _, ok := b.internal[name]; !ok {
			if err := b.exec(ctx, dropLakeObject(old.internal[name], name)); err != nil {
				return err
			}
		}
	}
	return nil
}
