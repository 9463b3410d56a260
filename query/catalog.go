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
	// Generation counts the rebuilds; it changes whenever the views do.
	Generation uint64
	// Changed counts the resources changed in the speed files read beside
	// the snapshot: only these are ranked again, once per rebuild.
	Changed int64
	// Unreadable are the speed files the views leave out, because they
	// could not be read as their dataset's (catalog_quarantine.go).
	Unreadable []UnreadableFile

	fingerprint string
	// internal are the objects of schema lake the build made: name → VIEW
	// or TABLE.
	internal map[string]string
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

// Refresh brings the views up to date with the lake: a new or replaced
// batch snapshot, new speed files newer than its watermark, a new view
// dataset or resource type. It rebuilds the views, in one transaction, only
// when one of these changed, and reports whether it did. Speed files of a
// lake without a snapshot are read through globs, so they show up in
// queries even before a refresh. Safe for concurrent use with queries.
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
// nil when the lake could not be listed.
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
	b, err := s.build(ctx, p, old)
	if err != nil {
		return false, scan, fmt.Errorf("tenant %s: build views: %w", s.tenant, err)
	}
	c := &Catalog{
		Snapshot: p.scan.manifest, Tables: b.tables, Types: p.types, Views: p.typed,
		SpeedFiles: p.speedFiles, Changed: b.changed, Built: now, Checked: now, fingerprint: p.fingerprint(),
		Unreadable: s.unreadable(), internal: b.internal,
	}
	if old != nil {
		c.Generation = old.Generation + 1
	}
	s.cat.Store(c)
	s.Types, s.Views = c.Types, c.Views
	return true, scan, nil
}

// build (re)creates the views in one transaction on one connection, so
// that a query sees either the old views and tables or the new ones, and
// drops what the previous build made and this one did not.
func (s *Session) build(ctx context.Context, p *viewPlan, old *Catalog) (*catalogBuild, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return nil, err
	}
	b := &catalogBuild{plan: p, conn: conn, internal: map[string]string{}}
	err = b.createAll(ctx)
	if err == nil && old != nil {
		err = b.dropLeftovers(ctx, old)
	}
	if err != nil {
		if _, rerr := conn.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, err
	}
	return b, nil
}

// dropLeftovers drops the views and the objects of schema lake that the
// previous build made and this one did not.
func (b *catalogBuild) dropLeftovers(ctx context.Context, old *Catalog) error {
	for _, t := range old.Tables {
		if !b.has(t.Name) {
			if err := b.exec(ctx, dropView(t.Name)); err != nil {
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
