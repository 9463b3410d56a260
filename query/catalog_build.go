package query

// A catalog build runs its statements one at a time on the connection of
// its transaction (a statement may read what an earlier one made), and
// records the views and the objects of schema lake it makes. This file
// holds that machinery and the raw dataset's views.

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// catalogBuild is one build of a session's views: the units it makes, in
// one transaction.
type catalogBuild struct {
	plan  *viewPlan
	units *catalogUnits
	// conn is the connection of the build's transaction.
	conn *sql.Conn
	// tables are the views this build made for queries; internal the
	// helper views and tables of schema lake it made: name → VIEW or TABLE.
	tables   []Table
	internal map[string]string
	// made are the units of the generation made, by earlier builds and
	// this one; counts the resources each ranking found changed (by rank
	// unit).
	made   map[string]bool
	counts map[string]int64
	// schema is set once the build made sure schema lake exists.
	schema bool
	// existing are the objects of schema lake in DuckDB before the build
	// (name → VIEW or TABLE): one that a build makes again as the other
	// kind is dropped first.
	existing map[string]string
}

// newBuild starts a build of p's units; prior, when set, is the catalog
// of the same generation whose units are made already.
func newBuild(p *viewPlan, units *catalogUnits, prior *Catalog) *catalogBuild {
	b := &catalogBuild{plan: p, units: units, internal: map[string]string{}, made: map[string]bool{}, counts: map[string]int64{}}
	if prior != nil {
		for k := range prior.made {
			b.made[k] = true
		}
		for k, n := range prior.counts {
			b.counts[k] = n
		}
	}
	return b
}

// viewDef is a view a query may use, and its query.
type viewDef struct {
	Table
	query string
}

// lakeObject is a helper view or table of schema lake, and its query.
type lakeObject struct{ kind, name, query string }

func lakeView(name, q string) lakeObject  { return lakeObject{"VIEW", name, q} }
func lakeTable(name, q string) lakeObject { return lakeObject{"TABLE", name, q} }

// exec runs one statement of the build.
func (b *catalogBuild) exec(ctx context.Context, q string) error {
	if b.plan.trace != nil {
		b.plan.trace(q)
	}
	if _, err := b.conn.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("%w\n%s", err, q)
	}
	return nil
}

// publish creates views a query may use, in order.
func (b *catalogBuild) publish(ctx context.Context, views ...viewDef) error {
	for _, v := range views {
		if err := b.exec(ctx, createView(v.Name, v.query)); err != nil {
			return err
		}
		b.tables = append(b.tables, v.Table)
	}
	return nil
}

// create makes objects of schema lake, in order.
func (b *catalogBuild) create(ctx context.Context, objs ...lakeObject) error {
	for _, o := range objs {
		if kind, ok := b.existing[o.name]; ok && kind != o.kind {
			if err := b.exec(ctx, dropLakeObject(kind, o.name)); err != nil {
				return err
			}
		}
		if err := b.exec(ctx, createLakeObject(o.kind, o.name, o.query)); err != nil {
			return err
		}
		b.internal[o.name] = o.kind
	}
	return nil
}

// has reports whether the build made a view of that name.
func (b *catalogBuild) has(name string) bool {
	return slices.ContainsFunc(b.tables, func(t Table) bool { return t.Name == name })
}

// The raw dataset's units. With a batch snapshot, the resources changed
// in the speed files read beside it are ranked once per build, not at each
// query (catalog_units.go: the rank units): lake.changed holds their keys
// and lake.winners the coordinates of the latest version of each. For
// each dataset <x>, lake.drop_<x> lists the snapshot's rows that are no
// longer the latest by their position in its files (file_index,
// file_row_number), and lake.delta_<x> holds the rows of the latest
// versions from the speed files, deduplicated. A view is then the snapshot
// minus those positions (an anti join on one integer, no column read for
// it) plus the delta, so a query scans the snapshot's columns it uses and
// nothing is ranked. The raw dataset's delta stays a view over the speed
// files, which hold the resources' JSON.

// baseObjects are what the raw views and the rankings read of a lake with
// a snapshot: the snapshot's raw state model (lake.batch_resources) and,
// when raw speed files are read beside it, those files
// (lake.fresh_resources) and the snapshot's rows with their positions
// (lake.pos_resources).
func (b *catalogBuild) baseObjects(ctx context.Context) error {
	from, _, err := b.plan.s.stateFrom(b.plan.scan.manifest, batchRawModel)
	if err != nil {
		return err
	}
	objs := []lakeObject{lakeView("batch_resources", selectSQL(batchRawColumns, from))}
	if f := b.plan.fresh["resources"]; len(f) > 0 {
		objs = append(objs,
			lakeView("fresh_resources", speedRowsSQL(readSpeed(f))),
			lakeView("pos_resources", positionsSQL(batchRawColumns, from)))
	}
	return b.create(ctx, objs...)
}

// rank ranks the resources of type rt (of every type when rt is "")
// changed in the raw speed files beside the snapshot: their keys, the
// snapshot's rows of them, and the latest version of each (rankName).
// Once every type is ranked, a type's ranking is read from it rather than
// ranked again.
func (b *catalogBuild) rank(ctx context.Context, rt string) error {
	shared := rt != "" && b.made[rankKey("")]
	for _, k := range []struct{ kind, q string }{
		{"changed", changedSQL(rt)},
		{"stale", staleResourcesSQL(rt)},
		{"winners", winnersSQL(rt)},
	} {
		o := lakeTable(rankName(k.kind, rt), k.q)
		if shared {
			o = lakeView(rankName(k.kind, rt), rankViewSQL(k.kind, rt))
		}
		if err := b.create(ctx, o); err != nil {
			return err
		}
	}
	var n int64
	if err := b.conn.QueryRowContext(ctx, "SELECT count(*) FROM "+rankRef("changed", rt)).Scan(&n); err != nil {
		return err
	}
	b.counts[rankKey(rt)] = n
	return nil
}

// changedType reports whether resources of type rt (of any type when rt
// is "") changed in the raw speed files beside the snapshot; the ranking
// of rt is made.
func (b *catalogBuild) changedType(rt string) bool {
	k := rankKey(rt)
	return b.made[k] && (rt == "" || b.counts[k] != 0)
}

// rawViews defines the raw dataset's views: every change (resources_all),
// the latest version of each resource (resources_latest), and the live
// ones (resources).
func (b *catalogBuild) rawViews(ctx context.Context) error {
	var err error
	switch {
	case b.plan.scan.manifest == nil:
		err = b.rawSpeedViews(ctx)
	case len(b.plan.fresh["resources"]) == 0:
		const batch = "SELECT * FROM lake.batch_resources"
		err = b.publish(ctx, b.rawView("resources_all", batch), b.rawView("resources_latest", batch))
	default:
		err = b.rawMerge(ctx)
	}
	if err != nil {
		return err
	}
	return b.publish(ctx, b.rawView("resources", liveSQL))
}

func (b *catalogBuild) rawView(name, q string) viewDef {
	return viewDef{rawTable(name, b.plan.source()), q}
}

func rawTable(name, source string) Table {
	return Table{Name: name, Kind: "resources", Source: source}
}

// rawSpeedViews read the raw speed files through a glob, and rank the
// versions at each query.
func (b *catalogBuild) rawSpeedViews(ctx context.Context) error {
	all := emptyRawSQL()
	if len(b.plan.scan.datasets["resources"]) > 0 {
		all = b.speedAll("resources")
	}
	return b.publish(ctx, b.rawView("resources_all", all), b.rawView("resources_latest", rankedRawSQL()))
}

// speedAll reads every speed file of dataset ds: through a glob, which
// finds new files at each query, unless a file of ds is set aside.
func (b *catalogBuild) speedAll(ds string) string {
	if b.plan.s.hasUnreadable(ds) {
		return speedRowsSQL(readSpeed(b.plan.scan.datasets[ds]))
	}
	return speedRowsSQL(speedGlob(b.plan.s.src.base(), ds))
}

// rawMerge defines the raw views as the snapshot's rows but the
// superseded ones (lake.drop_resources) plus the newer versions
// (lake.delta_resources), by the ranking of every type.
func (b *catalogBuild) rawMerge(ctx context.Context) error {
	err := b.create(ctx,
		lakeTable("drop_resources", dropResourcesSQL()),
		lakeView("delta_resources", deltaResourcesSQL),
	)
	if err != nil {
		return err
	}
	if err := b.publish(ctx, b.rawView("resources_all", unionSQL("lake.batch_resources", "lake.fresh_resources"))); err != nil {
		return err
	}
	latest, err := b.merged(ctx, "resources")
	if err != nil {
		return err
	}
	return b.publish(ctx, b.rawView("resources_latest", latest))
}

// merged is a dataset's latest rows beside the snapshot (mergeSQL), read
// without the anti join when the snapshot has no row to drop.
func (b *catalogBuild) merged(ctx context.Context, x string) (string, error) {
	var dropped int64
	if err := b.conn.QueryRowContext(ctx, "SELECT count(*) FROM "+lakeName("drop_"+x)).Scan(&dropped); err != nil {
		return "", err
	}
	return mergeSQL(x, dropped > 0, len(b.plan.fresh[x]) > 0), nil
}
