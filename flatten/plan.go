package flatten

import (
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Plan is the views of one resource type compiled together, so that a
// resource is walked once for all of them: every expression whose focus
// is the resource (a where, the columns of the selects that iterate
// nothing, the path a forEach iterates) is compared with the others of
// every view of the plan, and each path they begin with in common
// (meta, subject.getReferenceKey(Patient), code.coding.first(), a whole
// column such as getResourceKey()) is evaluated once per resource and
// then read from the evaluator's cache by each view.
//
// The views of a Plan have the names, schemas and rows of the views it
// was made from. A Plan is immutable and safe for concurrent use; its
// batches (NewBatches) are not.
type Plan struct {
	resource string
	views    []*View
}

// Plans compiles views again in one Plan per resource type, in the order
// in which each type first appears; the views keep their order within a
// plan. Views that compiled on their own compile together; should they
// not, each becomes a plan of its own, as compiled.
func Plans(views []*View) []*Plan {
	var (
		order  []string
		byType = map[string][]*View{}
	)
	for _, v := range views {
		if _, ok := byType[v.resource]; !ok {
			order = append(order, v.resource)
		}
		byType[v.resource] = append(byType[v.resource], v)
	}
	plans := make([]*Plan, 0, len(order))
	for _, typ := range order {
		alone := byType[typ]
		defs := make([][]byte, len(alone))
		for i, v := range alone {
			defs[i] = v.def
		}
		vs, err := compileViews(defs, true)
		if err != nil {
			for _, v := range alone {
				plans = append(plans, &Plan{resource: typ, views: []*View{v}})
			}
			continue
		}
		plans = append(plans, &Plan{resource: typ, views: vs})
	}
	return plans
}

// Resource returns the resource type of the plan's views.
func (p *Plan) Resource() string { return p.resource }

// Views returns the plan's views, in the order they were given.
func (p *Plan) Views() []*View { return p.views }

// NewBatches returns an empty batch of each view of the plan, in the order
// of Views. The batches share one evaluator: append a resource to each of
// them in turn, and the paths they have in common are evaluated by the
// first. They belong to one goroutine.
func (p *Plan) NewBatches(mem memory.Allocator) []*Batch {
	v0 := p.views[0]
	ev := newEvaluator(v0.slots, v0.shared)
	out := make([]*Batch, len(p.views))
	for i, v := range p.views {
		out[i] = v.newBatch(mem, ev)
	}
	return out
}
