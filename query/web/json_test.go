package web

import (
	"encoding/json"
	"slices"
	"testing"

	"fhirlake/query"
)

// TestJSONKeepsColumnsOfOneName: columns that share a name all reach the
// JSON rows, under documented, stable keys.
func TestJSONKeepsColumnsOfOneName(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	for _, tc := range []struct {
		sql      string
		keys     []string
		sqlNames []string
		row      string
	}{
		{"SELECT 1 AS a, 2 AS a", []string{"a", "a_2"}, []string{"", "a"}, `{"a":1,"a_2":2}`},
		{"SELECT 1 AS a, 2 AS a, 3 AS a_2", []string{"a", "a_3", "a_2"}, []string{"", "a", ""}, `{"a":1,"a_3":2,"a_2":3}`},
		{"SELECT p.id, q.id FROM patient p JOIN patient q USING (id) ORDER BY 1 LIMIT 1", []string{"id", "id_2"}, []string{"", "id"}, `{"id":"a1","id_2":"a1"}`},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			resp, b := f.query(t, "acme", acmeKey, tc.sql)
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			var r struct {
				Columns []column
				Rows    []json.RawMessage
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			var keys, sqlNames []string
			for _, c := range r.Columns {
				keys, sqlNames = append(keys, c.Name), append(sqlNames, c.SQLName)
			}
			if !slices.Equal(keys, tc.keys) || !slices.Equal(sqlNames, tc.sqlNames) {
				t.Errorf("columns: got %s, want names %v and sql_names %v", b, tc.keys, tc.sqlNames)
			}
			// The rows' keys come in the columns' order.
			if len(r.Rows) != 1 || string(r.Rows[0]) != tc.row {
				t.Errorf("rows: got %s, want [%s]", b, tc.row)
			}
		})
	}
}

func TestUniqueNames(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"a", "b"}, []string{"a", "b"}},
		{[]string{"a", "a", "a"}, []string{"a", "a_2", "a_3"}},
		{[]string{"a", "a", "a_2", "a_3"}, []string{"a", "a_4", "a_2", "a_3"}},
		{[]string{"a_2", "a", "a"}, []string{"a_2", "a", "a_3"}},
		{[]string{"", ""}, []string{"", "_2"}},
	} {
		if got := uniqueNames(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%v: got %v, want %v", tc.in, got, tc.want)
		}
	}
}
