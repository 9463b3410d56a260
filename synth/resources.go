package synth

import "math"

const (
	minute = int64(60_000)
	hour   = 60 * minute
	day    = 24 * hour

	// clockStart is the lastUpdated of the first event: 2025-01-06T08:00:00Z.
	// Clinical dates (encounters, onsets, birth dates) lie before it.
	clockStart = int64(1736150400000)
)

// resource is the content of one synthetic resource. Later versions are
// derived from it and the version number alone, so an update needs no
// randomness and no copy of the previous version.
type resource struct {
	typ       rtype
	kind      int
	updates   int
	deleted   bool
	id        string
	patient   *resource // nil for a Patient
	encounter *resource // nil for a Patient or an Encounter

	version     int   // version being encoded
	scheduled   int   // highest version queued so far
	lastUpdated int64 // Unix ms of the version being encoded

	start, end int64      // encounter period, effective, onset, authoredOn
	values     [2]float64 // observation value, or blood pressure components
	pd         *patientData
}

type patientData struct {
	given, family, gender, birthSex string
	raceText                        string
	races                           []int
	ethnicity                       int
	birth                           int64
	mrn                             int
	mrnSystem                       string
	phone                           int
	house, street, place            int
	height, weight                  float64
}

// typeName is the resource type as written on the wire.
func (r *resource) typeName() string { return r.typ.String() }

// buildPatient creates the content of the planned resources of one patient.
// The resources are allocated together; the returned slice aliases them.
func buildPatient(r *rng, seed uint64, t *tenant, patient int, items []item) []resource {
	res := make([]resource, len(items))
	for i, it := range items {
		x := &res[i]
		*x = resource{
			typ:       it.typ,
			kind:      it.kind,
			updates:   it.updates,
			deleted:   it.deleted,
			id:        resourceID(seed, t.hash, patient, i),
			scheduled: 1,
		}
		if it.typ != typePatient {
			x.patient = &res[0]
		}
		if it.enc >= 0 {
			x.encounter = &res[it.enc]
		}
		fillContent(r, x, t)
	}
	return res
}

// fillContent draws the content of x. Encounters must be filled before the
// resources recorded during them.
func fillContent(r *rng, x *resource, t *tenant) {
	switch x.typ {
	case typePatient:
		x.pd = newPatientData(r, t)
	case typeEncounter:
		// Office hours (08:00–17:45 UTC) of a day one week to two years
		// before the clock starts, so that even a long stay has ended by the
		// time it is reported.
		x.start = clockStart - int64(r.between(7, 730))*day + int64(r.intn(10))*hour + int64(r.intn(4))*15*minute
		switch encounterTypes[x.kind].class.code {
		case "EMER":
			x.end = x.start + int64(r.between(2, 9))*hour
		case "IMP":
			x.end = x.start + int64(r.between(1, 6))*day
		default:
			x.end = x.start + int64(r.between(20, 91))*minute
		}
	case typeObservation:
		x.start = x.encounter.start + int64(r.between(5, 46))*minute
		k := &observationKinds[x.kind]
		pd := x.patient.pd
		switch x.kind {
		case obsHeight:
			x.values[0] = pd.height + r.uniform(-0.5, 0.5)
		case obsWeight:
			x.values[0] = pd.weight + r.uniform(-1.5, 1.5)
		case obsBMI:
			m := pd.height / 100
			x.values[0] = pd.weight / (m * m)
		case obsBloodPressure:
			for i, c := range k.components {
				x.values[i] = r.uniform(c.lo, c.hi)
			}
		default:
			x.values[0] = r.uniform(k.lo, k.hi)
		}
	case typeCondition:
		// The encounter diagnoses what began up to a year before it.
		x.start = x.encounter.start - int64(r.intn(366))*day
	case typeMedicationRequest:
		x.start = x.encounter.start + int64(r.between(10, 60))*minute
	}
}

func newPatientData(r *rng, t *tenant) *patientData {
	pd := &patientData{mrnSystem: t.mrnSystem}
	switch n := r.intn(100); {
	case n < 49:
		pd.gender, pd.birthSex = "female", "F"
		pd.given = givenFemale[r.intn(len(givenFemale))]
	case n < 97:
		pd.gender, pd.birthSex = "male", "M"
		pd.given = givenMale[r.intn(len(givenMale))]
	case n < 99:
		pd.gender, pd.birthSex = "other", "UNK"
		pd.given = givenFemale[r.intn(len(givenFemale))]
	default:
		pd.gender, pd.birthSex = "unknown", "UNK"
		pd.given = givenMale[r.intn(len(givenMale))]
	}
	pd.family = families[r.intn(len(families))]
	// Born between 1940 and 2020.
	pd.birth = int64(r.between(-10957, 18628)) * day
	pd.races = []int{r.intn(len(races))}
	if r.intn(10) == 0 {
		if second := r.intn(len(races)); second != pd.races[0] {
			pd.races = append(pd.races, second)
		}
	}
	pd.raceText = races[pd.races[0]].display
	if len(pd.races) > 1 {
		pd.raceText = "Two or more races"
	}
	pd.ethnicity = 1
	if r.intn(5) == 0 {
		pd.ethnicity = 0
	}
	pd.mrn = r.between(1_000_000, 10_000_000)
	pd.phone = r.intn(100)
	pd.house = r.between(1, 2000)
	pd.street = r.intn(len(streets))
	pd.place = r.intn(len(places))
	pd.height = r.uniform(150, 195)
	// A body mass index between 18 and 38.
	m := pd.height / 100
	pd.weight = r.uniform(18, 38) * m * m
	return pd
}

// appendResource appends the JSON of x at its current version.
func appendResource(b []byte, x *resource) []byte {
	b = append(b, `{"resourceType":"`...)
	b = append(b, x.typeName()...)
	b = append(b, `","id":`...)
	b = appendString(b, x.id)
	b = append(b, `,"meta":{"versionId":`...)
	b = appendIntString(b, int64(x.version))
	b = append(b, `,"lastUpdated":`...)
	b = appendInstant(b, x.lastUpdated)
	b = append(b, '}')
	switch x.typ {
	case typePatient:
		b = appendPatient(b, x)
	case typeEncounter:
		b = appendEncounter(b, x)
	case typeObservation:
		b = appendObservation(b, x)
	case typeCondition:
		b = appendCondition(b, x)
	case typeMedicationRequest:
		b = appendMedicationRequest(b, x)
	}
	return append(b, '}')
}

func appendCoding(b []byte, system string, c coding) []byte {
	b = append(b, `{"system":`...)
	b = appendString(b, system)
	b = append(b, `,"code":`...)
	b = appendString(b, c.code)
	b = append(b, `,"display":`...)
	b = appendString(b, c.display)
	return append(b, '}')
}

// appendConcept appends a CodeableConcept with one coding and its text.
func appendConcept(b []byte, system string, c coding) []byte {
	b = append(b, `{"coding":[`...)
	b = appendCoding(b, system, c)
	b = append(b, `],"text":`...)
	b = appendString(b, c.display)
	return append(b, '}')
}

func appendRef(b []byte, field string, x *resource) []byte {
	b = append(b, `,"`...)
	b = append(b, field...)
	b = append(b, `":{"reference":"`...)
	b = append(b, x.typeName()...)
	b = append(b, '/')
	b = append(b, x.id...)
	return append(b, `"}`...)
}

func appendPatient(b []byte, x *resource) []byte {
	pd := x.pd
	b = append(b, `,"extension":[{"url":"`+extRace+`","extension":[`...)
	for _, i := range pd.races {
		b = append(b, `{"url":"ombCategory","valueCoding":`...)
		b = appendCoding(b, sysOMB, races[i])
		b = append(b, `},`...)
	}
	b = append(b, `{"url":"text","valueString":`...)
	b = appendString(b, pd.raceText)
	b = append(b, `}]},{"url":"`+extEthnicity+`","extension":[{"url":"ombCategory","valueCoding":`...)
	b = appendCoding(b, sysOMB, ethnicities[pd.ethnicity])
	b = append(b, `},{"url":"text","valueString":`...)
	b = appendString(b, ethnicities[pd.ethnicity].display)
	b = append(b, `}]},{"url":"`+extBirthSex+`","valueCode":`...)
	b = appendString(b, pd.birthSex)
	b = append(b, `}],"identifier":[{"use":"usual","type":{"coding":[{"system":"`+sysV2ID+`","code":"MR","display":"Medical Record Number"}],"text":"Medical Record Number"},"system":`...)
	b = appendString(b, pd.mrnSystem)
	b = append(b, `,"value":"MRN`...)
	b = appendPadded(b, pd.mrn, 8)
	b = append(b, `"}],"active":true,"name":[{"use":"official","family":`...)
	b = appendString(b, pd.family)
	b = append(b, `,"given":[`...)
	b = appendString(b, pd.given)
	// Version 2 records a new phone number, version 3 a move.
	phone, house, street, place := pd.phone, pd.house, pd.street, pd.place
	if x.version >= 2 {
		phone = (phone + 37) % 100
	}
	if x.version >= 3 {
		house = house%1999 + 1
		street = (street + 3) % len(streets)
		place = (place + 1) % len(places)
	}
	b = append(b, `]}],"telecom":[{"system":"phone","value":"555-01`...)
	b = appendPadded(b, phone, 2)
	b = append(b, `","use":"home"}],"gender":`...)
	b = appendString(b, pd.gender)
	b = append(b, `,"birthDate":`...)
	b = appendDate(b, pd.birth)
	b = append(b, `,"address":[{"use":"home","line":["`...)
	b = appendPadded(b, house, 1)
	b = append(b, ' ')
	b = append(b, streets[street]...)
	p := places[place]
	b = append(b, `"],"city":`...)
	b = appendString(b, p.city)
	b = append(b, `,"state":`...)
	b = appendString(b, p.state)
	b = append(b, `,"postalCode":`...)
	b = appendString(b, p.zip)
	return append(b, `,"country":"US"}]`...)
}

func appendEncounter(b []byte, x *resource) []byte {
	et := &encounterTypes[x.kind]
	// An encounter that will be updated starts in progress; one that will
	// not is reported when it is over.
	status := "finished"
	if x.updates > 0 {
		status = encounterStatus[x.version-1]
	}
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	b = append(b, `,"class":`...)
	b = appendCoding(b, sysActCode, et.class)
	b = append(b, `,"type":[`...)
	b = appendConcept(b, sysSNOMED, et.coding)
	b = append(b, ']')
	b = appendRef(b, "subject", x.patient)
	b = append(b, `,"period":{"start":`...)
	b = appendDateTime(b, x.start)
	if status == "finished" {
		end := x.end
		if x.version >= 3 {
			end += 15 * minute // a corrected discharge time
		}
		b = append(b, `,"end":`...)
		b = appendDateTime(b, end)
	}
	return append(b, '}')
}

func appendObservation(b []byte, x *resource) []byte {
	k := &observationKinds[x.kind]
	status := "final"
	if x.updates > 0 {
		status = vitalStatus[x.version-1]
		if k.lab {
			status = labStatus[x.version-1]
		}
	}
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	if k.lab {
		b = append(b, `,"category":[{"coding":[{"system":"`+sysObsCategory+`","code":"laboratory","display":"Laboratory"}],"text":"Laboratory"}]`...)
	} else {
		b = append(b, `,"category":[{"coding":[{"system":"`+sysObsCategory+`","code":"vital-signs","display":"Vital Signs"}],"text":"Vital Signs"}]`...)
	}
	b = append(b, `,"code":`...)
	b = appendConcept(b, sysLOINC, k.coding)
	b = appendRef(b, "subject", x.patient)
	b = appendRef(b, "encounter", x.encounter)
	b = append(b, `,"effectiveDateTime":`...)
	b = appendDateTime(b, x.start)
	b = append(b, `,"issued":`...)
	b = appendInstant(b, x.lastUpdated)
	// Each later version corrects the value by 3%.
	scale := 1 + 0.03*float64(x.version-1)
	if len(k.components) > 0 {
		b = append(b, `,"component":[`...)
		for i, c := range k.components {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			b = appendConcept(b, sysLOINC, c.coding)
			b = appendQuantity(b, k, x.values[i]*scale)
			b = append(b, '}')
		}
		return append(b, ']')
	}
	return appendQuantity(b, k, x.values[0]*scale)
}

func appendQuantity(b []byte, k *observationKind, v float64) []byte {
	p := math.Pow10(k.decimals)
	v = math.Round(v*p) / p
	b = append(b, `,"valueQuantity":{"value":`...)
	b = appendDecimal(b, v, k.decimals)
	b = append(b, `,"unit":`...)
	b = appendString(b, k.unit)
	b = append(b, `,"system":"`+sysUCUM+`","code":`...)
	b = appendString(b, k.ucum)
	return append(b, '}')
}

func appendCondition(b []byte, x *resource) []byte {
	// Version 1 of a condition that will be updated is provisional, version
	// 2 confirms it, version 3 resolves it.
	clinical, verification := "active", "confirmed"
	if x.updates > 0 && x.version == 1 {
		verification = "provisional"
	}
	if x.version >= 3 {
		clinical = "resolved"
	}
	b = append(b, `,"clinicalStatus":{"coding":[{"system":"`+sysCondClin+`","code":`...)
	b = appendString(b, clinical)
	b = append(b, `}]},"verificationStatus":{"coding":[{"system":"`+sysCondVer+`","code":`...)
	b = appendString(b, verification)
	b = append(b, `}]},"category":[{"coding":[{"system":"`+sysCondCat+`","code":"encounter-diagnosis","display":"Encounter Diagnosis"}]}],"code":`...)
	b = appendConcept(b, sysSNOMED, conditionCodes[x.kind])
	b = appendRef(b, "subject", x.patient)
	b = appendRef(b, "encounter", x.encounter)
	b = append(b, `,"onsetDateTime":`...)
	b = appendDateTime(b, x.start)
	b = append(b, `,"recordedDate":`...)
	b = appendDateTime(b, x.encounter.start)
	if clinical == "resolved" {
		b = append(b, `,"abatementDateTime":`...)
		b = appendDateTime(b, x.lastUpdated)
	}
	return b
}

func appendMedicationRequest(b []byte, x *resource) []byte {
	m := &medications[x.kind]
	status := "active"
	if x.updates > 0 {
		status = medicationStatus[x.version-1]
	}
	b = append(b, `,"status":`...)
	b = appendString(b, status)
	b = append(b, `,"intent":"order","medicationCodeableConcept":`...)
	b = appendConcept(b, sysRxNorm, m.coding)
	b = appendRef(b, "subject", x.patient)
	b = appendRef(b, "encounter", x.encounter)
	b = append(b, `,"authoredOn":`...)
	b = appendDateTime(b, x.start)
	b = append(b, `,"dosageInstruction":[{"sequence":1,"text":`...)
	b = appendString(b, m.dosage)
	return append(b, `}]`...)
}
