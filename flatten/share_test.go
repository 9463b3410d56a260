package flatten

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const sharePatient = `{
	"resourceType": "Patient", "id": "p1",
	"extension": [
		{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
			{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
			{"url": "text", "valueString": "White"}
		]}
	],
	"name": [{"use": "usual", "family": "Roe", "given": ["Jo"]}, {"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
	"address": [{"city": "Boston", "state": "MA"}, {"city": "Salem"}]
}`

func TestShareSpines(t *testing.T) {
	const race = `extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')`
	tests := []struct {
		name       string
		select_    string
		wantShared int
		wantRows   string
	}{
		{
			name: "race code, display and text",
			select_: `[{"column": [
				{"name": "code", "path": "` + race + `.extension('ombCategory').value.ofType(Coding).code.first()"},
				{"name": "display", "path": "` + race + `.extension('ombCategory').value.ofType(Coding).display.first()"},
				{"name": "text", "path": "` + race + `.extension('text').value.ofType(string).first()"}]}]`,
			wantShared: 2, // the race extension, and its ombCategory Coding
			wantRows:   `[{"code":"2106-3","display":"White","text":"White"}]`,
		},
		{
			name: "official name else first",
			select_: `[{"column": [
				{"name": "family", "path": "(name.where(use = 'official') | name).first().family"},
				{"name": "given", "path": "(name.where(use = 'official') | name).first().given.join(' ')"},
				{"name": "count", "path": "name.count()"}]}]`,
			wantShared: 1,
			wantRows:   `[{"count":2,"family":"Doe","given":"Jane Q"}]`,
		},
		{
			name: "paths with $index are not shared",
			select_: `[{"column": [
				{"name": "first_family", "path": "name.where($index = 0).family.first()"},
				{"name": "first_given", "path": "name.where($index = 0).given.first()"}]}]`,
			wantShared: 1, // name only
			wantRows:   `[{"first_family":"Roe","first_given":"Jo"}]`,
		},
		{
			name: "per element of a forEach, and across selects on the resource",
			select_: `[{"column": [{"name": "city1", "path": "address.first().city"}]},
				{"forEach": "address", "column": [
					{"name": "city", "path": "city"},
					{"name": "upper_city", "path": "city.upper()"},
					{"name": "state", "path": "state"}]}]`,
			wantShared: 2, // address, for the column and the forEach; city within the forEach
			wantRows: `[{"city":"Boston","city1":"Boston","state":"MA","upper_city":"BOSTON"},` +
				`{"city":"Salem","city1":"Boston","state":null,"upper_city":"SALEM"}]`,
		},
		{
			name:       "identical columns",
			select_:    `[{"column": [{"name": "a", "path": "family"}, {"name": "b", "path": "family"}], "forEach": "name.where(use = 'official')"}]`,
			wantShared: 1,
			wantRows:   `[{"a":"Doe","b":"Doe"}]`,
		},
	}
	r, err := Parse([]byte(sharePatient))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := []byte(`{"resource": "Patient", "select": ` + tt.select_ + `}`)
			v, err := Compile(def)
			if err != nil {
				t.Fatal(err)
			}
			if v.shared != tt.wantShared {
				t.Errorf("got %d shared paths, want %d", v.shared, tt.wantShared)
			}
			rows, err := v.Rows(r)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(rows)
			if string(got) != tt.wantRows {
				t.Errorf("got rows %s, want %s", got, tt.wantRows)
			}
		})
	}
}

// TestShareSpinesRealData checks that sharing paths changes no row of any
// default view over the shared sample data.
func TestShareSpinesRealData(t *testing.T) {
	dir := sharedDir(t, "data")
	type pair struct{ shared, plain *View }
	byType := map[string][]pair{}
	defs, _ := filepath.Glob("views/*.json")
	defs = append(defs, "testdata/patient14.json")
	for _, f := range defs {
		def, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := compileView(def, true)
		if err != nil {
			t.Fatal(err)
		}
		p, err := compileView(def, false)
		if err != nil {
			t.Fatal(err)
		}
		if p.shared != 0 {
			t.Fatalf("%s: compiled without sharing, got %d shared paths", f, p.shared)
		}
		byType[s.Resource()] = append(byType[s.Resource()], pair{s, p})
	}
	every := 3
	if raceEnabled || testing.Short() {
		every = 15
	}
	checked := 0
	var r Resource
	sampleResources(t, dir, every, func(file string, raw []byte) {
		if r.Parse(raw) != nil {
			return
		}
		for _, p := range byType[r.ResourceType()] {
			want, werr := p.plain.Rows(&r)
			got, gerr := p.shared.Rows(&r)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: view %s: with shared paths got %v (%v), want %v (%v)", file, p.shared.Name(), got, gerr, want, werr)
			}
			checked++
		}
	})
	t.Logf("%d resource-view pairs agree", checked)
}
