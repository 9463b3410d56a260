package lake

import (
	"testing"
	"time"
)

func TestErasures(t *testing.T) {
	e := &Erasure{Version: ErasureVersion, Tenant: "acme", Patient: PatientHash("p1"),
		Keys:      []string{ResourceKeyHash("Patient", "p1"), ResourceKeyHash("Observation", "o1")},
		Positions: []Position{{"fhir", 0, 100}, {"fhir", 1, 50}}}
	s := NewErasures([]*Erasure{e})
	obs := func(subject string) []byte { return []byte(`{"subject":{"reference":"Patient/` + subject + `"}}`) }
	for _, tc := range []struct {
		name     string
		typ, id  string
		topic    string
		part     int32
		offset   int64
		resource []byte
		want     bool
	}{
		{"erased key before the position", "Observation", "o1", "fhir", 0, 99, nil, true},
		{"erased key at the position: a new change", "Observation", "o1", "fhir", 0, 100, nil, false},
		{"erased key after the position", "Observation", "o1", "fhir", 1, 60, nil, false},
		{"a partition the record does not name", "Observation", "o1", "fhir", 2, 0, nil, false},
		{"another topic", "Observation", "o1", "other", 0, 1, nil, false},
		{"the patient itself, by its id", "Patient", "p1", "fhir", 1, 10, nil, true},
		{"an unknown resource of the patient, by its JSON", "Observation", "o2", "fhir", 0, 5, obs("p1"), true},
		{"the same after the position", "Observation", "o2", "fhir", 0, 100, obs("p1"), false},
		{"another patient's resource", "Observation", "o3", "fhir", 0, 5, obs("p2"), false},
		{"another patient", "Patient", "p2", "fhir", 0, 5, []byte(`{"id":"p2"}`), false},
		{"a delete of an unknown resource", "Observation", "o4", "fhir", 0, 5, nil, false},
		{"JSON that does not parse", "Observation", "o5", "fhir", 0, 5, []byte(`{`), false},
	} {
		if got := s.Erased(tc.typ, tc.id, tc.topic, tc.part, tc.offset, tc.resource); got != tc.want {
			t.Errorf("%s: Erased = %v, want %v", tc.name, got, tc.want)
		}
	}
	var none *Erasures
	if none.Erased("Patient", "p1", "fhir", 0, 0, nil) {
		t.Error("nil Erasures erased a change")
	}
}

func TestErasureMergeEncode(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &Erasure{Version: ErasureVersion, Tenant: "acme", Patient: PatientHash("p1"), Requested: now, Updated: now,
		Keys: []string{ResourceKeyHash("Patient", "p1")}, Positions: []Position{{"fhir", 0, 10}, {"fhir", 1, 7}}}
	e.Merge([]string{ResourceKeyHash("Observation", "o1"), ResourceKeyHash("Patient", "p1")}, []Position{{"fhir", 0, 5}, {"fhir", 1, 9}, {"b", 0, 1}})
	if len(e.Keys) != 2 {
		t.Errorf("keys %v, want 2", e.Keys)
	}
	want := []Position{{"b", 0, 1}, {"fhir", 0, 10}, {"fhir", 1, 9}}
	if len(e.Positions) != len(want) {
		t.Fatalf("positions %v, want %v", e.Positions, want)
	}
	for i := range want {
		if e.Positions[i] != want[i] {
			t.Errorf("positions %v, want %v", e.Positions, want)
		}
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeErasure(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Patient != e.Patient || len(back.Keys) != 2 || !back.Requested.Equal(now) || !back.Completed.IsZero() {
		t.Errorf("round trip: %+v", back)
	}
	for _, bad := range []string{
		`{"version":2,"patient_sha256":"` + e.Patient + `"}`,
		`{"version":1,"patient_sha256":"p1"}`,
		`{"version":1,"patient_sha256":"` + e.Patient + `","keys":["x"]}`,
		`{"version":1,"patient_sha256":"` + e.Patient + `","positions":[{"topic":"","partition":0,"before":1}]}`,
		`{"version":1,"patient_sha256":"` + e.Patient + `","positions":[{"topic":"t","partition":0,"before":-1}]}`,
	} {
		if _, err := DecodeErasure([]byte(bad)); err == nil {
			t.Errorf("DecodeErasure(%s): no error", bad)
		}
	}
	if !ParseErasureKey(ErasureKey(e.Patient)) || ParseErasureKey("_erasure/x.json") || ParseErasureKey(ErasurePrefix+e.Patient) {
		t.Error("ParseErasureKey")
	}
}
