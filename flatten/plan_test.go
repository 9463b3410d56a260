package flatten

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// planBatches appends each resource to the batches of its type's plan
// and, for comparison, to a batch of each view compiled on its own.
type planBatches struct {
	plans map[string][]*Batch
	alone map[string][]*Batch
}

func newPlanBatches(t *testing.T, views []*View) *planBatches {
	t.Helper()
	plans := Plans(views)
	pb := &planBatches{plans: map[string][]*Batch{}, alone: map[string][]*Batch{}}
	mem := memory.NewGoAllocator()
	for _, p := range plans {
		pb.plans[p.Resource()] = p.NewBatches(mem)
	}
	for _, v := range views {
		pb.alone[v.Resource()] = append(pb.alone[v.Resource()], v.NewBatch(mem))
	}
	return pb
}

// add appends r to both and fails when they disagree on its rows.
func (pb *planBatches) add(t *testing.T, what string, r *Resource) {
	t.Helper()
	alone := pb.alone[r.ResourceType()]
	for i, b := range pb.plans[r.ResourceType()] {
		got, gerr := b.Append(r)
		want, werr := alone[i].Append(r)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Fatalf("%s: view %s in its plan: %d rows (%v), alone %d rows (%v)", what, b.View().Name(), got, gerr, want, werr)
		}
	}
}

// check compares the rows of each view in its plan with the view's alone.
func (pb *planBatches) check(t *testing.T) (rows int) {
	t.Helper()
	for typ, batches := range pb.plans {
		for i, b := range batches {
			got, want := b.NewRecordBatch(), pb.alone[typ][i].NewRecordBatch()
			if !array.RecordEqual(got, want) {
				t.Errorf("view %s: in its plan got rows\n%v\nalone\n%v", b.View().Name(), got, want)
			}
			rows += int(got.NumRows())
			got.Release()
			want.Release()
			b.Release()
			pb.alone[typ][i].Release()
		}
	}
	return rows
}

// TestPlanRealData checks that the default views give the same rows in
// their plans as each alone, over the shared sample data.
func TestPlanRealData(t *testing.T) {
	dir := sharedDir(t, "data")
	views, err := DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	pb := newPlanBatches(t, views)
	every := 3
	if raceEnabled || testing.Short() {
		every = 15
	}
	var r Resource
	sampleResources(t, dir, every, func(file string, raw []byte) {
		if r.Parse(raw) == nil {
			pb.add(t, file, &r)
		}
	})
	t.Logf("%d rows agree", pb.check(t))
}

// TestPlanSharesAcrossViews checks that the paths the two Observation
// views read from the resource are evaluated once for both: the plan
// caches more results than the two views alone, and its rows are theirs.
func TestPlanSharesAcrossViews(t *testing.T) {
	views, err := DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	var obs []*View
	alone := 0
	for _, v := range views {
		if v.Resource() == "Observation" {
			obs = append(obs, v)
			alone += v.shared
		}
	}
	plans := Plans(obs)
	if len(plans) != 1 || len(plans[0].Views()) != 2 {
		t.Fatalf("got %d plans, want one of the two Observation views", len(plans))
	}
	// getResourceKey(), subject.getReferenceKey(Patient).first(),
	// encounter.getReferenceKey(Encounter).first(), the effective time
	// and code.coding.first() are read by both views.
	if got := plans[0].Views()[0].shared; got < alone+5 {
		t.Errorf("got %d cached results in the plan, want at least %d (the views alone) + 5", got, alone)
	}
	pb := newPlanBatches(t, obs)
	for _, doc := range []string{observationBP, observationGlucose} {
		r, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		pb.add(t, r.ID(), r)
	}
	if rows := pb.check(t); rows != 4 {
		t.Errorf("got %d rows, want 4 (two observations, two components)", rows)
	}
}

// TestPlanResourceParsedAgain checks that a Resource parsed again in
// place is evaluated anew by a plan's batches, not read from the results
// cached for its previous content.
func TestPlanResourceParsedAgain(t *testing.T) {
	views, err := DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	plans := Plans(views)
	var batches []*Batch
	for _, p := range plans {
		if p.Resource() == "Observation" {
			batches = p.NewBatches(memory.NewGoAllocator())
		}
	}
	var r Resource
	for _, doc := range []string{observationBP, observationGlucose} {
		if err := r.Parse([]byte(doc)); err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			if _, err := b.Append(&r); err != nil {
				t.Fatal(err)
			}
		}
	}
	rec := batches[0].NewRecordBatch()
	defer rec.Release()
	want := [][2]string{{"bp", "p1"}, {"glucose", "p2"}}
	for i, w := range want {
		id, patient := stringColumn(t, rec, "id").Value(i), stringColumn(t, rec, "patient_id").Value(i)
		if id != w[0] || patient != w[1] {
			t.Errorf("row %d: got id %s, patient_id %s; want %s, %s", i, id, patient, w[0], w[1])
		}
	}
}

func stringColumn(t *testing.T, rec arrow.RecordBatch, name string) *array.String {
	t.Helper()
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		t.Fatalf("no column %s", name)
	}
	return rec.Column(idx[0]).(*array.String)
}

const observationBP = `{"resourceType": "Observation", "id": "bp", "status": "final",
	"subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
	"effectiveDateTime": "2024-03-01T10:00:00Z",
	"code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}]},
	"component": [
		{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
		{"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}
	]}`

const observationGlucose = `{"resourceType": "Observation", "id": "glucose", "status": "final",
	"subject": {"reference": "Patient/p2"}, "encounter": {"reference": "Encounter/e2"},
	"effectiveDateTime": "2024-03-02T08:00:00Z",
	"code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
	"valueQuantity": {"value": 5.4, "unit": "mmol/L"}}`
