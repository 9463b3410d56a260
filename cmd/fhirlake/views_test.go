package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"fhirlake/flatten"
	"fhirlake/internal/testenv"
)

// runCLI runs the fhirlake command line in-process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestViewsTestConformance(t *testing.T) {
	suite := testenv.Shared(t, "conformance", "sql-on-fhir-v2", "tests")
	report := filepath.Join(t.TempDir(), "report.json")
	out, _, err := runCLI(t, "views", "test", "--suite", suite, "--report", report)
	if err != nil {
		t.Fatalf("views test: %v\n%s", err, out)
	}
	if got, want := lastLine(out), "134 passed, 0 failed"; got != want {
		t.Errorf("last line: got %q, want %q\n%s", got, want, out)
	}

	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	schemaData, err := os.ReadFile(filepath.Join(filepath.Dir(suite), "test-report.schema.json"))
	if err != nil {
		t.Fatalf("report schema: %v", err)
	}
	var schema map[string]any
	if err := json.Unmarshal(schemaData, &schema); err != nil {
		t.Fatal(err)
	}
	for _, problem := range validate(schema, doc, "report") {
		t.Error(problem)
	}
	// The check itself must catch a report of the wrong shape.
	wrong := map[string]any{"x.json": map[string]any{"tests": []any{map[string]any{"name": 1}}, "extra": true}}
	if got := validate(schema, wrong, "wrong"); len(got) != 3 {
		t.Errorf("a malformed report: got problems %q, want 3 (name type, missing result, extra key)", got)
	}

	files := doc.(map[string]any)
	tests, passed := 0, 0
	for _, f := range files {
		for _, x := range f.(map[string]any)["tests"].([]any) {
			tests++
			if x.(map[string]any)["result"].(map[string]any)["passed"] == true {
				passed++
			}
		}
	}
	if tests != 134 || passed != 134 {
		t.Errorf("report: got %d tests, %d passed, want 134 and 134", tests, passed)
	}
	if _, ok := files["basic.json"]; !ok {
		t.Errorf("report lacks basic.json; has %d files", len(files))
	}
}

// validate checks v against the subset of JSON Schema (draft 7) that the
// SQL-on-FHIR test report schema uses: type, properties, patternProperties,
// additionalProperties: false, required, items and minItems.
func validate(schema map[string]any, v any, at string) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, at+": "+fmt.Sprintf(format, args...))
	}
	switch want, _ := schema["type"].(string); want {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("got %T, want an object", v)
			return problems
		}
		for _, r := range asSlice(schema["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				bad("lacks required %q", r)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		patterns, _ := schema["patternProperties"].(map[string]any)
		for key, val := range obj {
			matched := false
			if p, ok := props[key].(map[string]any); ok {
				matched = true
				problems = append(problems, validate(p, val, at+"."+key)...)
			}
			for pat, p := range patterns {
				if regexp.MustCompile(pat).MatchString(key) {
					matched = true
					problems = append(problems, validate(p.(map[string]any), val, at+"."+key)...)
				}
			}
			if !matched && schema["additionalProperties"] == false {
				bad("has %q, which the schema does not allow", key)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("got %T, want an array", v)
			return problems
		}
		if m, ok := schema["minItems"].(float64); ok && len(arr) < int(m) {
			bad("got %d items, want at least %d", len(arr), int(m))
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range arr {
				problems = append(problems, validate(items, x, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			bad("got %T, want a string", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("got %T, want a boolean", v)
		}
	}
	return problems
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestViewsTestFailure(t *testing.T) {
	dir := t.TempDir()
	suite := `{"title": "mine", "resources": [{"resourceType": "Patient", "id": "p1"}], "tests": [
		{"title": "right", "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}, "expect": [{"id": "p1"}]},
		{"title": "wrong", "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}, "expect": [{"id": "p2"}]}
	]}`
	if err := os.WriteFile(filepath.Join(dir, "mine.json"), []byte(suite), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "views", "test", "--suite", dir)
	if err == nil {
		t.Errorf("views test with a failing test returned no error\n%s", out)
	}
	if got, want := lastLine(out), "1 passed, 1 failed"; got != want {
		t.Errorf("last line: got %q, want %q", got, want)
	}
	if !strings.Contains(out, "FAIL mine.json: wrong") {
		t.Errorf("output does not name the failed test:\n%s", out)
	}
}

// reportedRows reads the per-view table views run prints.
func reportedRows(t *testing.T, out string) map[string]int64 {
	t.Helper()
	rows := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] == "VIEW" {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		rows[f[0]] = n
	}
	return rows
}

// parquetRows counts the rows and files of the dataset of one view.
func parquetRows(t *testing.T, db *sql.DB, dir string) (rows int64, files int) {
	t.Helper()
	parts, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil || len(parts) == 0 {
		t.Fatalf("no part files in %s (%v)", dir, err)
	}
	q := fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", filepath.Join(dir, "*.parquet"))
	if err := db.QueryRow(q).Scan(&rows); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return rows, len(parts)
}

func TestViewsRun(t *testing.T) {
	small := testenv.Shared(t, "data", "synthea-small")
	medium := testenv.Shared(t, "data", "synthea-medium", "bundles")
	notifications := testenv.Shared(t, "data", "notifications", "examples")
	ndjson, _ := filepath.Glob(filepath.Join(small, "*.ndjson"))
	bundles, _ := filepath.Glob(filepath.Join(medium, "*.json.gz"))
	notifs, _ := filepath.Glob(filepath.Join(notifications, "*.json"))
	if len(ndjson) == 0 || len(bundles) == 0 || len(notifs) == 0 {
		t.Skip("shared sample data incomplete")
	}
	sort.Strings(bundles)

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	views, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		args      []string
		files     []string
		wantViews []string
		minRows   map[string]int64
		minFiles  map[string]int
	}{
		{
			name:      "all views over NDJSON and a gzipped Bundle",
			args:      []string{"--all"},
			files:     append(append([]string{}, ndjson...), bundles[0]),
			wantViews: viewNames(views),
			minRows:   map[string]int64{"patient": 10, "observation": 1000, "encounter": 100, "observation_component": 1},
		},
		{
			name:      "one view in small part files",
			args:      []string{"--view", "observation", "--batch-rows", "500"},
			files:     ndjson,
			wantViews: []string{"observation"},
			minRows:   map[string]int64{"observation": 1000},
			minFiles:  map[string]int{"observation": 3},
		},
		{
			name:      "subscription notifications of every shape",
			args:      []string{"--view", "patient,encounter"},
			files:     notifs,
			wantViews: []string{"encounter", "patient"},
			minRows:   map[string]int64{"patient": 1, "encounter": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			args := append([]string{"views", "run", "--quiet", "--out", out}, tt.args...)
			stdout, stderr, err := runCLI(t, append(args, tt.files...)...)
			if err != nil {
				t.Fatalf("views run: %v\n%s\n%s", err, stdout, stderr)
			}
			if !strings.Contains(stdout, "; 0 failed") {
				t.Errorf("summary does not say 0 failed:\n%s", stdout)
			}
			reported := reportedRows(t, stdout)
			var got []string
			for name := range reported {
				got = append(got, name)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tt.wantViews, ",") {
				t.Errorf("views reported: got %v, want %v", got, tt.wantViews)
			}
			for _, name := range tt.wantViews {
				rows, files := parquetRows(t, db, filepath.Join(out, name))
				if rows != reported[name] {
					t.Errorf("%s: got %d rows in Parquet, want the %d reported", name, rows, reported[name])
				}
				if rows < tt.minRows[name] {
					t.Errorf("%s: got %d rows, want at least %d", name, rows, tt.minRows[name])
				}
				if files < tt.minFiles[name] {
					t.Errorf("%s: got %d files, want at least %d", name, files, tt.minFiles[name])
				}
			}
			if left, _ := filepath.Glob(filepath.Join(out, ".*")); len(left) > 0 {
				t.Errorf("staging directories left behind: %v", left)
			}
		})
	}
}

func viewNames(views []*flatten.View) []string {
	var names []string
	for _, v := range views {
		names = append(names, v.Name())
	}
	sort.Strings(names)
	return names
}

func TestViewsRunBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.ndjson")
	lines := `{"resourceType":"Patient","id":"p1","gender":"female"}
this is not JSON
{"resourceType":"Patient","id":"p2","birthDate":"not a date"}

{"resourceType":"Patient","id":"p3"}
`
	if err := os.WriteFile(bad, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	notGzip := filepath.Join(dir, "broken.json.gz")
	if err := os.WriteFile(notGzip, []byte{0x1f, 0x8b, 0x08, 0x00, 0x01}, 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	stdout, stderr, err := runCLI(t, "views", "run", "--quiet", "--view", "patient", "--out", out, bad, notGzip)
	if err == nil || !strings.Contains(err.Error(), "3 resources or files failed") {
		t.Errorf("got error %v, want one counting 3 failures", err)
	}
	for _, want := range []string{"bad.ndjson:2: ", "bad.ndjson:3: ", "birth_date", "broken.json.gz: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("errors lack %q:\n%s", want, stderr)
		}
	}
	if got := reportedRows(t, stdout)["patient"]; got != 2 {
		t.Errorf("patient rows: got %d, want 2 (the good lines)", got)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no views named", []string{"views", "run", "--out", out, bad}, "--view NAME or pass --all"},
		{"unknown view", []string{"views", "run", "--view", "nope", "--out", out, bad}, `no view named "nope"`},
		{"missing file", []string{"views", "run", "--all", "--out", out, filepath.Join(dir, "absent.ndjson")}, "no such file"},
		{"no output", []string{"views", "run", "--all", bad}, `"out" not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestViewsListShow(t *testing.T) {
	views, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "views", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		want := []string{v.Name(), v.Resource(), strconv.Itoa(len(v.Columns())), "default"}
		if !hasRow(out, want) {
			t.Errorf("views list lacks the row %v:\n%s", want, out)
		}
	}

	out, _, err = runCLI(t, "views", "show", "patient")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"resource": "Patient"`, `"name": "race_code"`, "# Arrow schema", "birth_date", "date32", "timestamp[us, tz=UTC]"} {
		if !strings.Contains(out, want) {
			t.Errorf("views show patient lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := runCLI(t, "views", "show", "nope"); err == nil {
		t.Error("views show of an unknown view returned no error")
	}

	// A directory overrides the patient view and adds one.
	dir := t.TempDir()
	custom := map[string]string{
		"patient.json": `{"resourceType":"ViewDefinition","name":"patient","resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"gender","path":"gender"}]}]}`,
		"names.json":   `{"resourceType":"ViewDefinition","name":"patient_name","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]},{"forEach":"name","column":[{"name":"family","path":"family"}]}]}`,
	}
	for name, def := range custom {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(def), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err = runCLI(t, "views", "list", "--views-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]string{
		{"patient", "Patient", "2", filepath.Join(dir, "patient.json")},
		{"patient_name", "Patient", "2", filepath.Join(dir, "names.json")},
		{"observation", "Observation", "23", "default"},
	} {
		if !hasRow(out, want) {
			t.Errorf("views list --views-dir lacks the row %v:\n%s", want, out)
		}
	}
	out, _, err = runCLI(t, "views", "show", "--views-dir", dir, "patient")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"path": "gender"`) || strings.Contains(out, "race_code") {
		t.Errorf("views show patient --views-dir does not show the override:\n%s", out)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.json"), []byte(`{"name":"x","resource":"Patient","select":[{"column":[{"name":"a","path":"nosuchfn()"}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "views", "list", "--views-dir", bad); err == nil {
		t.Error("views list with an invalid view returned no error")
	}
}

// hasRow reports whether a line of out consists of exactly the fields want.
func hasRow(out string, want []string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(line), " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}
