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
	"sort"
)

// catalogBuild is one build of a session's views.
type catalogBuild struct {
	plan *viewPlan
	// conn is the connection of the build's transaction.
	conn *sql.Conn
	// tables are the views made for queries; internal the helper views
	// and tables of schema lake: name → VIEW or TABLE.
	tables   []Table
	internal map[string]string
	// changed counts the resources changed beside the snapshot, and
	// changedTypes by resource type.
	changed      int64
	changedTypes map[string]int64
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

// createAll (re)creates every view: the raw dataset's, the typed views, a
// JSON view per resource type without one, and the snapshot's marts.
//
// With a batch snapshot, the resources changed in the speed files read
// beside it are ranked once per build, not at each query: lake.changed
// holds their keys and lake.winners the coordinates of the latest version
// of each. For each dataset <x>, lake.drop_<x> lists the snapshot's rows
// that are no longer the latest by their position in its files
// (file_index, file_row_number), and lake.delta_<x> holds the rows of the
// latest versions from the speed files, deduplicated. A view is then the
// snapshot minus those positions (an anti join on one integer, no column
// read for it) plus the delta, so a query scans the snapshot's columns it
// uses and nothing is ranked. The raw dataset's delta stays a view over
// the speed files, which hold the resources' JSON. The build runs again
// whenever the snapshot or the list of speed files changes (Refresh), in
// one transaction.
func (b *catalogBuild) createAll(ctx context.Context) error {
	if err := b.exec(ctx, "CREATE SCHEMA IF NOT EXISTS lake"); err != nil {
		return err
	}
	if err := b.rawViews(ctx); err != nil {
		return err
	}
	typed, err := b.typedViews(ctx)
	if err != nil {
		return err
	}
	if err := b.resourceViews(ctx, typed); err != nil {
		return err
	}
	if err := b.martViews(ctx); err != nil {
		return err
	}
	sort.Slice(b.tables, func(i, j int) bool { return b.tables[i].Name < b.tables[j].Name })
	return nil
}

// rawViews defines the raw dataset's views: every change (resources_all),
// the latest version of each resource (resources_latest), and the live
// ones (resources).
func (b *catalogBuild) rawViews(ctx context.Context) error {
	var err error
	if b.plan.scan.manifest == nil {
		err = b.rawSpeedViews(ctx)
	} else {
		err = b.rawBatchViews(ctx)
	}
	if err != nil {
		return err
	}
	return b.publish(ctx, b.rawView("resources", liveSQL))
}

func (b *catalogBuild) rawView(name, q string) viewDef {
	return viewDef{Table{Name: name, Kind: "resources", Source: b.plan.source()}, q}
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

// rawBatchViews read the snapshot's raw state model, merged with the raw
// speed files beside it when there are some.
func (b *catalogBuild) rawBatchViews(ctx context.Context) error {
	files, err := b.plan.s.modelFiles(b.plan.scan.manifest, batchRawModel)
	if err != nil {
		return err
	}
	from := readFiles(files)
	if err := b.create(ctx, lakeView("batch_resources", selectSQL(batchRawColumns, from))); err != nil {
		return err
	}
	if len(b.plan.fresh["resources"]) == 0 {
		const batch = "SELECT * FROM lake.batch_resources"
		return b.publish(ctx, b.rawView("resources_all", batch), b.rawView("resources_latest", batch))
	}
	return b.rawMerge(ctx, from)
}

// rawMerge ranks the resources changed in the raw speed files beside the
// snapshot (lake.changed, lake.winners), and defines the raw views as the
// snapshot's rows but the superseded ones (lake.drop_resources) plus the
// newer versions (lake.delta_resources). from reads the snapshot's raw
// state model.
func (b *catalogBuild) rawMerge(ctx context.Context, from string) error {
	err := b.create(ctx,
		lakeView("fresh_resources", speedRowsSQL(readSpeed(b.plan.fresh["resources"]))),
		lakeView("pos_resources", positionsSQL(batchRawColumns, from)),
		lakeTable("changed", changedSQL),
		lakeTable("stale_resources", staleResourcesSQL()),
		lakeTable("winners", winnersSQL()),
		lakeTable("drop_resources", dropResourcesSQL()),
		lakeView("delta_resources", deltaResourcesSQL),
	)
	if err != nil {
		return err
	}
	if err := b.countChanged(ctx); err != nil {
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

// countChanged counts the rows of lake.changed by resource type.
func (b *catalogBuild) countChanged(ctx context.Context) error {
	b.changedTypes = map[string]int64{}
	rows, err := b.conn.QueryContext(ctx, "SELECT resource_type, count(*) FROM lake.changed GROUP BY ALL")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t sql.NullString
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return err
		}
		b.changedTypes[t.String] += n
		b.changed += n
	}
	return rows.Err()
}
