package flatten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
)

// Report is the result of running a SQL-on-FHIR v2 conformance suite. It
// marshals to the published test report format
// (https://sql-on-fhir.org/ig/test-report): an object keyed by test file
// name, each holding the results of that file's tests.
type Report struct {
	Files  map[string]*FileReport
	Passed int
	Failed int
}

// FileReport holds the results of one test file.
type FileReport struct {
	Tests []TestResult `json:"tests"`
}

// TestResult is the outcome of one test case.
type TestResult struct {
	Name   string      `json:"name"`
	Result TestOutcome `json:"result"`
}

// TestOutcome says whether a test passed and, when it did not, why.
type TestOutcome struct {
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

// MarshalJSON writes the report in the published format.
func (r Report) MarshalJSON() ([]byte, error) {
	if r.Files == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(r.Files)
}

// Summary returns "N passed, M failed".
func (r Report) Summary() string {
	return fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
}

// Failures lists the failed tests as "file: test: reason", sorted.
func (r Report) Failures() []string {
	var out []string
	for file, fr := range r.Files {
		for _, t := range fr.Tests {
			if !t.Result.Passed {
				out = append(out, fmt.Sprintf("%s: %s: %s", file, t.Name, t.Result.Error))
			}
		}
	}
	sort.Strings(out)
	return out
}

// suiteFile is the JSON form of a conformance test file.
type suiteFile struct {
	Title     string            `json:"title"`
	Resources []json.RawMessage `json:"resources"`
	Tests     []suiteTest       `json:"tests"`
}

type suiteTest struct {
	Title         string          `json:"title"`
	View          json.RawMessage `json:"view"`
	Expect        []any           `json:"expect"`
	ExpectCount   *int            `json:"expectCount"`
	ExpectError   bool            `json:"expectError"`
	ExpectColumns []string        `json:"expectColumns"`
}

// RunConformance runs every test file (*.json) in dir, in the format of
// the SQL-on-FHIR v2 test suite, and reports each test's outcome. Rows are
// compared as the reference runner compares them: in any order, with
// collections in order and numbers by value. An error is returned only
// when the directory or a file cannot be read or decoded.
func RunConformance(dir string) (Report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return Report{}, fmt.Errorf("run conformance %s: %w", dir, err)
	}
	if len(files) == 0 {
		return Report{}, fmt.Errorf("run conformance %s: no test files", dir)
	}
	sort.Strings(files)
	rep := Report{Files: map[string]*FileReport{}}
	for _, path := range files {
		fr, err := RunConformanceFile(path)
		if err != nil {
			return Report{}, fmt.Errorf("run conformance: %w", err)
		}
		rep.Files[filepath.Base(path)] = fr
		for _, t := range fr.Tests {
			if t.Result.Passed {
				rep.Passed++
			} else {
				rep.Failed++
			}
		}
	}
	return rep, nil
}

// RunConformanceFile runs the tests of one conformance test file.
func RunConformanceFile(path string) (*FileReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sf suiteFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	resources := make([]*Resource, 0, len(sf.Resources))
	for i, raw := range sf.Resources {
		r, err := Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %d: %w", path, i, err)
		}
		resources = append(resources, r)
	}
	fr := &FileReport{Tests: []TestResult{}}
	for _, t := range sf.Tests {
		res := TestResult{Name: t.Title}
		if err := runSuiteTest(t, resources); err != nil {
			res.Result.Error = err.Error()
		} else {
			res.Result.Passed = true
		}
		fr.Tests = append(fr.Tests, res)
	}
	return fr, nil
}

// runSuiteTest runs one test case and returns why it failed, or nil.
func runSuiteTest(t suiteTest, resources []*Resource) error {
	rows, cols, err := evalSuiteView(t.View, resources)
	if t.ExpectError {
		if err == nil {
			return errors.New("expected an error, got none")
		}
		return nil
	}
	if err != nil {
		return err
	}
	if t.ExpectColumns != nil && !slices.Equal(cols, t.ExpectColumns) {
		return fmt.Errorf("got columns %v, want %v", cols, t.ExpectColumns)
	}
	if t.ExpectCount != nil {
		if len(rows) != *t.ExpectCount {
			return fmt.Errorf("got %d rows, want %d", len(rows), *t.ExpectCount)
		}
		return nil
	}
	return compareRows(rows, t.Expect)
}

func evalSuiteView(def json.RawMessage, resources []*Resource) ([]map[string]any, []string, error) {
	v, err := Compile(def)
	if err != nil {
		return nil, nil, err
	}
	var rows []map[string]any
	for _, r := range resources {
		rs, err := v.Rows(r)
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, v.Columns(), nil
}

// compareRows matches actual rows against expected ones in any order.
func compareRows(got []map[string]any, want []any) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d rows, want %d: got %s", len(got), len(want), compactJSON(got))
	}
	used := make([]bool, len(got))
next:
	for _, w := range want {
		for i, g := range got {
			if !used[i] && sameValue(any(g), w) {
				used[i] = true
				continue next
			}
		}
		return fmt.Errorf("no row matches %s; got %s", compactJSON(w), compactJSON(got))
	}
	return nil
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// sameValue compares a produced value with an expected JSON value:
// numbers by value, arrays in order, objects by keys.
func sameValue(got, want any) bool {
	if gn, ok := numberText(got); ok {
		wn, ok := numberText(want)
		if !ok {
			return false
		}
		c, ok := compareDec(gn, wn)
		return ok && c == 0
	}
	switch w := want.(type) {
	case nil:
		return got == nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		var g map[string]any
		switch x := got.(type) {
		case map[string]any:
			g = x
		default:
			return false
		}
		if len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameValue(gv, wv) {
				return false
			}
		}
		return true
	}
	return got == want
}

func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return n.String(), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case int:
		return strconv.Itoa(n), true
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64), true
	}
	return "", false
}
