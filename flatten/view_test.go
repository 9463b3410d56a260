package flatten

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestCompileViewErrors(t *testing.T) {
	tests := []struct {
		name string
		def  string
		want []string // substrings the error must contain
	}{
		{"no resource", `{"name":"v","select":[{"column":[{"name":"id","path":"id"}]}]}`, []string{`view "v"`, "resource is missing"}},
		{"syntax", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"c","path":"name.("}]}]}`, []string{`view "v"`, "column c", `"name.("`, "syntax error"}},
		{"unknown function", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"c","path":"name.bogus()"}]}]}`, []string{"column c", "unknown function bogus()"}},
		{"unknown constant", `{"name":"v","resource":"Patient","select":[{"forEach":"name.where(use = %u)","column":[{"name":"c","path":"family"}]}]}`, []string{"forEach", "unknown constant %u"}},
		{"constant without value", `{"name":"v","resource":"Patient","constant":[{"name":"u"}],"select":[{"column":[{"name":"c","path":"id"}]}]}`, []string{"constant u has no value"}},
		{"duplicate column", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"c","path":"id"}]},{"column":[{"name":"c","path":"gender"}]}]}`, []string{"column c is defined more than once"}},
		{"union mismatch", `{"name":"v","resource":"Patient","select":[{"unionAll":[{"column":[{"name":"a","path":"id"}]},{"column":[{"name":"b","path":"id"}]}]}]}`, []string{"unionAll[1]", "[b]", "[a]"}},
		{"bad column name", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"a-b","path":"id"}]}]}`, []string{"column a-b", "name must match"}},
		{"forEach not a string", `{"name":"v","resource":"Patient","select":[{"forEach":1}]}`, []string{"decode ViewDefinition"}},
		{"forEach and forEachOrNull", `{"name":"v","resource":"Patient","select":[{"forEach":"a","forEachOrNull":"b","column":[{"name":"c","path":"id"}]}]}`, []string{"only one of"}},
		{"unknown type", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"c","path":"id","type":"varchar"}]}]}`, []string{"column c", `unknown type "varchar"`}},
		{"bad view name", `{"name":"../x","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}`, []string{"name must match"}},
		{"text companion clash", `{"name":"v","resource":"Patient","select":[{"column":[{"name":"x","path":"1.0","type":"decimal"},{"name":"x_text","path":"id"}]}]}`, []string{"x_text clashes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]byte(tc.def))
			if err == nil {
				t.Fatal("got no error, want one")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSchemaBeforeData(t *testing.T) {
	v, err := Compile([]byte(`{"name":"obs","resource":"Observation","select":[{"column":[
		{"name":"id","path":"id","type":"id"},
		{"name":"n","path":"value.ofType(Quantity).value","type":"decimal"},
		{"name":"when","path":"effective.ofType(dateTime)","type":"dateTime"},
		{"name":"day","path":"issued","type":"date"},
		{"name":"t","path":"value.ofType(time)","type":"time"},
		{"name":"ok","path":"status = 'final'"},
		{"name":"k","path":"component.count()"},
		{"name":"codes","path":"code.coding.code","type":"code","collection":true}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"id: utf8", "n: decimal(38, 18)", "n_text: utf8", "when: timestamp[us, tz=UTC]", "day: date32",
		"t: time64[us]", "ok: bool", "k: int64", "codes: list<item: utf8, nullable>",
	}
	fields := v.Schema().Fields()
	if len(fields) != len(want) {
		t.Fatalf("got %d fields, want %d: %v", len(fields), len(want), v.Schema())
	}
	for i, f := range fields {
		if got := f.Name + ": " + f.Type.String(); got != want[i] {
			t.Errorf("field %d: got %s, want %s", i, got, want[i])
		}
	}
}

func TestBatchAppend(t *testing.T) {
	v, err := Compile([]byte(`{"name":"obs","resource":"Observation","select":[{"column":[
		{"name":"id","path":"id","type":"id"},
		{"name":"value","path":"value.ofType(Quantity).value","type":"decimal"},
		{"name":"when","path":"effective.ofType(dateTime)","type":"dateTime"}]},
		{"forEachOrNull":"component","column":[{"name":"component_code","path":"code.text"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b := v.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	docs := []struct {
		doc     string
		rows    int
		wantErr string
	}{
		{`{"resourceType":"Observation","id":"a","valueQuantity":{"value":1.50},"effectiveDateTime":"2020"}`, 1, ""},
		{`{"resourceType":"Observation","id":"b","valueQuantity":{"value":-1e+245},"component":[{"code":{"text":"x"}},{"code":{"text":"y"}}]}`, 2, ""},
		{`{"resourceType":"Observation","id":"c","effectiveDateTime":"not a date","component":[{"code":{"text":"x"}}]}`, 0, "cannot store"},
		{`{"resourceType":"Patient","id":"d"}`, 0, ""},
	}
	for _, d := range docs {
		r, err := Parse([]byte(d.doc))
		if err != nil {
			t.Fatal(err)
		}
		n, err := b.Append(r)
		if d.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), d.wantErr) || !strings.Contains(err.Error(), "Observation/c") {
				t.Errorf("append %s: got error %v, want one containing %q and the resource", d.doc, err, d.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n != d.rows {
			t.Errorf("append %s: got %d rows, want %d", d.doc, n, d.rows)
		}
	}
	if b.Rows() != 3 || b.ApproxBytes() == 0 {
		t.Errorf("got %d rows and %d bytes, want 3 rows and some bytes", b.Rows(), b.ApproxBytes())
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	if rec.NumRows() != 3 {
		t.Fatalf("got %d rows in the record, want 3", rec.NumRows())
	}
	value := rec.Column(1).(*array.Decimal128)
	text := rec.Column(2).(*array.String)
	when := rec.Column(3).(*array.Timestamp)
	if got := value.Value(0).ToString(decimalScale); got != "1.500000000000000000" {
		t.Errorf("value: got %s, want 1.500000000000000000", got)
	}
	if got := text.Value(0); got != "1.50" {
		t.Errorf("value_text: got %s, want 1.50", got)
	}
	if !value.IsNull(1) || text.Value(1) != "-1e+245" {
		t.Errorf("huge value: got null=%v text=%q, want null and -1e+245", value.IsNull(1), text.Value(1))
	}
	if got, want := when.Value(0), arrow.Timestamp(1577836800000000); got != want {
		t.Errorf("partial dateTime 2020: got %d, want %d", got, want)
	}
	if b.Rows() != 0 {
		t.Errorf("after NewRecordBatch: got %d rows, want 0", b.Rows())
	}
}

func TestDefaultViews(t *testing.T) {
	views, err := DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"allergy_intolerance", "care_plan", "claim", "condition", "diagnostic_report",
		"document_reference", "encounter", "explanation_of_benefit", "immunization", "location",
		"medication_request", "observation", "observation_component", "organization", "patient",
		"practitioner", "procedure"}
	if len(views) != len(want) {
		t.Fatalf("got %d views, want %d", len(views), len(want))
	}
	for i, v := range views {
		if v.Name() != want[i] {
			t.Errorf("view %d: got %s, want %s", i, v.Name(), want[i])
		}
		if cols := v.Columns(); cols[0] != "id" {
			t.Errorf("view %s: got first column %s, want id", v.Name(), cols[0])
		}
		for _, c := range v.Columns() {
			if strings.Contains(c, "data") {
				t.Errorf("view %s: column %s looks like attachment content", v.Name(), c)
			}
		}
	}
}

func TestLoadViews(t *testing.T) {
	dir := t.TempDir()
	custom := `{"name":"patient","resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"g","path":"gender"}]}]}`
	extra := `{"name":"goal","resource":"Goal","select":[{"column":[{"name":"id","path":"id"}]}]}`
	for name, body := range map[string]string{"p.json": custom, "goal.json": extra, "notes.txt": "ignored"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	views, err := LoadViews(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 18 {
		t.Errorf("got %d views, want 18 (17 defaults, one replaced, one added)", len(views))
	}
	pat := ViewsFor(views, "Patient")
	if len(pat) != 1 || len(pat[0].Columns()) != 2 {
		t.Errorf("got Patient views %v, want the custom two-column view", pat)
	}
	if len(ViewsFor(views, "Goal")) != 1 {
		t.Error("got no Goal view, want the added one")
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"name":"bad"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadViews(dir); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("got error %v, want one naming bad.json", err)
	}
	if _, err := LoadViews(filepath.Join(dir, "missing")); err == nil {
		t.Error("got no error for a missing directory, want one")
	}
}
