package lake

import "strings"

// A state model merge-on-read (docs/format/snapshot.md): the base rows whose key is
// not among the changed keys, and the delta rows. This is Iceberg v2's equality
// delete: the changed keys are equality deletes on (resource_type, resource_id)
// applied to the base, the delta the data files added since.

// StateKeyColumns are the columns of a state model's changed keys, the key its rows
// are merged on.
var StateKeyColumns = []string{"resource_type", "resource_id"}

// StateSQL is a state model as one relation (a parenthesised subquery) for DuckDB,
// from the paths or URLs of its base files, changed keys and delta rows; the
// columns of base and delta are matched by name. It needs at least one base or
// delta file.
func StateSQL(base, changed, delta []string) string {
	read := func(paths []string) string {
		quoted := make([]string, len(paths))
		for i, p := range paths {
			quoted[i] = "'" + strings.ReplaceAll(p, "'", "''") + "'"
		}
		return "read_parquet([" + strings.Join(quoted, ", ") + "], union_by_name = true)"
	}
	var parts []string
	switch {
	case len(base) > 0 && len(changed) > 0:
		parts = append(parts, "SELECT b.* FROM "+read(base)+" AS b ANTI JOIN "+read(changed)+
			" AS c ON c.resource_type = b.resource_type AND c.resource_id = b.resource_id")
	case len(base) > 0:
		parts = append(parts, "SELECT * FROM "+read(base))
	}
	if len(delta) > 0 {
		parts = append(parts, "SELECT * FROM "+read(delta))
	}
	return "(" + strings.Join(parts, " UNION ALL BY NAME ") + ")"
}
