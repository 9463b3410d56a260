package bulk

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fhirlake/flatten"
)

func defaultViews(t *testing.T, names ...string) []*flatten.View {
	t.Helper()
	all, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	var out []*flatten.View
	for _, v := range all {
		if slices.Contains(names, v.Name()) {
			out = append(out, v)
		}
	}
	return out
}

// ids reads the id column of a view's dataset, sorted.
func ids(t *testing.T, db *sql.DB, glob string) []string {
	t.Helper()
	return queryStrings(t, db, fmt.Sprintf("SELECT coalesce(id, '') FROM read_parquet('%s') ORDER BY 1", glob))
}

// queryStrings returns the first column of every row of q.
func queryStrings(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFlatten(t *testing.T) {
	dir := t.TempDir()
	files := writeFiles(t, dir,
		[2]string{"export", patientA + "\nnot JSON\n" + `{"resourceType":"Patient","id":"c","birthDate":"not a date"}` + "\n" + patientB + "\n"},
		[2]string{"tx.json", string(gzipped(t, transaction))},
		[2]string{"notification.json", notificationBundle},
	)
	out := filepath.Join(dir, "out")
	views := defaultViews(t, "patient", "encounter", "condition")
	bytesRead := 0
	res, err := Flatten(context.Background(), files, FlattenOptions{Views: views, Out: out, BatchRows: 2, Progress: func(n int) { bytesRead += n }})
	if err != nil {
		t.Fatal(err)
	}
	want := FlattenResult{
		Views: []ViewResult{
			{Name: "condition", Resource: "Condition", Rows: 0, Files: 1},
			{Name: "encounter", Resource: "Encounter", Rows: 1, Files: 1},
			{Name: "patient", Resource: "Patient", Rows: 4, Files: 2},
		},
		// export: a, c, b; tx.json: t1, o1; notification.json: its status,
		// its Encounter and its Patient.
		Resources: 8,
		Unviewed:  2,
		Failed:    2,
		Errors: []string{
			files[0] + ":2: parse resource: offset 0: invalid literal",
			files[0] + ":3: …",
		},
	}
	if len(res.Errors) == 2 && strings.Contains(res.Errors[1], "birth_date") {
		res.Errors[1] = files[0] + ":3: …"
	}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", res, want)
	}
	if size, _ := Size(files); bytesRead != int(size) {
		t.Errorf("progress: got %d bytes, want %d", bytesRead, size)
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, want := ids(t, db, filepath.Join(out, "patient", "*.parquet")), []string{"a", "b", "p1", "t1"}; !slices.Equal(got, want) {
		t.Errorf("patient ids: got %v, want %v", got, want)
	}
	if got := ids(t, db, filepath.Join(out, "condition", "*.parquet")); len(got) != 0 {
		t.Errorf("condition: got rows %v, want an empty dataset", got)
	}

	// A second run replaces the datasets and leaves no staging behind.
	if _, err := Flatten(context.Background(), files[2:], FlattenOptions{Views: views, Out: out}); err != nil {
		t.Fatal(err)
	}
	if got, want := ids(t, db, filepath.Join(out, "patient", "*.parquet")), []string{"p1"}; !slices.Equal(got, want) {
		t.Errorf("patient ids after a second run: got %v, want %v", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".*")); len(left) > 0 {
		t.Errorf("staging directories left behind: %v", left)
	}
	if _, err := Flatten(context.Background(), files, FlattenOptions{Views: views, Out: out, BatchRows: -1}); err == nil {
		t.Error("negative batch rows: got no error")
	}
}
