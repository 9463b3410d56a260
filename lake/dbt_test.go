package lake

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	dbtproject "fhirlake/dbt"
)

// The dbt project restates parts of the format in SQL; these tests fail when it
// and this package disagree.

func readDBT(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(dbtproject.Project, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// normalSQL lowercases an expression, drops identifier quotes and collapses space.
func normalSQL(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.ToLower(s), `"`, "")), " ")
}

// TestLatestOrderMatchesDBT: int_resources__latest ranks with LatestOrder, once its
// staging names are replaced by what stg_fhir__resources computes them from.
func TestLatestOrderMatchesDBT(t *testing.T) {
	staging := readDBT(t, "models/staging/stg_fhir__resources.sql")
	_, list, ok := strings.Cut(staging, "\nselect\n")
	if !ok {
		t.Fatal("stg_fhir__resources: no select list")
	}
	source := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(.+?) as ([a-z_]+),?\s*$`).FindAllStringSubmatch(list, -1) {
		source[m[2]] = m[1]
	}
	if len(source) == 0 {
		t.Fatal("stg_fhir__resources: no renamed column")
	}
	model := readDBT(t, "models/intermediate/int_resources__latest.sql")
	m := regexp.MustCompile(`(?s)order by\s+(.*?)\s*\)\s*=\s*1`).FindStringSubmatch(model)
	if m == nil {
		t.Fatal("int_resources__latest: no ranking")
	}
	var got []string
	for _, term := range strings.Split(m[1], ",") {
		f := strings.Fields(term)
		if expr, ok := source[f[0]]; ok {
			f[0] = expr
		}
		got = append(got, normalSQL(strings.Join(f, " ")))
	}
	var want []string
	for _, term := range strings.Split(LatestOrder, ",") {
		want = append(want, normalSQL(term))
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("int_resources__latest ranks by\n  %s\nLatestOrder by\n  %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// dbtColumns reads the column → type pairs of a dbt dict literal.
func dbtColumns(s string) [][2]string {
	var out [][2]string
	for _, m := range regexp.MustCompile(`'([a-z_]+)':\s*'([a-z]+)'`).FindAllStringSubmatch(s, -1) {
		out = append(out, [2]string{m[1], m[2]})
	}
	return out
}

func checkColumns(t *testing.T, where string, got [][2]string, fields []arrow.Field) {
	t.Helper()
	if len(got) != len(fields) {
		t.Errorf("%s: %d columns, the format has %d", where, len(got), len(fields))
	}
	for i, f := range fields {
		typ, err := SQLType(f.Type)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(got) || got[i][0] != f.Name || got[i][1] != strings.ToLower(typ) {
			t.Errorf("%s: column %d: got %v, want %s %s", where, i, got[min(i, len(got)-1)], f.Name, strings.ToLower(typ))
		}
	}
}

// TestRawColumnsMatchDBT: stg_fhir__resources reads the raw dataset's columns with
// their types.
func TestRawColumnsMatchDBT(t *testing.T) {
	staging := readDBT(t, "models/staging/stg_fhir__resources.sql")
	checkColumns(t, "stg_fhir__resources", dbtColumns(staging), RawSchema.Fields())
}

// TestViewLineageMatchesDBT: macro fhir_view_lineage_columns lists the lineage
// columns with their types.
func TestViewLineageMatchesDBT(t *testing.T) {
	sources := readDBT(t, "macros/sources.sql")
	_, macro, ok := strings.Cut(sources, "macro fhir_view_lineage_columns")
	if !ok {
		t.Fatal("macros/sources.sql: no fhir_view_lineage_columns")
	}
	macro, _, _ = strings.Cut(macro, "endmacro")
	checkColumns(t, "fhir_view_lineage_columns", dbtColumns(macro), ViewLineage())
}
