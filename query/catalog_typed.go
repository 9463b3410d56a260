package query

// The typed views (and their histories), one per SQL-on-FHIR view
// dataset, from the speed layer alone or merged with the snapshot's state
// model. The JSON view per resource type without a typed view and the
// snapshot's marts are single statements, in catalog_units.go.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// speedView defines the views of dataset v, of resource type rt, read
// from the speed layer: every row stored (v_all) and the rows of the
// latest version of each resource, by resources_latest.
func (b *catalogBuild) speedView(ctx context.Context, view, hist Table) error {
	return b.publish(ctx,
		viewDef{hist, b.speedAll(view.Name)},
		viewDef{view, speedLatestSQL(view.Name, view.ResourceType)})
}

// batchedView defines a view whose state the snapshot holds: the
// snapshot's rows of the resources not changed since, and, for the changed
// ones, the rows of whichever version ranks first now.
func (b *catalogBuild) batchedView(ctx context.Context, view, hist Table) error {
	v := view.Name
	from, files, err := b.plan.s.stateFrom(b.plan.scan.manifest, batchStateModel(v))
	if err != nil {
		return err
	}
	cols, err := b.batchColumns(ctx, v, files)
	if err != nil {
		return err
	}
	fresh := noRowsSQL(lakeName("batch_" + v))
	if f := b.plan.fresh[v]; len(f) > 0 {
		fresh = speedRowsSQL(readSpeed(f))
	}
	if err := b.create(ctx, lakeView("batch_"+v, selectSQL(cols, from)), lakeView("fresh_"+v, fresh)); err != nil {
		return err
	}
	if err := b.publish(ctx, viewDef{hist, unionSQL(lakeName("batch_"+v), lakeName("fresh_"+v))}); err != nil {
		return err
	}
	if !b.changedType(view.ResourceType) {
		// Nothing of its type changed since the snapshot (the view's own
		// speed files only add their columns).
		return b.publish(ctx, viewDef{view, snapshotOnlySQL(v)})
	}
	return b.batchedMerge(ctx, view, cols, from)
}

// batchedMerge defines a batched view as the snapshot's rows by position
// but those no longer the latest (lake.drop_<v>), plus the latest rows of
// the view's speed files (lake.delta_<v>), by the ranking of the view's
// resource type. cols and from select the snapshot's rows under the speed
// layer's names.
func (b *catalogBuild) batchedMerge(ctx context.Context, view Table, cols, from string) error {
	v, rt := view.Name, view.ResourceType
	delta := len(b.plan.fresh[v]) > 0
	objs := []lakeObject{lakeView("pos_"+v, positionsSQL(cols, from))}
	if delta {
		objs = append(objs, lakeTable("delta_"+v, viewDeltaSQL(v, rt)))
	}
	objs = append(objs, lakeTable("drop_"+v, viewDropSQL(v, rt, delta)))
	if err := b.create(ctx, objs...); err != nil {
		return err
	}
	latest, err := b.merged(ctx, v)
	if err != nil {
		return err
	}
	return b.publish(ctx, viewDef{view, latest})
}

// batchColumns is the select list of dataset v's state model (files) under
// the speed layer's names, types and order (batchSelect).
func (b *catalogBuild) batchColumns(ctx context.Context, v string, files []string) (string, error) {
	var fresh []column
	if f := b.plan.fresh[v]; len(f) > 0 {
		var err error
		if fresh, err = b.describe(ctx, speedRowsSQL(readSpeed(f))); err != nil {
			return "", err
		}
	}
	batch, err := b.describe(ctx, "SELECT * FROM "+readFiles(files))
	if err != nil {
		return "", err
	}
	return strings.Join(batchSelect(v, batch, fresh), ", "), nil
}

type column struct{ name, typ string }

// describe returns the columns of a query, in order (never nil).
func (b *catalogBuild) describe(ctx context.Context, q string) ([]column, error) {
	rows, err := b.conn.QueryContext(ctx, "SELECT column_name, column_type FROM (DESCRIBE "+q+")")
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	defer rows.Close()
	cols := []column{}
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// datasetType is the resource type of a view dataset's rows, read from one
// of its files (or the snapshot's state) once per session; "" when unknown.
func (s *Session) datasetType(ctx context.Context, scan *lakeScan, v string) (string, error) {
	if t, ok := s.datasetTypes[v]; ok {
		return t, nil
	}
	var src string
	if files := scan.datasets[v]; len(files) > 0 {
		src = fmt.Sprintf("SELECT _resource_type AS t FROM read_parquet('%s') LIMIT 1", sqlString(files[0].path))
	} else if m := scan.manifest; m != nil {
		_, files, err := s.stateFrom(m, batchStateModel(v))
		if err != nil || len(files) == 0 {
			return "", err
		}
		src = fmt.Sprintf("SELECT resource_type AS t FROM read_parquet('%s') LIMIT 1", sqlString(files[0]))
	} else {
		return "", nil
	}
	var t sql.NullString
	if err := s.db.QueryRowContext(ctx, src).Scan(&t); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("view %s: resource type: %w", v, err)
	}
	if !validType(t.String) {
		return "", nil
	}
	s.datasetTypes[v] = t.String
	return t.String, nil
}
