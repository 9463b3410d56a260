package rows

import (
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/sink"
)

// Buffer accumulates changes for any number of tenants: the raw-resource
// rows and the rows of every view of each resource's type, each resource
// parsed once. It belongs to one goroutine.
type Buffer struct {
	mem memory.Allocator
	// plans holds the views of each resource type compiled together, so
	// that each resource is walked once for all of them.
	plans   map[string]*flatten.Plan
	tenants map[string]*tenantBuffer
	res     flatten.Resource // reused: parsing allocates nothing once warm
	rows    int
	newest  map[string]time.Time
	// ViewError is called when a view cannot evaluate a resource; the raw
	// row is kept regardless. view is "parse" when the resource did not parse.
	onViewError func(tenant, view string, ev *notification.Event, at Coordinates, err error)
}

// NewBuffer returns an empty buffer writing the given views, compiled
// together per resource type (flatten.Plans).
func NewBuffer(mem memory.Allocator, views []*flatten.View, onViewError func(tenant, view string, ev *notification.Event, at Coordinates, err error)) *Buffer {
	return NewPlanBuffer(mem, flatten.Plans(views), onViewError)
}

// NewPlanBuffer returns an empty buffer writing the views of plans. A
// caller that makes many buffers of the same views compiles their plans
// once (a few milliseconds for the default views).
func NewPlanBuffer(mem memory.Allocator, plans []*flatten.Plan, onViewError func(tenant, view string, ev *notification.Event, at Coordinates, err error)) *Buffer {
	byType := make(map[string]*flatten.Plan, len(plans))
	for _, p := range plans {
		byType[p.Resource()] = p
	}
	if onViewError == nil {
		onViewError = func(string, string, *notification.Event, Coordinates, error) {}
	}
	return &Buffer{mem: mem, plans: byType, tenants: map[string]*tenantBuffer{}, newest: map[string]time.Time{}, onViewError: onViewError}
}

// Add buffers one change of tenant's.
func (b *Buffer) Add(tenant string, ev *notification.Event, at Coordinates, ingest time.Time) {
	t := b.tenants[tenant]
	if t == nil {
		t = &tenantBuffer{raw: newRawBuilder(b.mem), views: map[string][]*viewBuilder{}}
		b.tenants[tenant] = t
	}
	t.raw.append(tenant, ev, at, ingest)
	b.rows++
	if ev.LastUpdated.After(b.newest[tenant]) {
		b.newest[tenant] = ev.LastUpdated
	}
	if ev.Operation != notification.OpUpsert {
		return
	}
	plan := b.plans[ev.ResourceType]
	if plan == nil {
		return
	}
	// A Decoder has parsed the resource already (one tokenization per
	// resource); otherwise it is parsed here, once for all its views.
	res := ev.Parsed
	if res == nil {
		if err := b.res.Parse(ev.Resource); err != nil {
			b.onViewError(tenant, "parse", ev, at, err)
			return
		}
		res = &b.res
	}
	vbs := t.views[plan.Resource()]
	if vbs == nil {
		vbs = newViewBuilders(b.mem, plan)
		t.views[plan.Resource()] = vbs
	}
	for _, vb := range vbs {
		if _, err := vb.append(tenant, ev, res, at, ingest); err != nil {
			b.onViewError(tenant, vb.view.Name(), ev, at, err)
		}
	}
}

// Rows is the number of raw rows buffered.
func (b *Buffer) Rows() int { return b.rows }

// Newest returns, per tenant, the newest lastUpdated buffered.
func (b *Buffer) Newest() map[string]time.Time { return b.newest }

// Files hands the buffered rows over as one file per tenant and dataset,
// keyed by key(view), and empties the buffer. The caller releases the
// records.
func (b *Buffer) Files(key func(view string) string) ([]sink.File, error) {
	var files []sink.File
	add := func(tenant, view string, recs ...arrow.RecordBatch) {
		f := sink.File{Tenant: tenant, View: view, Key: key(view), Records: recs}
		if f.Rows() == 0 {
			f.Release()
			return
		}
		files = append(files, f)
	}
	for tenant, t := range b.tenants {
		if t.raw.rows > 0 {
			add(tenant, lake.RawDataset, t.raw.records()...)
		}
		for _, vbs := range t.views {
			for _, vb := range vbs {
				if vb.rows() == 0 {
					continue
				}
				rec, err := vb.record()
				if err != nil {
					for _, f := range files {
						f.Release()
					}
					return nil, fmt.Errorf("tenant %s: %w", tenant, err)
				}
				add(tenant, vb.view.Name(), rec)
			}
		}
	}
	b.rows = 0
	clear(b.newest)
	return files, nil
}

// Release frees the builders.
func (b *Buffer) Release() {
	for _, t := range b.tenants {
		t.release()
	}
	clear(b.tenants)
	b.rows = 0
	clear(b.newest)
}

// tenantBuffer holds one tenant's pending rows: the raw dataset and the
// views of every resource type met, by type in their plan's order.
type tenantBuffer struct {
	raw   *rawBuilder
	views map[string][]*viewBuilder
}

func (t *tenantBuffer) release() {
	t.raw.release()
	for _, vbs := range t.views {
		for _, vb := range vbs {
			vb.release()
		}
	}
}
