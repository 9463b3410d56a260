package synth

// The plan of a patient is its structure: which resources exist, how many
// versions each gets and whether it is deleted. It depends only on the seed,
// the tenant and the patient index, so Total and Expected can replay it
// without building or encoding any resource.

type rtype uint8

const (
	typePatient rtype = iota
	typeEncounter
	typeObservation
	typeCondition
	typeMedicationRequest
)

var typeNames = [...]string{"Patient", "Encounter", "Observation", "Condition", "MedicationRequest"}

func (t rtype) String() string { return typeNames[t] }

// deletable reports whether resources of this type may be deleted: nothing
// references them, so a server with referential integrity would allow it.
func (t rtype) deletable() bool {
	return t == typeObservation || t == typeCondition || t == typeMedicationRequest
}

// item is one planned resource.
type item struct {
	typ rtype
	// enc is the index in the plan of the encounter the resource belongs to;
	// -1 for the patient and for encounters.
	enc int
	// kind indexes the catalog of the type (encounterTypes,
	// observationKinds, conditionCodes, medications).
	kind    int
	updates int // later versions: 0, 1 or 2
	deleted bool
}

// entries is the number of notification events the item produces.
func (it item) entries() int {
	n := 1 + it.updates
	if it.deleted {
		n++
	}
	return n
}

// finalVersion is the versionId of the resource's last event; a delete is a
// version of its own, one above the last upsert.
func (it item) finalVersion() int { return it.entries() }

type planner struct {
	seed         uint64
	update, drop float64
	r            rng
}

func newPlanner(o Options) planner {
	return planner{seed: uint64(o.Seed), update: o.UpdateRatio, drop: o.DeleteRatio}
}

// plan appends the items of one patient to items[:0] and returns it. Items
// are in creation order: the patient, then per encounter the encounter and
// what was recorded during it.
func (p *planner) plan(items []item, tenantHash uint64, patient int) []item {
	p.r = rng{s: mix64(p.seed ^ mix64(nsPlan^mix64(tenantHash^mix64(uint64(patient)))))}
	r := &p.r
	items = append(items[:0], p.item(typePatient, -1, 0))
	encounters := r.between(1, 5)
	for e := range encounters {
		enc := len(items)
		items = append(items, p.item(typeEncounter, -1, r.intn(len(encounterTypes))))
		for v := range numVitals {
			// The first visit records every vital sign; later ones most.
			if e == 0 || r.intn(10) < 7 {
				items = append(items, p.item(typeObservation, enc, v))
			}
		}
		labs := r.intn(3)
		first := r.intn(len(observationKinds) - numVitals)
		for l := range labs {
			kind := numVitals + (first+l)%(len(observationKinds)-numVitals)
			items = append(items, p.item(typeObservation, enc, kind))
		}
		if r.intn(3) == 0 {
			items = append(items, p.item(typeCondition, enc, r.intn(len(conditionCodes))))
		}
		if r.intn(3) == 0 {
			items = append(items, p.item(typeMedicationRequest, enc, r.intn(len(medications))))
		}
	}
	return items
}

func (p *planner) item(t rtype, enc, kind int) item {
	it := item{typ: t, enc: enc, kind: kind}
	// All draws happen for every item, whatever the outcome, so that one
	// ratio does not shift the data chosen by the other.
	u, d, n := p.r.float(), p.r.float(), p.r.next()
	if u < p.update {
		it.updates = 1 + int(n&1)
	}
	it.deleted = t.deletable() && d < p.drop
	return it
}

// resourceID is the id of the local-th resource of a patient of a tenant.
func resourceID(seed, tenantHash uint64, patient, local int) string {
	return deriveUUID(seed, nsResource, tenantHash, uint64(patient), uint64(local))
}
