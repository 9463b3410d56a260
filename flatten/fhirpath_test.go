package flatten

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLex(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // kind:text
	}{
		{"path", "name.family", []string{"1:name", "9:.", "1:family"}},
		{"string escape", `'it\'s'`, []string{"3:it's"}},
		{"delimited", "`div`.x", []string{"2:div", "9:.", "1:x"}},
		{"decimal", "1.50", []string{"4:1.50"}},
		{"integer then call", "1.lowBoundary()", []string{"4:1", "9:.", "1:lowBoundary", "9:(", "9:)"}},
		{"date", "@2020-01-02T10:00:00.5+02:00", []string{"5:2020-01-02T10:00:00.5+02:00"}},
		{"date then call", "@2020-01.lowBoundary()", []string{"5:2020-01", "9:.", "1:lowBoundary", "9:(", "9:)"}},
		{"time", "@T12:34", []string{"6:12:34"}},
		{"constant", "%rowIndex + %`a b`", []string{"7:rowIndex", "9:+", "7:a b"}},
		{"operators", "a!=b<=c", []string{"1:a", "9:!=", "1:b", "9:<=", "1:c"}},
		{"comment", "a // note\n/* x */ b", []string{"1:a", "1:b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := lex(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tk := range toks[:len(toks)-1] {
				got = append(got, string(rune('0'+tk.kind))+":"+tk.text)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseFHIRPath(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"a.b.c", "a.b.c"},
		{"a and b or c", "((a and b) or c)"},
		{"a or b and c", "(a or (b and c))"},
		{"a = b and c != d", "((a = b) and (c != d))"},
		{"1 + 2 * 3", "(1 + (2 * 3))"},
		{"a implies b or c", "(a implies (b or c))"},
		{"-a.b", "-a.b"},
		{"name[0].given", "name[0].given"},
		{"where(x > 1).exists()", "where((x > 1)).exists()"},
		{"a | b = c", "((a | b) = c)"},
		{"value is Quantity", "(value is Quantity)"},
		{"x as FHIR.string", "(x as FHIR.string)"},
		{"(a)", "a"},
		{"{}", "{}"},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			tree, err := parseFHIRPath(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseFHIRPathErrors(t *testing.T) {
	for _, src := range []string{"", "@@", "a.", "a[1", "(a", "a b", "'open", "a..b", "$foo", "1 +", "``", "@2020-13"} {
		t.Run(src, func(t *testing.T) {
			if _, err := parseFHIRPath(src); err == nil {
				t.Errorf("parse %q: got no error, want one", src)
			}
		})
	}
}

const evalPatient = `{
  "resourceType": "Patient",
  "id": "p1",
  "active": true,
  "gender": "female",
  "birthDate": "1970-06",
  "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-06-03T10:00:00+01:00"}]},
  "name": [
    {"use": "usual", "family": "Doe", "given": ["Jo"]},
    {"use": "official", "family": "Doe", "given": ["Joanna", null, "May"], "_given": [null, {"extension": [{"url": "x", "valueString": "absent"}]}, null]}
  ],
  "extension": [
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
      {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
      {"url": "text", "valueString": "White"}]},
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}
  ],
  "multipleBirthInteger": 2,
  "managingOrganization": {"reference": "https://example.org/fhir/Organization/o1/_history/3"},
  "generalPractitioner": [{"reference": "urn:uuid:abc"}, {"reference": "#contained"}, {"reference": "Practitioner?identifier=x|1"}],
  "contact": [{"name": {"family": "A"}}, {"name": {"family": "B"}}],
  "deceasedBoolean": false,
  "photo": [{"size": 12}],
  "weight": 1.0
}`

func TestEvaluate(t *testing.T) {
	tests := []struct {
		expr string
		want string // JSON of the result collection
	}{
		{"gender", `["female"]`},
		{"Patient.gender", `["female"]`},
		{"name.family", `["Doe","Doe"]`},
		{"name.given", `["Jo","Joanna","May"]`},
		{"name.given.count()", `[4]`},
		{"name.where(use = 'official').given.first()", `["Joanna"]`},
		{"name[1].given[2]", `["May"]`},
		{"name.given.join(', ')", `["Jo, Joanna, May"]`},
		{"name.given.extension('x').value.ofType(string)", `["absent"]`},
		{"birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value.ofType(dateTime)", `["1970-06-03T10:00:00+01:00"]`},
		{"birthDate.lowBoundary()", `["1970-06-01"]`},
		{"birthDate.highBoundary()", `["1970-06-30"]`},
		{"birthDate < @1971", `[true]`},
		{"birthDate = @1970-06-01", `[]`},
		{"birthDate = @1970-06", `[true]`},
		{"multipleBirth.ofType(integer) + 1", `[3]`},
		{"multipleBirth.ofType(boolean)", `[]`},
		{"multipleBirth.ofType(integer) / 4", `[0.5]`},
		{"7 div 2", `[3]`},
		{"7 mod 2", `[1]`},
		{"1.0 + 2", `[3.0]`},
		{"weight.lowBoundary()", `[0.95]`},
		{"weight.highBoundary()", `[1.05]`},
		{"deceased.ofType(boolean).not()", `[true]`},
		{"active and deceased.ofType(boolean)", `[false]`},
		{"active and missing", `[]`},
		{"active or missing", `[true]`},
		{"missing.exists() or deceased.ofType(boolean)", `[false]`},
		{"(missing and false)", `[false]`},
		{"true xor true", `[false]`},
		{"false implies missing", `[true]`},
		{"missing.empty()", `[true]`},
		{"getResourceKey()", `["p1"]`},
		{"managingOrganization.getReferenceKey(Organization)", `["o1"]`},
		{"managingOrganization.getReferenceKey(Patient)", `[]`},
		{"generalPractitioner.getReferenceKey()", `["abc"]`},
		{"extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race').extension('ombCategory').value.ofType(Coding).code", `["2106-3"]`},
		{"extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex').value.ofType(code)", `["F"]`},
		{"extension.value.ofType(string)", `["F"]`}, // code derives from string
		{"contact.name.family | name.family", `["A","B","Doe"]`},
		{"name.use contains 'usual'", `[true]`},
		{"'usual' in name.use", `[true]`},
		{"name.all(family = 'Doe')", `[true]`},
		{"name.select(given.first())", `["Jo","Joanna"]`},
		{"name.where($index = 1).use", `["official"]`},
		{"iif(active, 'yes', 'no')", `["yes"]`},
		{"gender.upper() & '-' & gender.length().toString()", `["FEMALE-6"]`},
		{"gender.substring(1, 3)", `["ema"]`},
		{"gender.startsWith('fe') and gender.matches('^f.*e$')", `[true]`},
		{"gender ~ 'FEMALE'", `[true]`},
		{"photo.size is integer", `[true]`},
		{"'http://loinc.org'.codeSystemName()", `["loinc"]`},
		{"%resource.id", `["p1"]`},
		{"{}.exists()", `[false]`},
		{"-(2 - 5)", `[3]`},
	}
	r, err := Parse([]byte(evalPatient))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := evalJSON(r, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// evalJSON evaluates expr on the resource and renders the result as JSON.
func evalJSON(r *Resource, expr string) (string, error) {
	c := exprCompiler{consts: map[string][]item{}}
	o, err := c.compileExpr(expr)
	if err != nil {
		return "", err
	}
	ev := newEvaluator(c.slots, 0)
	ev.reset(r)
	res, err := ev.eval(o, []item{ev.root()})
	if err != nil {
		return "", err
	}
	w := &walker{ev: ev}
	out := []any{}
	for _, it := range res {
		if v := w.anyItem(it); v != nil {
			out = append(out, v)
		}
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func TestEvaluateErrors(t *testing.T) {
	r, err := Parse([]byte(evalPatient))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ expr, want string }{
		{"true and name.family", "single value"},
		{"name.given + 1", "single value"},
		{"gender + 1", "expects numbers"},
		{"name.given.single()", "single value"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := evalJSON(r, tc.expr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"name.foo()", "unknown function foo()"},
		{"%missing", "unknown constant %missing"},
		{"first(1)", "first() takes 0 argument(s)"},
		{"ofType(lowercase)", "unknown type lowercase"},
		{"name.", "syntax error"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			c := exprCompiler{consts: map[string][]item{}}
			_, err := c.compileExpr(tc.expr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReferenceKey(t *testing.T) {
	tests := []struct {
		ref, typ, id string
		ok           bool
	}{
		{"Patient/1", "Patient", "1", true},
		{"https://x.org/fhir/Patient/1/_history/2", "Patient", "1", true},
		{"urn:uuid:abc", "", "abc", true},
		{"#c1", "", "", false},
		{"Practitioner?identifier=a|b", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			typ, id, ok := referenceKey(tc.ref)
			if typ != tc.typ || id != tc.id || ok != tc.ok {
				t.Errorf("got %q %q %v, want %q %q %v", typ, id, ok, tc.typ, tc.id, tc.ok)
			}
		})
	}
}

func TestEvaluateOddShapes(t *testing.T) {
	tests := []struct{ doc, expr, want string }{
		{`{"resourceType":"Patient","extension":[null],"_extension":[{"id":"x"}]}`, "extension('u').exists()", `[false]`},
		{`{"resourceType":"Patient","birthDate":null,"_birthDate":{"extension":[{"url":"u","valueCode":"unknown"}]}}`, "birthDate.exists() and birthDate.hasValue().not()", `[true]`},
		{`{"resourceType":"Patient","_given":[{"id":"a"}]}`, "given.id", `["a"]`},
		{`{"resourceType":"Patient","name":"not an array","gender":{"odd":true}}`, "name.family | gender.odd", `[true]`},
		{`{"resourceType":"Observation","valueQuantity":{"value":1e400}}`, "value.ofType(Quantity).value > 1", `[true]`},
		{`{"resourceType":"Observation","valueQuantity":{"value":1e99999}}`, "value.ofType(Quantity).value > 1", `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			r, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			got, err := evalJSON(r, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
