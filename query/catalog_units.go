package query

// A session makes its views when a statement first needs them. A refresh
// plans the catalog — every view a statement may name (Catalog.Tables,
// what the allowlist accepts) and the unit that makes each — and makes
// none of them; the first statement that names a view makes the view's
// unit and the units it reads, in one transaction (Session.ensure). So
// SELECT count(*) FROM patient pays for patient's objects, not for every
// view's, and the first answer of a new session does not wait for the
// ranking of every dataset's changes. When the lake changes, a refresh
// makes again, in one transaction, the units made so far and no others.
//
// The units, by key:
//
//   - base: with a snapshot, its raw rows (lake.batch_resources) and, with
//     raw speed files beside it, those files (lake.fresh_resources) and the
//     snapshot's rows with their positions (lake.pos_resources);
//   - rank:<Type>: the ranking of the resources of that type changed
//     beside the snapshot (lake.changed__<type>, stale__<type>,
//     winners__<type>), read by the typed views of that type; rank: (no
//     type) ranks every type at once (lake.changed, stale_resources,
//     winners), for the raw views and a typed view of unknown type. Once
//     rank: is made, a type's ranking is a view of it;
//   - raw: resources_all, resources_latest, resources;
//   - view:<v>: the typed view v and its history v_all;
//   - resource:<Type>: the JSON view of a type without a typed view;
//   - mart:<m>: a mart of the snapshot.
//
// Ranking by type ranks the same rows: lake.LatestSQL orders the versions
// of one (resource_type, id), so the rows of one type rank alike alone or
// among all.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"fhirlake/lake"
)

// unit is a part of the catalog made at once: the views it publishes, the
// units it reads, and how it is made.
type unit struct {
	key    string
	tables []Table
	needs  []string
	make   func(ctx context.Context, b *catalogBuild) error
}

// catalogUnits are the units of one plan.
type catalogUnits struct {
	// order is the order of a full build (each unit's needs are made
	// before it, whatever the order).
	order  []*unit
	byKey  map[string]*unit
	byName map[string]string // view → unit key
}

func (c *catalogUnits) add(u *unit) {
	c.order = append(c.order, u)
	c.byKey[u.key] = u
	for _, t := range u.tables {
		c.byName[t.Name] = u.key
	}
}

func (c *catalogUnits) has(name string) bool {
	_, ok := c.byName[name]
	return ok
}

// tables are the views of every unit, sorted by name.
func (c *catalogUnits) tables() []Table {
	var out []Table
	for _, u := range c.order {
		out = append(out, u.tables...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// keys are every unit's key, in the order of a full build.
func (c *catalogUnits) keys() []string {
	out := make([]string, len(c.order))
	for i, u := range c.order {
		out[i] = u.key
	}
	return out
}

func rankKey(rt string) string { return "rank:" + rt }

// list plans the units of p. It reads one row of each view dataset the
// session has not seen, for its resource type, and nothing else.
func (p *viewPlan) list(ctx context.Context) (*catalogUnits, error) {
	c := &catalogUnits{byKey: map[string]*unit{}, byName: map[string]string{}}
	m := p.scan.manifest
	ranked := m != nil && len(p.fresh["resources"]) > 0
	if m != nil {
		c.add(&unit{key: "base", make: func(ctx context.Context, b *catalogBuild) error { return b.baseObjects(ctx) }})
	}
	rank := func(rt string) string {
		k := rankKey(rt)
		if _, ok := c.byKey[k]; !ok {
			c.add(&unit{key: k, needs: []string{"base"}, make: func(ctx context.Context, b *catalogBuild) error { return b.rank(ctx, rt) }})
		}
		return k
	}
	src := p.source()
	raw := &unit{key: "raw", make: func(ctx context.Context, b *catalogBuild) error { return b.rawViews(ctx) },
		tables: []Table{rawTable("resources_all", src), rawTable("resources_latest", src), rawTable("resources", src)}}
	if m != nil {
		raw.needs = append(raw.needs, "base")
	}
	if ranked {
		raw.needs = append(raw.needs, rank(""))
	}
	c.add(raw)

	typed := map[string]bool{}
	for _, v := range p.typed {
		rt, err := p.s.datasetType(ctx, p.scan, v)
		if err != nil {
			return nil, err
		}
		typed[rt] = true
		c.add(p.typedUnit(v, rt, ranked, rank))
	}
	src = p.source()
	for _, t := range p.types {
		name := ViewName(t)
		if typed[t] || c.has(name) || !validViewName(name) {
			continue
		}
		view := viewDef{Table{Name: name, Kind: "resource", ResourceType: t, Source: src}, resourceSQL(t)}
		c.add(&unit{key: "resource:" + t, tables: []Table{view.Table}, needs: []string{"raw"}, make: publishing(view)})
	}
	if m == nil {
		return c, nil
	}
	for _, name := range m.ModelNames() {
		if strings.HasPrefix(name, "int_") || !lake.ValidModelName(name) || c.has(name) || strings.HasPrefix(name, "resources") {
			continue
		}
		from, files, err := p.s.mergedFrom(m, name)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			continue
		}
		mart := viewDef{Table{Name: name, Kind: "mart", Source: "batch"}, "SELECT * FROM " + from}
		c.add(&unit{key: "mart:" + name, tables: []Table{mart.Table}, make: publishing(mart)})
	}
	return c, nil
}

// typedUnit is the unit of view dataset v, of resource type rt: merged
// with the snapshot's state when it holds one (reading the ranking of rt
// when raw speed files are read beside it), else from the speed layer,
// ranked by resources_latest.
func (p *viewPlan) typedUnit(v, rt string, ranked bool, rank func(string) string) *unit {
	view := Table{Name: v, Kind: "view", ResourceType: rt, Source: "speed"}
	hist := Table{Name: v + "_all", Kind: "history", ResourceType: rt, Source: "speed"}
	u := &unit{key: "view:" + v}
	switch {
	case p.batched[v]:
		view.Source, hist.Source = "batch+speed", "batch+speed"
		if ranked {
			u.needs = []string{rank(rt)}
		}
		u.make = func(ctx context.Context, b *catalogBuild) error { return b.batchedView(ctx, view, hist) }
	default:
		if p.scan.manifest != nil {
			view.Source = "batch+speed" // its versions are ranked against the snapshot's
		}
		u.needs = []string{"raw"}
		u.make = func(ctx context.Context, b *catalogBuild) error { return b.speedView(ctx, view, hist) }
	}
	u.tables = []Table{hist, view}
	return u
}

// publishing makes a unit of one view.
func publishing(v viewDef) func(context.Context, *catalogBuild) error {
	return func(ctx context.Context, b *catalogBuild) error { return b.publish(ctx, v) }
}

// makeUnits makes the units keys, each after the units it reads, skipping
// those made already.
func (b *catalogBuild) makeUnits(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := b.makeUnit(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func (b *catalogBuild) makeUnit(ctx context.Context, key string) error {
	if b.made[key] {
		return nil
	}
	u := b.units.byKey[key]
	if u == nil {
		return fmt.Errorf("no unit %q in the catalog", key)
	}
	for _, n := range u.needs {
		if err := b.makeUnit(ctx, n); err != nil {
			return err
		}
	}
	if !b.schema {
		if err := b.exec(ctx, "CREATE SCHEMA IF NOT EXISTS lake"); err != nil {
			return err
		}
		b.schema = true
	}
	if err := u.make(ctx, b); err != nil {
		return err
	}
	b.made[key] = true
	return nil
}

// record takes in what build b made: its units, objects and counts.
func (c *Catalog) record(b *catalogBuild) {
	internal := make(map[string]string, len(c.internal)+len(b.internal))
	for k, v := range c.internal {
		internal[k] = v
	}
	for k, v := range b.internal {
		internal[k] = v
	}
	c.internal, c.made, c.counts = internal, b.made, b.counts
	c.Made = nil
	for _, u := range c.units.order {
		if c.made[u.key] {
			for _, t := range u.tables {
				c.Made = append(c.Made, t.Name)
			}
		}
	}
	sort.Strings(c.Made)
	c.Changed = 0
	if n, ok := c.counts[rankKey("")]; ok {
		c.Changed = n
		return
	}
	for _, n := range c.counts {
		c.Changed += n
	}
}

// madeUnits are the keys of c's units made so far that units has too, in
// units' order: what a rebuild makes again. Nil for a nil catalog.
func (c *Catalog) madeUnits(units *catalogUnits) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, u := range units.order {
		if c.made[u.key] {
			out = append(out, u.key)
		}
	}
	return out
}

// missing are the units of the views names that are not made; names that
// are no view of the catalog are left out.
func (c *Catalog) missing(names []string) []string {
	var out []string
	for _, n := range names {
		if k, ok := c.units.byName[n]; ok && !c.made[k] {
			out = append(out, k)
		}
	}
	return out
}

// ensure makes the views names (with what they read) that are not made
// yet, in one transaction, before a statement that names them runs. One
// build runs at a time per session: a statement that finds the views it
// needs made goes on at once, one that does not waits (until ctx ends) for
// the build in progress and then makes what is still missing, so no view
// is made twice and no statement sees one half made. A file that cannot
// be read is set aside as by Refresh, and the views made again without
// it.
func (s *Session) ensure(ctx context.Context, names []string) error {
	if cat := s.cat.Load(); cat == nil || len(cat.missing(names)) == 0 {
		return nil
	}
	if err := s.mu.LockContext(ctx); err != nil {
		return fmt.Errorf("tenant %s: wait for the views: %w", s.tenant, err)
	}
	defer s.mu.Unlock()
	err := s.makeMissing(ctx, names)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if n, qerr := s.quarantine(ctx, s.cat.Load().plan.scan); qerr != nil || n == 0 {
		return err
	}
	if _, _, rerr := s.refresh(ctx); rerr != nil {
		return rerr
	}
	return s.makeMissing(ctx, names)
}

// makeMissing is one attempt of ensure; s.mu is held.
func (s *Session) makeMissing(ctx context.Context, names []string) error {
	cat := s.cat.Load()
	keys := cat.missing(names)
	if len(keys) == 0 {
		return nil
	}
	b := newBuild(cat.plan, cat.units, cat)
	if err := s.build(ctx, b, keys, nil); err != nil {
		return fmt.Errorf("tenant %s: %w: %w", s.tenant, ErrViewsNotMade, err)
	}
	c := *cat
	c.record(b)
	s.cat.Store(&c)
	return nil
}

// ensureAll makes every view of the catalog.
func (s *Session) ensureAll(ctx context.Context) error {
	cat := s.cat.Load()
	if cat == nil {
		return nil
	}
	names := make([]string, len(cat.Tables))
	for i, t := range cat.Tables {
		names[i] = t.Name
	}
	return s.ensure(ctx, names)
}
