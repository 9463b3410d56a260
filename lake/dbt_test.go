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

// TestLatestOrderMatchesDBT: the dbt project's macros fhir_latest_order and
// fhir_versioned are LatestOrder and VersionedSQL, once their staging names are
// replaced by what stg_fhir__resources computes them from; int_resources__latest ranks
// with them.
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
	ident := regexp.MustCompile(`[a-z_]+`)
	toRaw := func(sql string) string {
		return normalSQL(ident.ReplaceAllStringFunc(strings.ToLower(sql), func(w string) string {
			if expr, ok := source[w]; ok {
				return expr
			}
			return w
		}))
	}
	macros := readDBT(t, "macros/latest.sql")
	body := func(name string) string {
		m := regexp.MustCompile(`(?s)\{% macro ` + name + `\(\) -%\}(.*?)\{%- endmacro %\}`).FindStringSubmatch(macros)
		if m == nil {
			t.Fatalf("macros/latest.sql: no macro %s", name)
		}
		return m[1]
	}
	for _, c := range []struct{ macro, want string }{
		{"fhir_latest_order", LatestOrder},
		{"fhir_versioned", VersionedSQL},
	} {
		if got, want := toRaw(body(c.macro)), normalSQL(c.want); got != want {
			t.Errorf("%s:\n  %s\nthe lake's:\n  %s", c.macro, got, want)
		}
	}
	model := readDBT(t, "models/intermediate/int_resources__latest.sql")
	for _, use := range []string{"{{ fhir_versioned() }} as " + Versioned, "order by {{ fhir_latest_order() }}"} {
		if !strings.Contains(model, use) {
			t.Errorf("int_resources__latest does not use %q", use)
		}
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
