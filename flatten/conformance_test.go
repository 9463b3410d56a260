package flatten

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestConformanceSuite(t *testing.T) {
	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	rep, err := RunConformance(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failures() {
		t.Error(f)
	}
	t.Log(rep.Summary())
	if rep.Failed != 0 || rep.Passed == 0 {
		t.Errorf("got %s, want every test passed", rep.Summary())
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("marshal report: %v", err)
	}
}

// TestConformanceSuiteArrow runs the suite's row expectations through the
// Arrow path: the typed columns of a Batch must hold the expected values.
func TestConformanceSuiteArrow(t *testing.T) {
	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var sf suiteFile
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&sf); err != nil {
			t.Fatal(err)
		}
		for _, tc := range sf.Tests {
			if tc.ExpectError || tc.Expect == nil {
				continue
			}
			t.Run(filepath.Base(path)+"/"+tc.Title, func(t *testing.T) {
				v, err := Compile(tc.View)
				if err != nil {
					t.Fatal(err)
				}
				b := v.NewBatch(memory.NewGoAllocator())
				defer b.Release()
				for _, raw := range sf.Resources {
					r, err := Parse(raw)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := b.Append(r); err != nil {
						t.Fatal(err)
					}
				}
				rec := b.NewRecordBatch()
				defer rec.Release()
				got := recordRows(t, rec)
				want := make([]any, len(tc.Expect))
				for i, w := range tc.Expect {
					want[i] = normalizeExpected(t, rec.Schema(), w.(map[string]any))
				}
				if err := compareRows(got, want); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// recordRows reads a record back into rows of comparable values: dates
// as days, timestamps and times as microseconds, decimals as text.
func recordRows(t *testing.T, rec arrow.RecordBatch) []map[string]any {
	t.Helper()
	rows := make([]map[string]any, rec.NumRows())
	for i := range rows {
		rows[i] = map[string]any{}
	}
	for c, f := range rec.Schema().Fields() {
		if f.HasMetadata() && f.Metadata.FindKey("fhirlake.text_of") >= 0 {
			continue
		}
		col := rec.Column(c)
		for i := range rows {
			rows[i][f.Name] = arrowValue(t, col, i)
		}
	}
	return rows
}

func arrowValue(t *testing.T, col arrow.Array, i int) any {
	if col.IsNull(i) {
		return nil
	}
	switch a := col.(type) {
	case *array.String:
		return a.Value(i)
	case *array.Boolean:
		return a.Value(i)
	case *array.Int64:
		return a.Value(i)
	case *array.Decimal128:
		return json.Number(a.Value(i).ToString(decimalScale))
	case *array.Date32:
		return int64(a.Value(i))
	case *array.Timestamp:
		return int64(a.Value(i))
	case *array.Time64:
		return int64(a.Value(i))
	case *array.List:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for k := start; k < end; k++ {
			out = append(out, arrowValue(t, a.ListValues(), int(k)))
		}
		return out
	}
	t.Fatalf("unexpected array type %s", col.DataType())
	return nil
}

// normalizeExpected maps an expected row onto the representation
// recordRows produces, parsing temporal text with the time package.
func normalizeExpected(t *testing.T, schema *arrow.Schema, row map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range row {
		s, isStr := v.(string)
		fs, ok := schema.FieldsByName(k)
		if !ok || !isStr {
			out[k] = v
			continue
		}
		var err error
		var tm time.Time
		switch fs[0].Type.ID() {
		case arrow.DATE32:
			tm, err = time.Parse("2006-01-02", s)
			out[k] = tm.Unix() / 86400
		case arrow.TIMESTAMP:
			tm, err = time.Parse(time.RFC3339Nano, s)
			out[k] = tm.UnixMicro()
		case arrow.TIME64:
			tm, err = time.Parse("15:04:05.999999999", s)
			out[k] = int64(tm.Hour()*3600+tm.Minute()*60+tm.Second())*1e6 + int64(tm.Nanosecond()/1e3)
		default:
			out[k] = v
		}
		if err != nil {
			t.Fatalf("expected value %q of %s: %v", s, k, err)
		}
	}
	return out
}

// TestReportFormat checks the report against the published schema: an
// object of files, each {"tests": [{"name", "result": {"passed", "error"?}}]}.
func TestReportFormat(t *testing.T) {
	dir := sharedDir(t, "conformance/sql-on-fhir-v2/tests")
	rep, err := RunConformance(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string][]map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("report does not have the published shape: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(doc) != len(files) {
		t.Errorf("got %d files in the report, want %d", len(doc), len(files))
	}
	total := 0
	for file, body := range doc {
		if len(body) != 1 || len(body["tests"]) == 0 {
			t.Errorf("%s: got keys %v, want only a non-empty tests array", file, body)
		}
		for _, tc := range body["tests"] {
			total++
			var res struct {
				Passed *bool   `json:"passed"`
				Error  *string `json:"error"`
			}
			if err := json.Unmarshal(tc["result"], &res); err != nil || res.Passed == nil {
				t.Errorf("%s: test %s: result %s lacks passed", file, tc["name"], tc["result"])
			}
			if len(tc) != 2 {
				t.Errorf("%s: got test keys %v, want name and result", file, tc)
			}
		}
	}
	if total != rep.Passed+rep.Failed {
		t.Errorf("got %d tests in the report, want %d", total, rep.Passed+rep.Failed)
	}
}
