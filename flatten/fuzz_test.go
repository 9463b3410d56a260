package flatten

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// suiteSeeds returns the expressions and resources of the conformance
// suite, to seed the fuzzers. It returns nothing when the suite is absent.
func suiteSeeds(t testing.TB) (exprs []string, resources [][]byte) {
	t.Helper()
	dir := findShared("conformance/sql-on-fhir-v2/tests")
	if dir == "" {
		return nil, nil
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				if s, ok := val.(string); ok && (k == "path" || k == "forEach" || k == "forEachOrNull") {
					exprs = append(exprs, s)
				}
				walk(val)
			}
		case []any:
			for _, val := range x {
				if s, ok := val.(string); ok {
					exprs = append(exprs, s) // repeat paths
				}
				walk(val)
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var sf struct {
			Resources []json.RawMessage `json:"resources"`
			Tests     []struct {
				View any `json:"view"`
			} `json:"tests"`
		}
		if json.Unmarshal(data, &sf) != nil {
			continue
		}
		for _, r := range sf.Resources {
			resources = append(resources, r)
		}
		for _, tc := range sf.Tests {
			walk(tc.View)
		}
	}
	return exprs, resources
}

func FuzzParseFHIRPath(f *testing.F) {
	exprs, _ := suiteSeeds(f)
	for _, e := range append(exprs, "name.where(use = 'official').given.join(', ')", "@2020-01-01T10:00:00+01:00 < now", "1.0.lowBoundary()", "-(3 div 2) mod 1", "%`c`.x[0]") {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tree, err := parseFHIRPath(src)
		if err != nil {
			return
		}
		_ = tree.String()
		c := exprCompiler{consts: map[string][]item{"c": {{kind: vStr, s: "x"}}}}
		_, _ = c.compile(tree)
	})
}

func FuzzEvaluate(f *testing.F) {
	exprs, resources := suiteSeeds(f)
	for i, e := range exprs {
		if len(resources) > 0 {
			f.Add(e, resources[i%len(resources)])
		}
	}
	f.Add("value.ofType(Quantity).value / 0", []byte(`{"resourceType":"Observation","valueQuantity":{"value":1e400}}`))
	f.Add("birthDate.lowBoundary() | birthDate.highBoundary()", []byte(`{"resourceType":"Patient","birthDate":"2020-02"}`))
	f.Fuzz(func(t *testing.T, expr string, doc []byte) {
		r, err := Parse(doc)
		if err != nil {
			return
		}
		c := exprCompiler{consts: map[string][]item{"c": {{kind: vInt, typ: tInteger, i: 1}}}}
		o, err := c.compileExpr(expr)
		if err != nil {
			return
		}
		ev := newEvaluator(c.slots, 0)
		ev.reset(r)
		_, _ = ev.eval(o, []item{ev.root()})
		// The same expression as a column and a forEach of a view.
		def, _ := json.Marshal(map[string]any{
			"resource": r.ResourceType(),
			"select": []any{
				map[string]any{"column": []any{map[string]any{"name": "c", "path": expr, "collection": true}}},
				map[string]any{"forEachOrNull": expr, "column": []any{map[string]any{"name": "d", "path": "$this", "collection": true}}},
			},
		})
		if v, err := Compile(def); err == nil {
			_, _ = v.Rows(r)
		}
		// Columns that share the expression give the same rows whether the
		// shared path is computed once or per column.
		def, _ = json.Marshal(map[string]any{
			"resource": r.ResourceType(),
			"select": []any{map[string]any{"column": []any{
				map[string]any{"name": "e", "path": expr, "collection": true},
				map[string]any{"name": "f", "path": "(" + expr + ").count()"},
				map[string]any{"name": "g", "path": "(" + expr + ").first()", "collection": true},
			}}},
		})
		shared, err := compileView(def, true)
		if err != nil {
			return
		}
		plain, err := compileView(def, false)
		if err != nil {
			t.Fatalf("compiles only with sharing: %v", err)
		}
		got, gerr := shared.Rows(r)
		want, werr := plain.Rows(r)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: with shared paths got %v (%v), want %v (%v)", expr, got, gerr, want, werr)
		}
		// Two views in a plan, sharing the path per resource, give the
		// rows each gives alone without sharing.
		other, _ := json.Marshal(map[string]any{
			"resource": r.ResourceType(),
			"select": []any{map[string]any{
				"column": []any{map[string]any{"name": "h", "path": "(" + expr + ").exists()"}},
				"select": []any{map[string]any{"forEachOrNull": expr, "column": []any{map[string]any{"name": "i", "path": "$this", "collection": true}}}},
			}},
		})
		comparePlan(t, expr, r, def, other)
	})
}

// comparePlan checks that defs compiled together in a plan give, through
// batches sharing one evaluator, the rows each gives alone without
// sharing. Resources the views cannot evaluate are skipped.
func comparePlan(t *testing.T, expr string, r *Resource, defs ...[]byte) {
	planned, err := compileViews(defs, true)
	if err != nil {
		return
	}
	mem := memory.NewGoAllocator()
	p := &Plan{resource: r.ResourceType(), views: planned}
	batches := p.NewBatches(mem)
	for i, def := range defs {
		alone, err := compileView(def, false)
		if err != nil {
			t.Fatalf("compiles only in a plan: %v", err)
		}
		ab := alone.NewBatch(mem)
		got, gerr := batches[i].Append(r)
		want, werr := ab.Append(r)
		if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%q: view %d in a plan gave %d rows (%v), alone %d (%v)", expr, i, got, gerr, want, werr)
		}
		g, w := batches[i].NewRecordBatch(), ab.NewRecordBatch()
		if !array.RecordEqual(g, w) {
			t.Fatalf("%q: view %d in a plan gave\n%v\nalone\n%v", expr, i, g, w)
		}
		g.Release()
		w.Release()
		ab.Release()
		batches[i].Release()
	}
}

func FuzzBundleEntries(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}},{"request":{}},{"resource":null}]}`))
	f.Add([]byte(`{"entr\u0079":[{"resource":[1,"\"",{"a":-0.5e+2}]}],"x":{"entry":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got [][]byte
		err := BundleEntries(data, func(_ int, res []byte) error {
			got = append(got, res)
			return nil
		})
		if err != nil {
			// Invalid UTF-8 is refused, as Parse does; encoding/json lets it pass.
			if json.Valid(data) && utf8.Valid(data) && bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) && !strings.Contains(err.Error(), "nesting") {
				t.Fatalf("rejected valid JSON %q: %v", data, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		for _, res := range got {
			if !json.Valid(res) {
				t.Fatalf("entry %q of %q is not a JSON value", res, data)
			}
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	_, resources := suiteSeeds(f)
	for _, r := range resources {
		f.Add(r)
	}
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":["a\u00e9\ud83d\ude00",null]}],"_name":[null,{"id":"x"}],"n":-1.5e-3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Resource
		if err := r.Parse(data); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		// What the tree holds must read back as the document did.
		out := r.appendJSON(nil, r.root)
		var want, got any
		dw := json.NewDecoder(bytes.NewReader(data))
		dw.UseNumber()
		dg := json.NewDecoder(bytes.NewReader(out))
		dg.UseNumber()
		if dw.Decode(&want) != nil {
			return // encoding/json rejects some inputs we accept (none known)
		}
		if err := dg.Decode(&got); err != nil {
			t.Fatalf("re-encoded %q is invalid: %v", out, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %q: got %v, want %v", data, got, want)
		}
	})
}
