package query

import (
	"strings"
	"testing"
)

// TestBatchSelect: a state model's columns are shown under the speed
// layer's names, types and order.
func TestBatchSelect(t *testing.T) {
	batch := []column{
		{"code", "VARCHAR"}, {"resource_id", "VARCHAR"}, {"effective_at", "TIMESTAMP WITH TIME ZONE"},
		{"version_number", "BIGINT"}, {"tenant", "VARCHAR"},
	}
	for _, tc := range []struct {
		name         string
		batch, fresh []column
		want         []string
	}{
		{
			name:  "without speed files, lineage columns first, renamed back, dbt's own left out",
			batch: batch,
			want:  []string{`"tenant" AS "_tenant"`, `"resource_id" AS "_resource_id"`, `"code" AS "code"`, `"effective_at" AS "effective"`},
		},
		{
			name:  "with speed files, in their order, cast back to their types",
			batch: batch,
			fresh: []column{{"_resource_id", "VARCHAR"}, {"effective", "VARCHAR"}, {"code", "VARCHAR"}, {"_tenant", "VARCHAR"}},
			want:  []string{`"resource_id" AS "_resource_id"`, `TRY_CAST("effective_at" AS VARCHAR) AS "effective"`, `"code" AS "code"`, `"tenant" AS "_tenant"`},
		},
		{
			name:  "columns the speed files lack come last, in the snapshot's order",
			batch: []column{{"code", "VARCHAR"}, {"resource_id", "VARCHAR"}, {"tenant", "VARCHAR"}},
			fresh: []column{{"_resource_id", "VARCHAR"}},
			want:  []string{`"resource_id" AS "_resource_id"`, `"code" AS "code"`, `"tenant" AS "_tenant"`},
		},
		{
			name:  "names are quoted",
			batch: []column{{`a"b`, "VARCHAR"}},
			want:  []string{`"a""b" AS "a""b"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := batchSelect("observation", tc.batch, tc.fresh)
			if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
				t.Errorf("got  %s\nwant %s", strings.Join(got, ", "), strings.Join(tc.want, ", "))
			}
		})
	}
}

// TestMergeSQL: beside a snapshot, a dataset reads the anti join only when
// rows are dropped, and the delta only when it has speed files.
func TestMergeSQL(t *testing.T) {
	for _, tc := range []struct {
		name           string
		dropped, delta bool
		want           string
	}{
		{"nothing changed", false, false, `SELECT * FROM lake."batch_patient"`},
		{"new resources only", false, true, `SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."delta_patient"`},
		{"deletes only", true, false, `SELECT b.* EXCLUDE (__fhirlake_pos) FROM lake."pos_patient" b ANTI JOIN lake."drop_patient" d ON d.__fhirlake_pos = b.__fhirlake_pos`},
		{"updates", true, true, `SELECT b.* EXCLUDE (__fhirlake_pos) FROM lake."pos_patient" b ANTI JOIN lake."drop_patient" d ON d.__fhirlake_pos = b.__fhirlake_pos UNION ALL BY NAME SELECT * FROM lake."delta_patient"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeSQL("patient", tc.dropped, tc.delta); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestSQLQuoting: paths, dataset names and resource types are spliced in
// as escaped string literals, view and helper names as quoted identifiers.
func TestSQLQuoting(t *testing.T) {
	for _, tc := range []struct{ name, got, want string }{
		{"file list", fileList([]string{"/lake/o'b.parquet"}), `['/lake/o''b.parquet']`},
		{"glob", speedGlob("/la'ke", "pat'ient"), `'/la''ke/speed/pat''ient/*/*.parquet'`},
		{"resource type", resourceSQL("O'Type"), `resource_type = 'O''Type'`},
		{"typed view filter", speedLatestSQL("patient", "O'Type"), `resource_type = 'O''Type'`},
		{"view", createView(`a"b`, "SELECT 1"), `VIEW "a""b" AS`},
		{"helper", createLakeObject("TABLE", `a"b`, "SELECT 1"), `TABLE lake."a""b" AS`},
		{"dropped view", dropView(`a"b`), `EXISTS "a""b"`},
		{"dropped helper", dropLakeObject("VIEW", `a"b`), `EXISTS lake."a""b"`},
		{"history read", speedLatestSQL(`a"b`, ""), `FROM "a""b_all" v`},
		{"delta read", viewDropSQL(`a"b`, "", true), `JOIN lake."delta_a""b" d`},
		{"type's ranking", winnersSQL("O'Type"), `resource_type = 'O''Type'`},
		{"type's changes", changedSQL("O'Type"), `resource_type = 'O''Type'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.got, tc.want) {
				t.Errorf("got %s, want it to hold %s", tc.got, tc.want)
			}
		})
	}
}
