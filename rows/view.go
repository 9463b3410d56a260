package rows

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/notification"
)

// CheckViews refuses views that would clash with the raw dataset or the
// lineage columns.
func CheckViews(views []*flatten.View) error {
	for _, v := range views {
		if v.Name() == lake.RawDataset {
			return fmt.Errorf("view %s: the name is reserved for the raw-resource dataset", v.Name())
		}
		for _, f := range v.Schema().Fields() {
			if strings.HasPrefix(f.Name, "_") {
				return fmt.Errorf("view %s column %s: names starting with _ are reserved for lineage columns", v.Name(), f.Name)
			}
		}
	}
	return nil
}

// viewBuilder accumulates one view's rows for one tenant.
type viewBuilder struct {
	view    *flatten.View
	batch   *flatten.Batch
	lineage *array.RecordBuilder
	schema  *arrow.Schema
}

// newViewBuilders returns a builder for each view of plan, whose batches
// share the plan's evaluator.
func newViewBuilders(mem memory.Allocator, plan *flatten.Plan) []*viewBuilder {
	batches := plan.NewBatches(mem)
	out := make([]*viewBuilder, len(batches))
	for i, b := range batches {
		v := b.View()
		out[i] = &viewBuilder{view: v, batch: b, lineage: array.NewRecordBuilder(mem, arrow.NewSchema(lake.ViewLineage(), nil)), schema: lake.ViewSchema(v)}
	}
	return out
}

// append evaluates the view over r and adds one lineage row per view row.
func (vb *viewBuilder) append(tenant string, ev *notification.Event, r *flatten.Resource, at Coordinates, ingest time.Time) (int, error) {
	n, err := vb.batch.Append(r)
	if err != nil || n == 0 {
		return 0, err
	}
	f := vb.lineage.Fields()
	for i := 0; i < n; i++ {
		appendIdentity(f[0:5], tenant, ev)
		appendCoordinates(f[5:9], at, ingest)
		f[9].(*array.Int32Builder).Append(int32(i))
	}
	return n, nil
}

func (vb *viewBuilder) rows() int { return vb.batch.Rows() }

// record joins lineage and view columns into one batch and empties both
// builders.
func (vb *viewBuilder) record() (arrow.RecordBatch, error) {
	lin := vb.lineage.NewRecordBatch()
	defer lin.Release()
	cols := vb.batch.NewRecordBatch()
	defer cols.Release()
	if lin.NumRows() != cols.NumRows() {
		return nil, fmt.Errorf("view %s: %d lineage rows for %d view rows", vb.view.Name(), lin.NumRows(), cols.NumRows())
	}
	arrays := append(append([]arrow.Array{}, lin.Columns()...), cols.Columns()...)
	return array.NewRecordBatch(vb.schema, arrays, lin.NumRows()), nil
}

func (vb *viewBuilder) release() {
	vb.batch.Release()
	vb.lineage.Release()
}
