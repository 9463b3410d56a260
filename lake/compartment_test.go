package lake

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"fhirlake/internal/testenv"
)

func TestPatientRefs(t *testing.T) {
	for _, tc := range []struct {
		name, typ, json string
		want            []string
	}{
		{"observation subject", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, []string{"p1"}},
		{"observation performer", "Observation", `{"performer":[{"reference":"Practitioner/d1"},{"reference":"Patient/p2"}]}`, []string{"p2"}},
		{"subject and performer, once each", "Observation", `{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p1"},{"reference":"Patient/p3"}]}`, []string{"p1", "p3"}},
		{"a group subject is not a patient", "Observation", `{"subject":{"reference":"Group/g1"}}`, nil},
		{"encounter subject (param patient)", "Encounter", `{"subject":{"reference":"Patient/e62e52ae"}}`, []string{"e62e52ae"}},
		{"absolute reference", "Condition", `{"subject":{"reference":"https://fhir.example.org/r4/Patient/p9"}}`, []string{"p9"}},
		{"versioned reference", "Procedure", `{"subject":{"reference":"Patient/p9/_history/3"}}`, []string{"p9"}},
		{"nested array path", "Appointment", `{"participant":[{"actor":{"reference":"Location/l"}},{"actor":{"reference":"Patient/p4"}}]}`, []string{"p4"}},
		{"deep path", "CarePlan", `{"activity":[{"detail":{"performer":[{"reference":"Patient/p5"}]}}]}`, []string{"p5"}},
		{"claim payee party", "Claim", `{"patient":{"reference":"Patient/p6"},"payee":{"party":{"reference":"Patient/p7"}}}`, []string{"p6", "p7"}},
		{"explanation of benefit", "ExplanationOfBenefit", `{"patient":{"reference":"Patient/p6"}}`, []string{"p6"}},
		{"coverage beneficiary and payor", "Coverage", `{"beneficiary":{"reference":"Patient/b"},"payor":[{"reference":"Organization/o"},{"reference":"Patient/c"}]}`, []string{"b", "c"}},
		{"patient link", "Patient", `{"id":"p1","link":[{"other":{"reference":"Patient/p2"}}]}`, []string{"p2"}},
		{"provenance target", "Provenance", `{"target":[{"reference":"Encounter/e"},{"reference":"Patient/p8"}]}`, []string{"p8"}},
		{"supply request deliverTo", "SupplyRequest", `{"deliverTo":{"reference":"Patient/p8"}}`, []string{"p8"}},
		{"a path the parameter does not read", "Observation", `{"focus":[{"reference":"Patient/p1"}]}`, nil},
		{"urn:uuid cannot be placed", "Observation", `{"subject":{"reference":"urn:uuid:6b73cb5b"}}`, nil},
		{"contained cannot be placed", "Observation", `{"subject":{"reference":"#p1"}}`, nil},
		{"logical reference", "Observation", `{"subject":{"identifier":{"value":"123"}}}`, nil},
		{"type outside the compartment", "Organization", `{"partOf":{"reference":"Patient/p1"}}`, nil},
		{"type never in it", "Practitioner", `{"id":"x"}`, nil},
		{"reference not a string", "Observation", `{"subject":{"reference":12}}`, nil},
		{"element of another shape", "Observation", `{"subject":"Patient/p1"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PatientRefs(tc.typ, []byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("PatientRefs(%s, %s) = %q, want %q", tc.typ, tc.json, got, tc.want)
			}
		})
	}
	if _, err := PatientRefs("Observation", []byte(`{"subject":`)); err == nil {
		t.Error("truncated JSON: no error")
	}
}

func TestPatientID(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/1": "1", "http://x/fhir/Patient/a-b": "a-b", "Patient/1/_history/2": "1", "Patient/": "",
		"Practitioner/1": "", "Patient": "", "urn:uuid:1": "", "": "", "Patient/1?x=y": "", "foo/Patient/z/": "z",
	} {
		got, ok := PatientID(ref)
		if got != want || ok != (want != "") {
			t.Errorf("PatientID(%q) = %q, %v; want %q", ref, got, ok, want)
		}
	}
}

// FuzzPatientRefs: any input gives an answer or an error, never a panic, and every id
// returned is one the resource's JSON holds in a Patient reference.
func FuzzPatientRefs(f *testing.F) {
	f.Add("Observation", `{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}`)
	f.Add("CarePlan", `{"activity":[{"detail":{"performer":[[{"reference":"Patient/x"}]]}}]}`)
	f.Add("Patient", `{"link":[{"other":{"reference":"https://h/Patient/1/_history/1"}}]}`)
	f.Add("Claim", `[1,2,{"payee":null}]`)
	f.Fuzz(func(t *testing.T, typ, doc string) {
		refs, err := PatientRefs(typ, []byte(doc))
		if err != nil {
			return
		}
		for _, id := range refs {
			if id == "" {
				t.Fatalf("empty id from %q", doc)
			}
		}
	})
}

// TestPatientRefsSynthea: every resource of real Synthea data whose type has a
// patient parameter names exactly one of the data's patients.
func TestPatientRefsSynthea(t *testing.T) {
	dir := testenv.Shared(t, "data", "synthea-small")
	patients := map[string]bool{}
	files, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no data in %s: %v", dir, err)
	}
	type line struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	read := func(path string, each func(line, []byte)) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			each(l, sc.Bytes())
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	read(filepath.Join(dir, "Patient.ndjson"), func(l line, _ []byte) { patients[l.ID] = true })
	members := 0
	for _, path := range files {
		read(path, func(l line, b []byte) {
			refs, err := PatientRefs(l.ResourceType, b)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case l.ResourceType == "Patient", !InPatientCompartmentType(l.ResourceType):
				if len(refs) != 0 {
					t.Errorf("%s/%s: patients %v", l.ResourceType, l.ID, refs)
				}
			case len(refs) != 1 || !patients[refs[0]]:
				t.Errorf("%s/%s: patients %v, want one of the data's", l.ResourceType, l.ID, refs)
			default:
				members++
			}
		})
	}
	if members < 1000 {
		t.Errorf("only %d resources in a patient's compartment", members)
	}
}
